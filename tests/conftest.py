"""Shared fixtures: tiny models built once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_llama, build_t5  # noqa: E402


@pytest.fixture(autouse=True)
def progress_bars_setting_kept():
    """``lmscope.cli.main`` turns tqdm's bars off for its process (``TQDM_DISABLE``): run in a
    test, it would be left set for every later test and the processes they start."""
    import os

    before = os.environ.get("TQDM_DISABLE")
    yield
    if before is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = before


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return build_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture
def direct_fds(monkeypatch) -> set[int]:
    """The descriptors the row store opens with ``O_DIRECT`` from now on (each chunk's second one)."""
    import os

    from lmscope.engine import row_store

    opened, os_open = set(), os.open

    def open_recorded(path, flags, *args):
        fd = os_open(path, flags, *args)
        if flags & getattr(os, "O_DIRECT", 0):
            opened.add(fd)
        return fd

    monkeypatch.setattr(row_store.os, "open", open_recorded)
    return opened


@pytest.fixture(scope="session")
def t5_recording(tmp_path_factory) -> Path:
    """A real 4-step recording of the demo T5, as ``lmscope t5 --headless --record FILE`` writes it
    (a test damages a copy of it, never the file itself)."""
    from lmscope.cli import main

    path = tmp_path_factory.mktemp("t5-recording") / "t5.lmscope"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TQDM_DISABLE", "1")  # main sets it for its process: undone after, as for every test
        assert main(["t5", "--headless", "--max-new-tokens", "4", "--min-new-tokens", "4", "--record", str(path)]) == 0
    return path
