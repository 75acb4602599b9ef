"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def terminal(monkeypatch):
    """As if stdin and stderr were a terminal: the command goes on to its TUI (which the test
    replaces or runs headless) instead of refusing to draw into a pipe."""
    from lmscope import cli

    monkeypatch.setattr(cli, "_check_terminal", lambda: None)
