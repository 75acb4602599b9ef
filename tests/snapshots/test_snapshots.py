"""Screen snapshots of recorded sessions (pytest-textual-snapshot), at 120x40 and at 80x24.

Deterministic: FakeEngine records with fake elapsed times, a fixed theme, no clocks, and every
key is followed by waiting for the engine workers and the screen. ``pytest --snapshot-update``
rewrites them; look at the SVGs in ``__snapshots__`` before committing a change.
"""

from __future__ import annotations

from functools import partial

import pytest

from lmscope.testing import FakeEngine, engine_factory, make_session, wait_until_idle, write_trace
from lmscope.tui.app import make_app

SIZES = [(120, 40), (80, 24)]


def recorded_app(family: str, steps: int):
    """The real app over a recorded session, with a fixed theme."""
    return make_app(engine_factory(FakeEngine(make_session(family, steps=steps))), theme="textual-dark")


async def drive(pilot, keys: tuple[str, ...]) -> None:
    """Wait for the model load, then press each key and wait for its work and the screen."""
    await wait_until_idle(pilot)
    for key in keys:
        await pilot.press(key)
        await wait_until_idle(pilot)
    await pilot.wait_for_scheduled_animations()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_llama_mid_generation(snap_compare, size):
    keys = ("n",) * 10 + ("left", "right_square_bracket", "right_curly_bracket")
    assert snap_compare(recorded_app("llama", 24), terminal_size=size, run_before=partial(drive, keys=keys))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_t5_cross_attention(snap_compare, size):
    keys = ("n", "n", "n", "n", "2")
    assert snap_compare(recorded_app("t5", 6), terminal_size=size, run_before=partial(drive, keys=keys))


def test_llama_kv_cache_and_ids(snap_compare):
    keys = ("c", "3", "i")
    assert snap_compare(recorded_app("llama", 12), terminal_size=(120, 40), run_before=partial(drive, keys=keys))


def test_llama_breakpoint_hit(snap_compare):
    """``b`` ``p < 0.5``, then ``c``: stopped after the first unsure step, marked in Tokens, named in the status."""
    keys = ("b", "p", "space", "less_than_sign", "space", "0", "full_stop", "5", "enter", "c")
    assert snap_compare(recorded_app("llama", 24), terminal_size=(120, 40), run_before=partial(drive, keys=keys))


def test_llama_forced_candidate_and_cursor(snap_compare):
    """Step 3 re-run with the logits stage's third candidate forced, the cursor on it."""
    keys = ("n",) * 6 + ("left", "left", "tab", "tab", "down", "down", "down", "enter", "down", "down", "down")
    assert snap_compare(recorded_app("llama", 24), terminal_size=(120, 40), run_before=partial(drive, keys=keys))


def test_llama_branches_view(snap_compare):
    """Two forks: a rewind at step 6, then a forced token at step 3; the branches tree open."""
    keys = ("c", "home") + ("right",) * 7 + ("u", "n", "n", "left", "left", "f", "P", "a", "r", "i", "s", "enter",
                                              "n", "t")
    assert snap_compare(recorded_app("llama", 12), terminal_size=(120, 40), run_before=partial(drive, keys=keys))


def test_replay_of_a_recorded_t5_session(snap_compare, tmp_path):
    """``lmscope open``: the status bar names the file; browsing works, stepping is greyed."""
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace

    write_trace(tmp_path / "demo.lmscope", make_session("t5", steps=5))
    engine = ReplayEngine(Trace(tmp_path / "demo.lmscope"))
    engine.label = "replay of demo.lmscope, recorded 2026-11-22T15:00:00+00:00 with lmscope/demo-t5"
    app = make_app(lambda: engine, theme="textual-dark")
    assert snap_compare(app, terminal_size=(120, 40), run_before=partial(drive, keys=("left", "2")))
