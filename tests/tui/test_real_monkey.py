"""A seeded random-key monkey over the real app on a real Stepper (tiny Llama and T5, greedy and
seeded sampling), checked against transformers.

test_monkey presses random keys at the app over a FakeEngine; tests/engine/test_random_ops
drives a real Stepper through the app's worker bodies without the app. Here the app itself runs
(``app.run_test``) over a Stepper: its pacing, hand-overs, greying while busy, modals and workers
interleave with real deferred rows and waiting records. The keys are the app's: ``n`` ``c``
``p`` ``u``, ``← → home end``, ``f`` with a short text typed and ``enter``, the Stages cursor and
``enter`` (forcing a candidate), ``t`` then ``enter`` or ``r`` in the branches view, ``esc``,
``1``-``5``, ``b`` with a condition, ``B``, ``r``, ``s``, ``[ ] { }``; after some keys the test
waits for the workers, after others it presses on top of running work. A continue's hand-overs
come at random steps (the workers' clock is test_random_ops' seeded ``Clock``) in half the runs,
at the app's own times in the others; rows are written behind or at once.

After every key: no exception, the shown branch numbered 0, 1, 2 ..., the status bar's label the
app's state (test_monkey's ``check``). Whenever the workers are done: the View shows the steps the
branch tree holds for the branch it shows, and every branch of ``app.branch_tree`` passes
test_random_ops' oracle (each record against a teacher-forced pass of the branch's tokens, its
tokens against ``generate()`` with the forced tokens imposed, a sampled step's draw the same
after the same steps) and the Stepper holds the live branch's ids and cache positions. At the end
(the workers done, the session paused, ready or finished): all that, and the live cache and
inputs equal a fresh session's stepped through the live tokens.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "engine"))  # test_random_ops' oracle

from lmscope.engine import models  # noqa: E402
from lmscope.engine.stepper import Stepper  # noqa: E402
from lmscope.tui import workers  # noqa: E402
from lmscope.tui.app import make_app  # noqa: E402
from lmscope.tui.widgets.branches import BranchesScreen  # noqa: E402
from lmscope.tui.widgets.breakpoints import BreakpointsScreen  # noqa: E402
from lmscope.tui.widgets.text_input import TextInputScreen  # noqa: E402
from test_monkey import check  # noqa: E402
from test_random_ops import (  # noqa: E402
    PROMPT, SETTINGS, TEXTS, Clock, check_against_fresh, check_prompt, check_session, oracle_for,
)

CONDITIONS = ("step == 3", "step == 6", "flip", "rank > 1", "p < 0.5")
"""What ``b`` types: conditions that hold at some steps of the tiny models' sessions."""
KEYS_PER_RUN = 20
"""Turns of a default run: a turn costs ~0.2 s here (each key a frame of every pane)."""
KEYS = (["n"] * 5 + ["c"] * 3 + ["p"] * 2 + ["u"] * 2 + ["left", "right", "home", "end"] * 2
        + ["force_text"] * 2 + ["force_cursor"] * 3 + ["branches"] * 3 + ["breakpoint", "B", "escape", "r", "s"]
        + ["1", "2", "3", "4", "5", "[", "]", "{", "}"])
"""What one turn of the monkey does: a key, or a few keys that make one action (``f`` and a
text, the Stages cursor and ``enter``, ``t`` and a choice, ``b`` and a condition)."""


