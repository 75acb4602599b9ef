"""A fast continue: every step lands in the history, but the panes get one View per frame."""

from __future__ import annotations

import pytest

from test_control_keys import add_breakpoint
from tui_harness import running, settle


@pytest.fixture
def frequent_hand_overs(monkeypatch):
    """Hand-overs every 50 ms, not every 250: 120 steps of at least 4 ms then make at least nine,
    however fast the machine runs the rest, so the tests that count them do not hang on timing."""
    monkeypatch.setattr("lmscope.tui.workers.STEPS_MESSAGE_S", 0.05)


async def test_continue_coalesces_views_and_keeps_every_step():
    async with running(steps=200) as (app, pilot, engine):
        views = []
        original = app.watch_view
        app.watch_view = lambda view: (views.append(view), original(view))[1]
        await pilot.press("c")
        await settle(app, pilot)
        assert [s.step for s in app.view.steps] == list(range(200))
        assert [s.step for s in app.branch_tree.live_branch.steps] == list(range(200))
        assert app.view.state == "finished" and app.view.rate is None
        assert len(views) < 100, f"{len(views)} View updates for 200 steps: not coalesced"


async def test_single_steps_show_at_once_and_the_rate_shows_while_running():
    async with running(steps=200, delay_s=0.01) as (app, pilot, engine):
        await pilot.press("n")
        await settle(app, pilot)
        assert len(app.view.steps) == 1 and app.view.index == 0
        await pilot.press("c")
        for _ in range(200):
            await pilot.pause(0.02)
            if app.view.rate is not None:
                break
        assert app.view.state == "running" and app.view.rate > 0
        assert "tok/s" in app.screen.query_one("#status").lines().plain
        await pilot.press("p")
        await settle(app, pilot)
        assert app.view.state == "paused" and app.view.rate is None
        assert len(app.view.steps) == engine.step_calls


async def test_a_single_step_makes_its_products_in_the_step_and_a_continue_at_the_hand_over():
    """``n`` completes its one step alone, right after it: the engine makes each layer's
    ``q @ k.T`` in the step (``scores_in_step``), while the keys are in the processor's cache;
    a continue's steps leave theirs to the hand-over, which reads the keys once for all of them."""
    async with running(steps=40) as (app, pilot, engine):
        asked, step = [], engine.step

        def asking(*args, **kwargs):
            asked.append(kwargs.get("scores_in_step", False))
            return step(*args, **kwargs)

        engine.step = asking
        await pilot.press("n")
        await settle(app, pilot)
        assert asked == [True]
        await pilot.press("c")
        await settle(app, pilot)
        assert len(asked) == 40 and not any(asked[1:])


async def test_every_engine_call_runs_on_the_one_engine_thread():
    """Load, step, continue, rewind, restart and the lens, in two apps: all on one thread, never
    the UI's (torch gives each calling thread a parallel team of its own; engine/engine_thread.py)."""
    import threading

    threads = {}
    for _ in range(2):
        async with running(steps=8) as (app, pilot, engine):
            for name in ("start", "step", "rewind", "lens"):
                method = getattr(engine, name)
                setattr(engine, name, lambda *a, _m=method, _n=name, **k: (
                    threads.setdefault(_n, set()).add(threading.get_ident()), _m(*a, **k))[1])
            for key in ("n", "c", "u", "5", "r"):
                await pilot.press(key)
                await settle(app, pilot)
            assert engine.step_calls >= 8 and engine.rewind_calls == 1 and engine.start_calls == 2
    assert set(threads) == {"start", "step", "rewind", "lens"}
    assert len(set.union(*threads.values())) == 1 and threading.get_ident() not in threads["step"]


async def test_a_continue_hands_over_only_steps_whose_rows_are_complete(frequent_hand_overs):
    """The continue lets each step's attention rows wait (``rows_later``) and completes them
    before every hand-over: no StepsCompleted or RunStopped carries a step still waiting."""
    from lmscope.tui.messages import RunStopped, StepsCompleted

    async with running(steps=120, delay_s=0.004) as (app, pilot, engine):
        waiting_at_post = []
        post = app.post_message

        def checked_post(message):
            steps = getattr(message, "steps", None) if isinstance(message, (StepsCompleted, RunStopped)) else None
            if steps:
                waiting_at_post.append({record.step for record, _hit in steps} & engine.waiting_rows)
            return post(message)

        app.post_message = checked_post
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 120
        assert len(waiting_at_post) >= 3 and not any(waiting_at_post)  # several batches, none waiting
        assert engine.complete_calls >= len(waiting_at_post)


