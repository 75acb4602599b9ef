"""A seeded random-key monkey test over the real app (issue 12 item 7).

Every binding, the command palette, help, Escape/Enter and resizes down to 40x10, with the
FakeEngine injecting a failure and delays. After every key: no exception, never two engine
calls at once, no step lost or duplicated, the status bar's label equals the app's state; every
tenth key, nothing on the screen the terminal would act on (the fake's tokens include an ESC
sequence, a C1 control and a bidi override); at the end `q` exits cleanly.
"""

from __future__ import annotations

import random

import pytest

from dataclasses import replace

from lmscope.testing import FakeEngine, Recording, engine_factory, make_session, unprintable_on_screen
from lmscope.tui.app import make_app
from lmscope.tui.keys import BINDINGS
from lmscope.tui.widgets.status import StatusBar

BOUND = sorted({key.strip() for binding in BINDINGS for key in binding.key.split(",")} - {"q"})
EXTRA = ["ctrl+p", "escape", "enter", "tab", "down", "up", "a", "x"]
SIZES = [(120, 40), (80, 24), (60, 16), (40, 10)]


async def monkey(app, engine, recording, keys: int, seed: int) -> None:
    rng = random.Random(seed)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        labels_checked = 0
        for n in range(keys):
            if rng.random() < 0.05:
                await pilot.resize_terminal(*rng.choice(SIZES))
            elif len(app.screen_stack) > 1 and rng.random() < 0.3:  # modals (b, f, t, B, help, palette)
                await pilot.press("escape")
            else:
                await pilot.press(rng.choice(BOUND + EXTRA))
            if rng.random() < 0.3:  # sometimes let the worker finish, sometimes press on top of it
                await app.workers.wait_for_complete()
            await pilot.pause()
            labels_checked += check(app, engine, recording, f"key {n} (seed {seed})")
            if n % 10 == 0:  # a whole screen rendered: every tenth key
                assert unprintable_on_screen(app) == [], f"key {n} (seed {seed})"
        await app.workers.wait_for_complete()
        await pilot.pause()
        check(app, engine, recording, "end")
        assert labels_checked > keys // 2  # the status comparison really ran
        while len(app.screen_stack) > 1:  # leave the palette or help, then quit
            await pilot.press("escape")
        await pilot.press("q")
        await pilot.pause()
    # a session left in the error state (the fake's one failed step) ends with its exit code
    assert app.return_code == (1 if app.view.state == "error" else 0) and app._exception is None


def check(app, engine, recording, where: str) -> bool:
    """The invariants after one key; True when the status label was compared too."""
    assert app._exception is None, where
    if engine is not None:
        assert engine.max_active <= 1, where
    steps = app.view.steps
    # forced steps are new records and rewinds cut the history: what must hold is that the
    # shown branch is numbered 0, 1, 2 ... with nothing lost or doubled
    assert [s.step for s in steps] == list(range(len(steps))), where
    if recording is not None:
        assert len(steps) <= len(recording.steps), where
    status = app.get_screen_stack_root().query_one(StatusBar)
    if status.current is app.view and status.size.height:
        label = status.render_line(0).text
        assert label.startswith(f"● {app.view.state}"), (where, label, app.view.state)
        return True
    return False


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """``w`` and ``ctrl+s`` write files into the working folder."""
    monkeypatch.chdir(tmp_path)


UNPRINTABLE = {1: " \x1b[2J", 2: "\x9b31m", 4: " a\u202eb"}
"""Tokens of the fake's steps that a terminal would act on if drawn raw (ESC, CSI, a bidi override)."""


def fake(steps: int = 40):
    session = make_session("llama", steps=steps)
    recording = Recording(session.info, session.prompt, tuple(
        replace(record, token=UNPRINTABLE.get(record.step, record.token)) for record in session.steps))
    engine = FakeEngine(recording, delay_s=0.002, fail_at=steps // 3)
    return make_app(engine_factory(engine), theme="textual-dark"), engine, recording


async def test_monkey_fake_engine():
    app, engine, recording = fake()
    await monkey(app, engine, recording, keys=200, seed=12)
    assert engine.step_calls > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
async def test_monkey_fake_engine_1000_keys(seed):
    app, engine, recording = fake(steps=120)
    await monkey(app, engine, recording, keys=1000, seed=seed)


@pytest.mark.slow
async def test_monkey_demo_t5_1000_keys():
    from functools import partial

    from lmscope.engine.session import DEFAULT_PROMPTS, SessionOptions, open_session
    from lmscope.engine.settings import GenerationSettings

    options = SessionOptions(family="t5", prompt=DEFAULT_PROMPTS["t5"], device="cpu",
                             settings=GenerationSettings(max_new_tokens=24))
    app = make_app(partial(open_session, options), theme="textual-dark")
    await monkey(app, None, None, keys=1000, seed=3)
