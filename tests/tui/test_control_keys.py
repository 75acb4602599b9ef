"""Debugger control keys on the real app: breakpoints, rewind, force, branches."""

from __future__ import annotations

import pytest

from lmscope.testing import screen_text
from lmscope.tui.widgets.breakpoints import BreakpointsScreen
from lmscope.tui.widgets.branches import BranchesScreen
from lmscope.tui.widgets.text_input import TextInputScreen
from lmscope.tui.widgets.tokens import TokensPane
from tui_harness import running, settle


async def type_text(pilot, text: str) -> None:
    for char in text:
        await pilot.press({" ": "space", "'": "apostrophe", "<": "less_than_sign", "=": "equals_sign"}.get(char, char))


async def add_breakpoint(app, pilot, expr: str) -> None:
    await pilot.press("b")
    await pilot.pause()
    await type_text(pilot, expr)
    await pilot.press("enter")
    await pilot.pause()


async def test_b_adds_a_breakpoint_and_c_stops_after_the_step_where_it_holds():
    async with running(steps=12) as (app, pilot, engine):
        await add_breakpoint(app, pilot, "step == 4")
        assert [e.breakpoint.expr for e in app.breakpoint_entries] == ["step == 4"]
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 5 and app.view.index == 4 and app.view.state == "ready"
        assert app.view.notice == "breakpoint 1 `step == 4`: step=4 at step 4"
        assert "breakpoint 1 `step == 4`" in screen_text(app).splitlines()[0]
        assert app.view.marks == {4}
        assert "●" in app.query_one(TokensPane).text.plain
        await pilot.press("c")  # c again goes on to the end
        await settle(app, pilot)
        assert len(app.view.steps) == 12 and app.view.state == "finished"
        assert app.view.notice == "" and "breakpoint" not in screen_text(app).splitlines()[0]
        assert app.view.marks == {4}  # the step it held at stays marked


async def test_a_continue_lets_records_wait_only_while_no_breakpoint_reads_them():
    """Without breakpoints the records wait for the hand-over (``record_later``); with one, each
    step's record comes back from its step, for the breakpoint to read. Both land every step."""
    async with running(steps=12) as (app, pilot, engine):
        flags = []
        step = engine.step
        engine.step = lambda *a, **k: (flags.append(k.get("record_later", False)), step(*a, **k))[1]
        await pilot.press("c")
        await settle(app, pilot)
        assert [s.step for s in app.view.steps] == list(range(12)) and flags == [True] * 12
        await pilot.press("r")
        await settle(app, pilot)
        await add_breakpoint(app, pilot, "step == 40")
        flags.clear()
        await pilot.press("c")
        await settle(app, pilot)
        assert [s.step for s in app.view.steps] == list(range(12)) and flags == [False] * 12


async def test_a_bad_breakpoint_is_explained_inline_and_the_input_stays():
    async with running() as (app, pilot, engine):
        await add_breakpoint(app, pilot, "p <")
        assert isinstance(app.screen, TextInputScreen)
        assert "bad breakpoint `p <`: expected a value at column 4" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.breakpoint_entries == () and not isinstance(app.screen, TextInputScreen)


async def test_a_pattern_re_cannot_compile_is_explained_inline_and_the_app_stays():
    async with running() as (app, pilot, engine):
        await pilot.press("b")
        await pilot.pause()
        app.screen.query_one("#text-input").value = "text ~ 'a{4294967296}'"  # typed: it crashed the app
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, TextInputScreen)
        error = str(app.screen.query_one("#text-input-error").render())
        assert "bad pattern (the repetition number is too large) at column 8" in error
        assert app.breakpoint_entries == ()