@pytest.fixture(scope="module")
def tiny_models(tiny_llama_dir, tiny_t5_dir):
    """Each tiny model, loaded once for the module when first asked for."""
    made = {}

    def load(family: str):
        if family not in made:
            made[family] = models.load(str(tiny_llama_dir if family == "llama" else tiny_t5_dir), family,
                                       device="cpu", dtype="float32")
        return made[family]

    return load


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Nothing pressed writes files, but a stray ``w`` would write into the working folder."""
    monkeypatch.chdir(tmp_path)


async def typed(app, pilot, text: str) -> None:
    """``text`` into the open input, then ``enter`` (test_control_keys types keys one by one; the
    input's value is set here at once: each key pressed costs a frame of every pane)."""
    app.screen.query_one("#text-input").value = text
    await pilot.press("enter")


def modal(app):
    """The modal screen on top of the debugger screen, None if none is."""
    return app.screen if len(app.screen_stack) > 1 else None


async def turn(app, pilot, rng: random.Random, what: str) -> None:
    """One turn: press ``what``'s keys."""
    if what == "force_text":
        await pilot.press("f")
        await pilot.pause()
        if isinstance(modal(app), TextInputScreen):  # greyed while busy or another branch is shown
            await typed(app, pilot, rng.choice(TEXTS))
    elif what == "force_cursor":
        if modal(app) is None:
            app.screen.query_one("#stages").focus()
            await pilot.press(*["down"] * rng.randrange(4), "enter")
    elif what == "branches":
        await pilot.press("t")
        await pilot.pause()
        if isinstance(modal(app), BranchesScreen):
            await pilot.press(*[rng.choice(("up", "down")) for _ in range(rng.randrange(4))])
            await pilot.press(rng.choice(("enter", "enter", "r", "r", "escape")))
    elif what == "breakpoint":
        await pilot.press("b")
        await pilot.pause()
        if isinstance(modal(app), TextInputScreen):
            await typed(app, pilot, rng.choice(CONDITIONS))
    elif what == "B":
        await pilot.press("B")
        await pilot.pause()
        if isinstance(modal(app), BreakpointsScreen):
            await pilot.press(*[rng.choice(("space", "down", "d")) for _ in range(rng.randrange(3))], "escape")
    else:
        await pilot.press(what)


def check_quiet(app, stepper: Stepper, oracle, drawn: dict, where: str, last: bool = False) -> None:
    """The workers are done: the View is the tree's, every branch passes the oracle, the Stepper
    holds the live branch (``last``: and equals a fresh session stepped through it)."""
    tree, view = app.branch_tree, app.view
    assert not app.busy and view.state in ("ready", "paused", "finished"), (where, view.state)
    assert view.steps == tree.branches[view.branch].steps, where
    assert view.live == (view.branch == tree.live), where
    session = SimpleNamespace(engine=stepper, tree=tree, live=tree.live_branch.steps, prompt=view.prompt)
    try:
        check_prompt(session, oracle)
        check_session(session, oracle, drawn)
        if last:
            check_against_fresh(session, oracle)
    except AssertionError as error:
        raise AssertionError(f"{where}: {error}") from error


async def real_monkey(loaded, settings, seed: int, keys: int) -> None:
    rng = random.Random(seed)
    oracle, drawn, pressed = oracle_for(loaded, settings), {}, []
    stepper = Stepper(loaded, PROMPT, settings)
    app = make_app(lambda: stepper, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        check_quiet(app, stepper, oracle, drawn, "start")
        labels_checked = 0
        for n in range(keys):
            if modal(app) is not None and rng.random() < 0.5:  # a modal left open (t, B, a refused f ...)
                what = "escape"
                await pilot.press("escape")
            else:
                what = rng.choice(KEYS)
                await turn(app, pilot, rng, what)
            pressed.append(what)
            where = f"seed {seed}, turn {n} after {pressed}"
            quiet = rng.random() < 0.4  # sometimes let the workers finish, sometimes press on top
            if quiet:
                await app.workers.wait_for_complete()
            await pilot.pause()
            labels_checked += check(app, None, None, where)
            if quiet:
                check_quiet(app, stepper, oracle, drawn, where)
        while modal(app) is not None:
            await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        check(app, None, None, f"seed {seed}, the end, after {pressed}")
        check_quiet(app, stepper, oracle, drawn, f"seed {seed}, the end, after {pressed}", last=True)
        assert labels_checked > keys // 2  # the status comparison really ran
        await pilot.press("q")
        await pilot.pause()
    assert app._exception is None and app.return_code == 0


def prepared(monkeypatch, seed: int, clock: bool) -> None:
    """``clock``: a continue hands its steps over at random steps, its rows written behind; else
    at the app's own times, its rows written at once."""
    monkeypatch.setattr(Stepper, "writes_behind", clock)
    if clock:
        monkeypatch.setattr(workers, "time", Clock(seed))


RUNS = [("llama", "greedy", 1, True), ("llama", "sampled", 2, False), ("t5", "sampled", 4, True)]
"""The default runs (~15 s in all here); the slow ones run each model with each settings."""


@pytest.mark.parametrize("family, name, seed, clock", RUNS, ids=[f"{f}-{n}-{s}" for f, n, s, _ in RUNS])
async def test_random_keys_on_a_real_stepper_match_transformers(tiny_models, family, name, seed, clock, monkeypatch):
    prepared(monkeypatch, seed, clock)
    await real_monkey(tiny_models(family), SETTINGS[name], seed, keys=KEYS_PER_RUN)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 102))
@pytest.mark.parametrize("family, name", [("llama", "greedy"), ("llama", "sampled"), ("t5", "greedy"),
                                          ("t5", "sampled")])
async def test_longer_random_keys_on_a_real_stepper(tiny_models, family, name, seed, monkeypatch):
    prepared(monkeypatch, seed, clock=seed % 2 == 0)
    await real_monkey(tiny_models(family), SETTINGS[name], seed, keys=150)
