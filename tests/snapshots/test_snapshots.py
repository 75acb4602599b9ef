"""Screen snapshots of recorded sessions (pytest-textual-snapshot), at 120x40 and at 80x24.

Deterministic: FakeEngine records with fake elapsed times, a fixed theme, no clocks, and every
key is followed by waiting for the engine workers and the screen. ``pytest --snapshot-update``
rewrites them; look at the SVGs in ``__snapshots__`` before committing a change.
"""

from __future__ import annotations

from functools import partial

import pytest

from lmscope.testing import FakeEngine, engine_factory, make_session, wait_until_idle
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