async def test_a_margin_breakpoint_is_explained_inline_when_the_session_keeps_one_candidate():
    from lmscope.testing import FakeEngine, engine_factory, make_session
    from lmscope.tui.app import make_app
    from tui_harness import settle

    app = make_app(engine_factory(FakeEngine(make_session("llama", steps=4))), theme="textual-dark", top=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await add_breakpoint(app, pilot, "margin < 0.1")
        assert isinstance(app.screen, TextInputScreen) and app.breakpoint_entries == ()
        assert "`margin` needs the second-best" in str(app.screen.query_one("#text-input-error").render())


async def test_breakpoints_list_disables_and_deletes():
    async with running(steps=8) as (app, pilot, engine):
        await add_breakpoint(app, pilot, "step == 2")
        await add_breakpoint(app, pilot, "step == 5")
        await pilot.press("B")
        await pilot.pause()
        assert isinstance(app.screen, BreakpointsScreen)
        await pilot.press("space")  # disable the first
        await pilot.press("down", "d")  # delete the second
        await pilot.press("escape")
        await pilot.pause()
        assert [(e.number, e.enabled) for e in app.breakpoint_entries] == [(1, False)]
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 8 and app.view.notice == ""


async def test_q_closes_the_breakpoints_and_branches_views_as_it_closes_help():
    """A view over the screen takes the keys (the app's ``q`` does not reach the app): ``q``
    closes the lists, as ``esc`` does, and ``q`` again quits."""
    async with running(steps=8) as (app, pilot, engine):
        for key in ("B", "t", "question_mark"):
            await pilot.press(key)
            await pilot.pause()
            assert len(app.screen_stack) == 2, key
            await pilot.press("q")
            await pilot.pause()
            assert len(app.screen_stack) == 1 and app.is_running, key
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_u_rewinds_to_the_selected_step_and_keeps_the_rest_as_a_branch():
    async with running(steps=8) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        before = app.view.steps
        await pilot.press("left", "left", "left")  # select step 4
        await pilot.press("u")
        await settle(app, pilot)
        assert engine.rewind_calls == 1 and len(app.view.steps) == 4 and app.view.index == 3
        assert app.view.state == "ready"
        kept = [b for b in app.branch_tree.branches.values() if b.id != app.branch_tree.live]
        assert len(kept) == 1 and kept[0].steps == before and kept[0].fork_step == 4
        await pilot.press("n")
        await settle(app, pilot)
        assert app.view.steps[-1].step == 4 and app.view.steps[-1].token_id == before[4].token_id


@pytest.mark.parametrize("keys, rank", [
    (("down", "down", "down"), 2),  # logits stage, rank 3
    (("down", "down", "down", "up"), 1),  # logits stage: rank 3, then back to rank 2
])
async def test_stages_cursor_and_enter_force_that_candidate(keys, rank):
    async with running(steps=8) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        await pilot.press("left")  # step 1
        app.screen.query_one("#stages").focus()
        await pilot.press(*keys)
        await pilot.pause()
        candidate = app.view.cursor_candidate
        assert app.view.cursor == (0, rank) and candidate is not None
        assert candidate == app.view.selected.stages[0].top[rank]
        await pilot.press("enter")
        await settle(app, pilot)
        forced = app.view.steps[-1]
        assert (forced.step, forced.token_id, forced.chosen_by) == (1, candidate.token_id, "forced")
        assert len(app.view.steps) == 2


async def test_f_forces_the_first_token_of_a_text():
    async with running(steps=8) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        await pilot.press("f")
        await pilot.pause()
        await type_text(pilot, "Paris")
        await pilot.press("enter")
        await settle(app, pilot)
        forced = app.view.steps[-1]
        assert (forced.step, forced.token, forced.chosen_by) == (1, " Paris", "forced")


async def test_branches_view_shows_and_resumes_a_branch_exactly():
    async with running(steps=8) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        original = app.view.steps
        await pilot.press("home", "right", "right")  # step 1
        await pilot.press("u")
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, BranchesScreen)
        text = screen_text(app)
        assert "branch 0" in text and "branch 1 · fork at step 1" in text and "(live)" in text
        await pilot.press("down", "enter")  # show branch 1: no model work
        await pilot.pause()
        calls = engine.step_calls
        assert app.view.steps == original and not app.view.live
        assert app.check_action("step", ()) is None and app.check_action("rewind", ()) is None
        assert "viewing branch 1" in screen_text(app).splitlines()[0]
        assert engine.step_calls == calls
        common, replay = app.branch_tree.steps_to_replay(1)
        assert replay == original[common:] and common >= 1
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("r")  # resume it: rewind, then force its tokens
        await settle(app, pilot)
        assert app.branch_tree.live == 1 and app.view.live and app.view.steps == original
        assert engine.rewind_calls == 2 and engine.step_calls == calls + len(replay) and engine.max_active == 1


