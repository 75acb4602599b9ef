"""Choices made while the engine is busy, or in a view opened before a restart: the branches
view, the force input and ``w`` never act on a session that changed under them."""

from __future__ import annotations

from lmscope.tui.widgets.branches import BranchesScreen
from lmscope.tui.widgets.text_input import TextInputScreen
from tui_harness import running, settle


def numbered(app) -> bool:
    """The View's steps are 0, 1, 2 ... in order (no step joined twice, none of another branch)."""
    return [record.step for record in app.view.steps] == list(range(len(app.view.steps)))


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


async def with_branch_1(pilot, app) -> None:
    """Four steps, then a rewind to step 2: branch 1 keeps the four."""
    await pilot.press("n", "n", "n", "n")
    await settle(app, pilot)
    await pilot.press("left", "left", "u")
    await settle(app, pilot)
    assert set(app.branch_tree.branches) == {0, 1}


async def test_another_branch_is_not_shown_while_a_continue_runs():
    async with running(steps=40, delay_s=0.02) as (app, pilot, engine):
        await with_branch_1(pilot, app)
        await pilot.press("c")
        await pilot.pause(0.2)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, BranchesScreen)
        await pilot.press("down", "enter")  # show branch 1 while the live one grows
        await pilot.pause()
        assert app.view.branch == 0 and app.view.live
        assert any("wait for the engine to finish" in m for m in notices(app))
        await settle(app, pilot)
        assert app.view.state == "finished" and len(app.view.steps) == 40 and numbered(app)
        assert app.view.steps == app.branch_tree.live_branch.steps


async def test_showing_the_live_branch_during_a_continue_adds_no_step_twice():
    async with running(steps=40, delay_s=0.02) as (app, pilot, engine):
        await pilot.press("c")
        await pilot.pause(0.3)
        for keys in (("t",), ("enter",), ("t",), ("r",)):  # enter shows it, r on the live one too
            await pilot.press(*keys)
            await pilot.pause()
        await settle(app, pilot)
        assert app.view.state == "finished" and len(app.view.steps) == 40 and numbered(app)
        assert "step 40/" in app.screen.query_one("StatusBar").lines().plain


async def test_a_branch_chosen_after_a_restart_is_refused_not_looked_up():
    async with running(steps=12) as (app, pilot, engine):
        await with_branch_1(pilot, app)
        await pilot.press("t")
        await pilot.pause()
        app.action_restart()  # as the command palette runs it over the open view
        await settle(app, pilot)
        assert set(app.branch_tree.branches) == {0}
        await pilot.press("down", "enter")  # show branch 1 of the tree the view was opened on
        await pilot.pause()
        assert any("the session restarted" in m for m in notices(app))
        assert app.view.state == "ready" and app.view.steps == () and app.view.branch == 0


async def test_a_branch_resumed_after_a_restart_is_refused():
    async with running(steps=12) as (app, pilot, engine):
        await with_branch_1(pilot, app)
        await pilot.press("t")
        await pilot.pause()
        app.action_restart()
        await settle(app, pilot)
        await pilot.press("down", "r")
        await settle(app, pilot)
        assert any("the session restarted" in m for m in notices(app))
        assert app.view.state == "ready" and engine.rewind_calls == 1


async def test_a_force_typed_across_a_restart_forces_nothing():
    async with running(steps=12) as (app, pilot, engine):
        await pilot.press("n", "n", "n", "n")
        await settle(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, TextInputScreen)
        app.action_restart()  # the palette's Restart while the input is open
        await settle(app, pilot)
        await pilot.press("P", "a", "r", "i", "s", "enter")
        await settle(app, pilot)
        assert app.view.state == "ready" and app.view.steps == () and engine.rewind_calls == 0
        assert any("nothing was forced" in m for m in notices(app))


async def test_a_force_typed_while_a_continue_runs_waits_for_nothing():
    async with running(steps=40, delay_s=0.02) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        app.action_continue()  # the palette's Continue while the input is open
        await pilot.press("P", "a", "r", "i", "s", "enter")
        await pilot.pause()
        assert app.view.state == "running"
        await settle(app, pilot)
        assert app.view.state == "finished" and len(app.view.steps) == 40 and numbered(app)
        assert engine.rewind_calls == 0 and set(app.branch_tree.branches) == {0}


async def test_a_write_that_fails_during_a_continue_leaves_it_running(monkeypatch, tmp_path):
    import lmscope.engine.trace_writer as trace_writer

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trace_writer, "write_session", full_disk)
    monkeypatch.chdir(tmp_path)
    async with running(steps=40, delay_s=0.02) as (app, pilot, engine):
        await pilot.press("w")  # idle: the state stays
        await pilot.pause(0.1)
        assert app.view.state == "ready" and not app.busy
        await pilot.press("c")
        await pilot.pause(0.2)
        await pilot.press("w")
        await pilot.pause(0.1)
        assert app.view.state == "running" and app.busy and app.check_action("pause", ()) is True
        failures = [n for n in app._notifications if n.severity == "error"]
        assert len(failures) == 2 and "No space left on device" in failures[-1].message
        await settle(app, pilot)
        assert app.view.state == "finished" and len(app.view.steps) == 40


async def test_a_text_that_makes_no_forcible_token_changes_nothing():
    """A typo in ``f`` is a warning, not an engine failure: the state and the history stay."""
    async with running(steps=12) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        steps = app.view.steps
        await pilot.press("left", "f")
        await pilot.pause()
        await pilot.press("z", "q", "x", "enter")  # not in the fake vocabulary
        await settle(app, pilot)
        assert app.view.state == "ready" and not app.busy and app.view.steps == steps
        assert engine.rewind_calls == 0 and set(app.branch_tree.branches) == {0}
        warnings = [n for n in app._notifications if n.severity == "warning"]
        assert len(warnings) == 1 and "'zqx' is not in the fake vocabulary" in warnings[0].message
        await pilot.press("n")  # stepping goes on
        await settle(app, pilot)
        assert len(app.view.steps) == 4