@pytest.mark.parametrize("breakpoints", [False, True])
async def test_a_continue_hands_steps_to_the_ui_only_once_their_rows_are_written(breakpoints, frequent_hand_overs):
    """Each hand-over writes its rows behind (``complete_waiting(write_behind=True)``) while the
    next steps run; its steps reach the UI only once ``rows_written`` says so, in order, and the
    run's last steps go with RunStopped after a plain ``complete_waiting``."""
    from lmscope.tui.messages import RunStopped, StepsCompleted

    async with running(steps=120, delay_s=0.004, writes_behind=True, written_after=2) as (app, pilot, engine):
        unwritten_at_post, posted = [], []
        post = app.post_message

        def checked_post(message):
            steps = getattr(message, "steps", None) if isinstance(message, (StepsCompleted, RunStopped)) else None
            if steps:
                indices = {record.step for record, _hit in steps}
                unwritten_at_post.append(indices & (engine.writing | engine.waiting_rows))
                posted.extend(record.step for record, _hit in steps)
            return post(message)

        app.post_message = checked_post
        if breakpoints:  # a breakpoint that never holds: records come from step(), not the hand-over
            await add_breakpoint(app, pilot, "step == 999")
            assert len(app.breakpoint_entries) == 1
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 120 and posted == list(range(120))
        assert len(unwritten_at_post) >= 3 and not any(unwritten_at_post)
        assert engine.complete_calls >= len(unwritten_at_post)


async def test_where_nothing_is_written_behind_each_hand_over_goes_at_once(frequent_hand_overs):
    """No step runs between a hand-over's complete_waiting and its StepsCompleted when the
    engine wrote nothing behind (as on a machine whose cores all run the forward)."""
    from lmscope.tui.messages import StepsCompleted

    async with running(steps=120, delay_s=0.004) as (app, pilot, engine):
        steps_at_complete, steps_at_post = [], []
        complete, post = engine.complete_waiting, app.post_message

        def counted_complete(*args, **kwargs):
            steps_at_complete.append(engine.step_calls)
            return complete(*args, **kwargs)

        def counted_post(message):
            if isinstance(message, StepsCompleted):
                steps_at_post.append(engine.step_calls)
            return post(message)

        engine.complete_waiting, app.post_message = counted_complete, counted_post
        await pilot.press("c")
        await settle(app, pilot)
        assert len(app.view.steps) == 120 and len(steps_at_post) >= 3
        assert set(steps_at_post) <= set(steps_at_complete)


