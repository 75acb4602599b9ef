"""Stepping, continuing, pausing, restarting and failing, driven by keys on the real app."""

from __future__ import annotations

import asyncio

import pytest

from lmscope.engine.errors import UserError
from lmscope.tui.widgets.tokens import TokensPane
from tui_harness import running, settle


async def test_loads_then_shows_the_prompt():
    async with running() as (app, pilot, engine):
        assert app.view.state == "ready"
        assert engine.start_calls == 1 and app.view.steps == ()
        assert "What is the capital" in app.query_one(TokensPane).text.plain


async def test_step_adds_a_record_and_the_tokens_pane_shows_it():
    async with running() as (app, pilot, engine):
        await pilot.press("n")
        await settle(app, pilot)
        assert [s.token for s in app.view.steps] == [" The"]
        assert app.view.index == 0 and app.view.state == "ready"
        assert app.query_one(TokensPane).text.plain.split("output")[1].strip().startswith("The")
        for key in ("space", "f10"):
            await pilot.press(key)
            await settle(app, pilot)
        assert len(app.view.steps) == 3 and engine.step_calls == 3


async def test_continue_runs_to_the_end_and_history_stays_browsable():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 6 and app.view.steps[-1].finish_reason == "eos"
        assert app.view.state == "finished"
        assert app.check_action("step", ()) is None and app.check_action("continue", ()) is None
        await pilot.press("n", "f5")
        await settle(app, pilot)
        assert engine.step_calls == 6
        await pilot.press("left", "left")
        assert app.view.index == 3


async def test_pause_stops_at_a_step_boundary(gates):
    gate = gates()
    async with running(steps=6, gate=gate) as (app, pilot, engine):
        await pilot.press("c")
        await asyncio.to_thread(engine.entered.wait, 5)
        assert app.view.state == "running" and app.check_action("pause", ()) is True
        await pilot.press("p")
        gate.set()
        await settle(app, pilot)
        assert len(app.view.steps) == 1 and app.view.state == "paused"
        assert engine.step_calls == 1
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 6 and app.view.state == "finished"


async def test_restart_clears_history():
    async with running() as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        assert len(app.view.steps) == 3
        await pilot.press("r")
        await settle(app, pilot)
        assert engine.start_calls == 2
        assert app.view.steps == () and app.view.index == -1 and app.view.state == "ready"
        assert "output" in app.query_one(TokensPane).text.plain
        await pilot.press("n")
        await settle(app, pilot)
        assert [s.step for s in app.view.steps] == [0]


async def test_step_key_during_a_running_step_is_ignored(gates):
    gate = gates()
    async with running(gate=gate) as (app, pilot, engine):
        await pilot.press("n")
        await asyncio.to_thread(engine.entered.wait, 5)
        assert app.busy and app.check_action("step", ()) is None
        assert app.screen.active_bindings["n"].enabled is False  # the Footer greys it
        await pilot.press("n", "space", "f10", "c", "r")
        gate.set()
        await settle(app, pilot)
        assert engine.step_calls == 1 and engine.start_calls == 1 and engine.max_active == 1
        assert len(app.view.steps) == 1 and not app.busy


async def test_ui_answers_keys_while_a_step_runs(gates):
    gate = gates()
    gate.set()
    async with running(gate=gate) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        gate.clear()
        engine.entered.clear()
        await pilot.press("n")
        await asyncio.to_thread(engine.entered.wait, 5)
        await pilot.press("left", "right_square_bracket")  # browsing works meanwhile
        assert app.view.index == 0 and app.view.layer == 1 and app.busy
        gate.set()
        await settle(app, pilot)
        assert len(app.view.steps) == 3 and app.view.index == 0  # a new step does not steal the selection


async def test_engine_error_is_shown_and_history_stays():
    async with running(steps=6, fail_at=2) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 2 and app.view.state == "error"
        messages = [n.message for n in app._notifications]
        assert any("out of memory" in m for m in messages)
        await pilot.press("left")
        assert app.view.index == 0
        await pilot.press("end", "n")  # the fake fails once; stepping again works
        await settle(app, pilot)
        assert len(app.view.steps) == 3 and app.view.state == "ready"


async def test_ui_answers_keys_while_the_model_loads(gates):
    load_gate = gates()
    async with running(load_gate=load_gate) as (app, pilot, engine):
        await pilot.pause()
        assert app.view.state == "loading" and app.busy
        assert app.screen.query_one("#panes").loading
        await pilot.press("n", "c")
        assert engine.step_calls == 0
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        load_gate.set()
        await settle(app, pilot)
        assert app.view.state == "ready" and not app.screen.query_one("#panes").loading


async def test_f5_continues_to_the_end_like_c():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("f5")
        await settle(app, pilot)
        assert len(app.view.steps) == 6 and app.view.state == "finished" and engine.step_calls == 6


async def test_q_quits_with_exit_code_0():
    async with running() as (app, pilot, engine):
        assert app.is_running and app.return_code is None
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running and app.return_code == 0


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("CUDA out of memory (fake)"), 1),
                                             (UserError("sampling failed at step 1 (fake)"), 2)])
async def test_q_after_a_failed_step_exits_with_the_code_headless_gives_it(error, code):
    """The session ended with a failed step: the exit code says so, as ``--headless`` says it for
    the same error (an error of lmscope or the model 1, bad input 2), and the error is the app's
    result, for the command line to print as its one line. Before: exit code 0."""
    async with running(steps=6, fail_at=1, error=error) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "error" and app.is_running
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == code and app.return_value is error


async def test_q_after_a_failed_step_and_a_good_one_exits_0():
    """A step that failed and a later one that did not: the session did not end with a failure."""
    async with running(steps=6, fail_at=1) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "error"
        await pilot.press("n")  # the fake fails once
        await settle(app, pilot)
        assert app.view.state == "ready"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and app.return_value is None