async def test_a_branch_shown_at_the_same_step_repaints_every_pane_from_its_own_records(tiny_t5_dir):
    """Panes that cache what they drew key it by the selected record, not its index: showing an
    abandoned branch at the step index the live one had selected draws that branch's attention
    and cross-attention, not the live branch's (real records: a forced token changes every
    later step's rows)."""
    from lmscope.engine import models
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.tui.app import make_app
    from lmscope.tui.widgets.attention import AttentionPlot
    from lmscope.tui.widgets.cross_attention import CrossAttentionPlot

    loaded = models.load(str(tiny_t5_dir), "t5", device="cpu", dtype="float32")
    stepper = Stepper(loaded, "the quick brown fox", GenerationSettings(max_new_tokens=6, min_new_tokens=6))
    app = make_app(lambda: stepper, theme="textual-dark")

    def drawn(plot) -> list:
        return [(segment.text, segment.style) for strip in plot.picture() for segment in strip]

    def fresh(plot) -> list:
        return [(segment.text, segment.style) for strip in plot._draw(*plot.size) for segment in strip]

    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", "n", "n", "n")
        await settle(app, pilot)
        await pilot.press("left", "left")  # step 2 (index 1)
        app.screen.query_one("#stages").focus()
        await pilot.press("down", "down", "enter")  # force its second candidate there
        await settle(app, pilot)
        await pilot.press("n", "n")
        await settle(app, pilot)
        assert len(app.view.steps) == 4 and app.view.index == 3 and app.branch_tree.live == 0
        for tab in ("1", "2", "3"):
            await pilot.press(tab)  # each tab drawn for the live branch's step 4
            await pilot.pause()
        app.show_branch(1)  # the abandoned branch, also at step 4
        await settle(app, pilot)
        assert app.view.index == 3 and not app.view.live
        assert app.view.selected is app.branch_tree.branches[1].steps[3]
        for tab, plot in (("1", app.query_one(AttentionPlot)), ("2", app.query_one(CrossAttentionPlot))):
            await pilot.press(tab)
            await pilot.pause()
            assert drawn(plot) == fresh(plot)


async def held_at_step_4_after_a_fork(app, pilot, made: int, rewind_keys: tuple[str, ...]) -> None:
    """``made`` steps, a rewind (``rewind_keys`` select the step; branch 1 keeps the ``made``),
    then ``c`` on the live branch to a breakpoint that holds at step 4."""
    await pilot.press(*["n"] * made)
    await settle(app, pilot)
    await pilot.press(*rewind_keys, "u")
    await settle(app, pilot)
    await add_breakpoint(app, pilot, "step == 4")
    await pilot.press("c")
    await settle(app, pilot)
    assert app.view.marks == {4} and app.view.branch == 0


async def in_branches_view(pilot, *keys: str) -> None:
    """``t``, then ``keys`` in the branches view (it opens on the branch shown)."""
    await pilot.press("t")
    await pilot.pause()
    await pilot.press(*keys)
    await pilot.pause()


async def test_breakpoint_marks_belong_to_the_branch_where_the_breakpoint_held():
    async with running(steps=12) as (app, pilot, engine):
        await held_at_step_4_after_a_fork(app, pilot, 6, ("home", "right", "right", "right"))  # before step 2
        await in_branches_view(pilot, "down", "enter")  # branch 1: no breakpoint held there
        assert app.view.branch == 1 and app.view.marks == frozenset()
        assert "●" not in app.query_one(TokensPane).text.plain
        await in_branches_view(pilot, "up", "enter")  # the live branch again: its mark is back
        assert app.view.branch == 0 and app.view.marks == {4}
        await pilot.press("home", "right", "right", "u")  # a fork at step 1: the mark goes with branch 2
        await settle(app, pilot)
        assert app.view.marks == frozenset()
        await in_branches_view(pilot, "down", "down", "enter")
        assert app.view.branch == 2 and app.view.marks == {4}


async def test_a_branch_set_aside_by_a_resume_keeps_its_breakpoint_marks():
    async with running(steps=12) as (app, pilot, engine):
        await held_at_step_4_after_a_fork(app, pilot, 3, ("home", "right", "right"))  # before step 1
        await in_branches_view(pilot, "down", "r")  # resume branch 1: branch 0 is set aside whole
        await settle(app, pilot)
        assert app.branch_tree.live == 1 and app.view.marks == frozenset()
        await in_branches_view(pilot, "up", "enter")  # branch 0 again, with the mark of its step 4
        assert app.view.branch == 0 and app.view.marks == {4}