async def test_a_recorded_continue_writes_each_steps_real_rows(tmp_path, tiny_llama_dir):
    """--record during a live continue: the trace's rows are the rows made in the step."""
    import numpy as np

    from lmscope.engine import models
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import TraceWriter
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=10, min_new_tokens=10)
    path = tmp_path / "continue.lmscope"
    engine = RecordingEngine(Stepper(loaded, "the quick brown fox", settings), TraceWriter(path), {})
    app = make_app(lambda: engine, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "finished"
        shown = [step.attention.probs.copy() for step in app.view.steps]
    engine.writer.close()
    reference = Stepper(loaded, "the quick brown fox", settings)
    reference.start()
    expected = [reference.step().attention.probs for _ in range(10)]
    trace = Trace(path)
    assert len(trace) == 10
    for index, rows in enumerate(expected):
        np.testing.assert_allclose(shown[index], rows, atol=1e-6)
        np.testing.assert_allclose(np.asarray(trace.step(index).attention.probs, dtype=np.float32), rows, atol=1e-3)


async def test_a_continue_starts_without_redrawing_the_panes(monkeypatch):
    """Pressing ``c`` repaints the status bar and the footer (pause is enabled), nothing else: the UI
    thread's work at that moment delays the continue's first step (from the prompt, or from a step)."""
    from textual.widget import Widget
    from lmscope.tui.widgets.footer import DebuggerFooter
    from lmscope.tui.widgets.status import StatusBar

    async with running(steps=40, delay_s=0.01) as (app, pilot, engine):
        for before in ("prompt", "a step"):
            refreshed = []
            refresh = Widget.refresh
            monkeypatch.setattr(Widget, "refresh",
                                lambda self, *a, **k: (refreshed.append(self), refresh(self, *a, **k))[1])
            app.action_continue()  # what the key runs, synchronously, before the worker's first step
            monkeypatch.setattr(Widget, "refresh", refresh)
            assert refreshed and all(isinstance(widget, (StatusBar, DebuggerFooter))
                                     for widget in refreshed), (before, refreshed)
            app.action_pause()
            await settle(app, pilot)
            assert app.view.state == "paused" and app.view.steps


async def test_a_continues_first_frame_waits_by_what_the_last_frame_of_new_steps_cost():
    """The pacer's rule holds from a continue's first frame: its wait comes from the UI thread's
    CPU time in the last frame that showed new steps (a step's here, then the prompt's after a
    restart), timed from the message to the frame drawn."""
    import itertools

    from lmscope.tui.pacing import DUTY, FramePacer

    async with running(steps=40, delay_s=0.01) as (app, pilot, engine):
        for key, frame_cost in (("n", 0.012), ("r", 0.02)):  # both waits inside the pacer's bounds
            reads = itertools.count()  # each read of the pacer's CPU clock: frame_cost later
            app._pacer = FramePacer(cpu=lambda: next(reads) * frame_cost)
            await pilot.press(key)
            await settle(app, pilot)
            app.action_continue()
            assert app._pacer.interval == pytest.approx(frame_cost / DUTY), key
            app.action_pause()
            await settle(app, pilot)


async def test_automatic_collections_wait_from_an_engine_calls_end_until_memory_settles(monkeypatch):
    """The frame that shows an engine call's last steps draws with collections held (the full
    collection after it finds the same garbage); they resume once memory has settled."""
    import gc

    held = []
    async with running(steps=8) as (app, pilot, engine):
        join = app._join_history
        monkeypatch.setattr(app, "_join_history", lambda steps: (held.append(not gc.isenabled()), join(steps)))
        for key in ("n", "c"):
            await pilot.press(key)
            await settle(app, pilot)
            await pilot.pause()
            assert gc.isenabled(), key
    assert held and held[-1], held  # the continue's end: held while its last steps joined


async def test_an_engine_calls_end_hands_the_panes_one_view_with_its_steps_and_state(monkeypatch):
    """Every pane takes each View, so the last steps and the new state come as one, not two."""
    async with running(steps=8) as (app, pilot, engine):
        seen = []
        watch = app.watch_view
        monkeypatch.setattr(app, "watch_view", lambda view: (seen.append((view.state, len(view.steps))), watch(view)))
        for key in ("n", "c"):
            await pilot.press(key)
            await settle(app, pilot)
    assert seen == [("stepping", 0), ("ready", 1), ("running", 1), ("finished", 8)]


async def test_a_continue_that_ends_before_its_keys_change_never_changes_them(monkeypatch):
    """Its steps all come with the message that ends it: the keys that would change are as they
    were again in that frame, so the footer is not asked to show them changed first."""
    from lmscope.tui.widgets.footer import DebuggerFooter

    async with running(steps=8) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        forced = []
        update = footer._update
        monkeypatch.setattr(footer, "_update", lambda screen, now: (forced.append(now), update(screen, now)))
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "finished"
    assert forced and not any(forced), forced


async def test_the_next_steps_row_pages_are_prepared_after_each_engine_call_hands_its_steps_over():
    """``prepare_next`` runs once per engine call (a step, a continue), after its steps."""
    async with running(steps=8) as (app, pilot, engine):
        await pilot.press("n")
        await settle(app, pilot)
        assert engine.prepared_after == [1] and len(app.view.steps) == 1
        await pilot.press("c")
        await settle(app, pilot)
        assert engine.prepared_after == [1, 8] and app.view.state == "finished"


@pytest.mark.parametrize("spare, duty", [(True, 0.04), (False, 0.01)])
async def test_frames_come_less_often_where_the_model_takes_every_core(monkeypatch, spare, duty):
    """Where torch's threads run on every core, a frame also stops the step while it draws, so
    the pacer's duty is a quarter; the load asks the engine thread which holds
    (``cores.spare_core``) for the engine's own device."""
    from lmscope.tui import pacing, workers

    asked = []
    monkeypatch.setattr(workers, "spare_core", lambda device: (asked.append(device), spare)[1])
    async with running(steps=8) as (app, pilot, engine):
        assert asked == [engine.info.device]
        assert app._pacer.duty == duty == pacing.frame_duty(spare)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "finished" and app._pacer.duty == duty


async def test_a_continue_makes_the_stages_of_the_steps_shown_only(tiny_llama_dir):
    """A continue's records make their stages when first read: the panes read the step they
    show, the token strip colours every token from the chosen token's probability alone. A step
    selected afterwards shows its own stages, the same as a step made in place."""
    from lmscope.engine import models
    from lmscope.engine.records import LazyTuple
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.testing import screen_text
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=40, min_new_tokens=40)
    app = make_app(lambda: Stepper(loaded, "the quick brown fox", settings), theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        steps = app.view.steps
        assert app.view.state == "finished" and len(steps) == 40
        assert all(isinstance(step.stages, LazyTuple) for step in steps)
        made = [step.step for step in steps if type(step.stages._held) is tuple]
        assert 39 in made and len(made) <= 20, made  # the last step is shown; most never were
        await pilot.press("home", "right")  # the prompt, then step 1
        await settle(app, pilot)
        first = app.view.selected
        assert first.step == 0 and type(first.stages._held) is tuple
        assert first.stages[-1].top[0].token in screen_text(app)
    reference = Stepper(loaded, "the quick brown fox", settings)
    reference.start()
    expected = reference.step()
    assert [[(c.token_id, c.prob) for c in stage.top] for stage in first.stages] == \
        [[(c.token_id, c.prob) for c in stage.top] for stage in expected.stages]
