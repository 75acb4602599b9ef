"""Fixtures for TUI tests; the app harness itself is in ``tui_harness``."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def gates():
    """Events a test may block the engine on; all are released at teardown so no thread hangs."""
    made: list[threading.Event] = []

    def new() -> threading.Event:
        made.append(threading.Event())
        return made[-1]

    yield new
    for gate in made:
        gate.set()
