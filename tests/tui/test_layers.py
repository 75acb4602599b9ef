"""The Layers tab: 5, s and F11 open it, [ ] and the cursor select a layer, enter shows its tensors."""

from __future__ import annotations

from textual.widgets import DataTable, TabbedContent

from lmscope.testing import screen_text
from lmscope.tui.widgets.attention import AttentionPlot
from lmscope.tui.widgets.layers import LayersPane, bar
from tui_harness import running, settle


async def open_layers(app, pilot, key: str) -> LayersPane:
    await pilot.press(key)
    await settle(app, pilot)
    await pilot.pause()
    return app.query_one(LayersPane)


async def test_5_opens_the_layers_tab_with_one_row_per_layer():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        pane = await open_layers(app, pilot, "5")
        assert app.query_one("#tabs", TabbedContent).active == "layers"
        table = pane.query_one(DataTable)
        assert table.row_count == engine.info.layers
        lens = engine.lens(2)
        text = screen_text(app)
        assert f"{lens[-1].chosen_prob:.3f}" in text  # the last layer's p(chosen)
        assert "step 3 · chose" in text


async def test_s_and_f11_step_into_the_selected_step():
    for key in ("s", "f11"):
        async with running(steps=6) as (app, pilot, engine):
            await pilot.press("n", "n", "n", "left")
            await settle(app, pilot)
            pane = await open_layers(app, pilot, key)
            assert app.query_one("#tabs", TabbedContent).active == "layers"
            assert app.focused is pane.query_one(DataTable)
            assert "step 2 · chose" in screen_text(app)  # the selected step, not the newest


async def test_prompt_selected_says_so():
    async with running(steps=6) as (app, pilot, engine):
        pane = await open_layers(app, pilot, "s")
        assert pane.query_one(DataTable).row_count == 0
        assert "select a generated step" in screen_text(app)


async def test_brackets_select_a_layer_and_attention_follows():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        pane = await open_layers(app, pilot, "5")
        table = pane.query_one(DataTable)
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        assert app.view.layer == 2 and table.cursor_row == 2
        assert app.query_one(AttentionPlot).layer == 2
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert table.cursor_row == 1
        table.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        assert app.view.layer == 3 and app.query_one(AttentionPlot).layer == 3
        await pilot.press("up")
        await pilot.pause()
        assert app.view.layer == 2 and table.cursor_row == 2 and app.query_one(AttentionPlot).layer == 2


async def test_another_steps_lens_keeps_the_layer_and_the_app_settles():
    """Moving to another step refills the table: the highlight its clear left behind must not
    move the layer (it did, and the refill's own highlight moved it back, for good)."""
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        pane = await open_layers(app, pilot, "5")
        await pilot.press("right_square_bracket")
        await pilot.pause()
        moves = []
        action_layer = app.action_layer
        app.action_layer = lambda delta: (moves.append(delta), action_layer(delta))
        await pilot.press("left")
        await settle(app, pilot)
        for _ in range(5):
            await pilot.pause()
        assert moves == [] and app.view.layer == 1 and app.view.index == 0
        assert pane.query_one(DataTable).cursor_row == 1 and "step 1 · chose" in screen_text(app)


async def test_enter_shows_the_tensors_of_the_layer():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        await open_layers(app, pilot, "s")
        assert "layer_output" not in screen_text(app)
        await pilot.press("down", "enter")
        await pilot.pause()
        text = screen_text(app)
        assert "layer 1 at this step" in text
        q = next(t for t in engine.layer_tensors(1, 1) if t.name == "q")
        assert "q" in text and str(list(q.shape)) in text
        await pilot.press("enter")
        await pilot.pause()
        assert "layer 1 at this step" not in screen_text(app)


async def test_the_lens_runs_in_a_worker_and_is_kept():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        calls = []
        original = engine.lens
        engine.lens = lambda step, top=3: calls.append(step) or original(step, top)
        await open_layers(app, pilot, "5")
        await pilot.press("left")
        await settle(app, pilot)
        await pilot.press("right")
        await settle(app, pilot)
        assert calls == [1, 0]  # step 1 again comes from the pane's cache


def test_bar():
    assert bar(0.0) == " " * 10 and bar(1.0) == "█" * 10 and bar(0.55).startswith("█████▌")


async def test_after_a_continue_the_layers_of_any_step_are_its_own(tiny_t5_dir):
    """A continue's decode steps capture no layers; stepping into one of them replays it on the
    engine thread, and the pane shows the lens a step made with its capture in place shows."""
    from lmscope.engine import models
    from lmscope.engine.layers import REPLAY
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_t5_dir), "t5", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8)
    stepper = Stepper(loaded, "the quick brown fox", settings)
    app = make_app(lambda: stepper, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "finished" and stepper._residuals[4][0] is REPLAY
        await pilot.press("left", "left", "left")  # step 5 of 8 (index 4)
        pane = await open_layers(app, pilot, "s")
        await settle(app, pilot)
        assert "step 5 · chose" in screen_text(app)
        shown = pane._lenses[pane.key_of(app.view)][0]
    reference = Stepper(loaded, "the quick brown fox", settings)
    reference.start()
    for _ in range(8):
        reference.step()
    expected = reference.lens(4)
    assert [(e.layer, e.chosen_prob, e.chosen_rank, e.norm, [c.token_id for c in e.top]) for e in shown] == \
        [(e.layer, e.chosen_prob, e.chosen_rank, e.norm, [c.token_id for c in e.top]) for e in expected]


def lens_numbers(lens) -> list:
    return [(e.layer, e.chosen_prob, e.chosen_rank, e.norm, [c.token_id for c in e.top]) for e in lens]


async def test_a_step_forced_in_place_of_another_shows_its_own_lens(tiny_llama_dir):
    """The pane keeps lenses by record, not by index: after a force at step 3, step 3 is another
    record and gets its own lens; the abandoned branch's step 3 keeps the lens it had, and its
    step 4, never looked into, says the model no longer holds it rather than showing another's."""
    from lmscope.engine import models
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    stepper = Stepper(loaded, "the quick brown fox", GenerationSettings(max_new_tokens=8, min_new_tokens=8))
    app = make_app(lambda: stepper, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", "n", "n", "n")
        await settle(app, pilot)
        await pilot.press("left")  # step 3 (index 2)
        pane = await open_layers(app, pilot, "5")
        await settle(app, pilot)
        old_step = app.view.selected
        old_lens = pane._lenses[pane.key_of(app.view)][0]
        assert lens_numbers(old_lens) == lens_numbers(stepper.lens(2))
        app.screen.query_one("#stages").focus()
        await pilot.press("down", "down")  # the logits stage's second candidate
        await pilot.press("enter")  # rewind to step 3 and force it
        await settle(app, pilot)
        forced = app.view.selected
        assert forced.step == 2 and forced.chosen_by == "forced" and forced.token_id != old_step.token_id
        await pilot.pause()
        await settle(app, pilot)
        shown = pane._lenses[pane.key_of(app.view)][0]
        assert lens_numbers(shown) == lens_numbers(stepper.lens(2))
        assert lens_numbers(shown) != lens_numbers(old_lens)
        app.show_branch(1)  # the abandoned branch, its step 4 selected
        await settle(app, pilot)
        assert app.view.selected.step == 3 and not app.view.live
        assert "step 4 is on branch 1, which the model no longer holds" in screen_text(app)
        assert pane.query_one(DataTable).row_count == 0
        await pilot.press("left")  # its step 3: the lens it had
        await settle(app, pilot)
        assert app.view.selected is old_step
        assert f"{old_lens[-1].chosen_prob:.3f}" in screen_text(app)


async def test_a_recorded_session_says_it_keeps_no_layers(tmp_path):
    from lmscope import testing
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.testing import make_session
    from lmscope.tui.app import make_app

    testing.write_trace(tmp_path / "s.lmscope", make_session("llama", steps=4))
    engine = ReplayEngine(Trace(tmp_path / "s.lmscope"))
    app = make_app(lambda: engine, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await open_layers(app, pilot, "5")
        await settle(app, pilot)
        text = screen_text(app)
        assert "the recording keeps no logit lens for this step" in text and "lens failed" not in text


async def test_a_replay_shows_the_lens_recorded_with_a_step(tmp_path):
    """A step whose lens was recorded shows it (no tensors: enter says so); the others keep the message."""
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.testing import make_lens, make_session, write_trace
    from lmscope.tui.app import make_app

    session = write_trace(tmp_path / "s.lmscope", make_session("llama", steps=4), lens_steps=(1,))
    engine = ReplayEngine(Trace(tmp_path / "s.lmscope"))
    app = make_app(lambda: engine, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("home", "right", "right")  # step 2, whose lens was recorded
        pane = await open_layers(app, pilot, "s")
        await settle(app, pilot)
        lens = make_lens(session.steps[1], session.info.layers)
        text = screen_text(app)
        assert pane.query_one(DataTable).row_count == session.info.layers
        assert f"{lens[-1].chosen_prob:.3f}" in text and "step 2 · chose" in text and "the recorded lens" in text
        await pilot.press("enter")
        await pilot.pause()
        assert "the recording keeps no layer tensors, only the lens" in screen_text(app)
        await pilot.press("right")  # step 3: none recorded
        await settle(app, pilot)
        text = screen_text(app)
        assert "the recording keeps no logit lens for this step" in text and "lens failed" not in text
        assert pane.query_one(DataTable).row_count == 0


async def test_a_step_stepped_into_while_recording_keeps_its_lens_in_the_trace(tmp_path):
    """The TUI's lens of a step goes into the recording, and its replay shows it."""
    from lmscope.engine.recording import RecordingEngine, ReplayEngine
    from lmscope.engine.trace import lens_to_list
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import TraceWriter
    from lmscope.testing import FakeEngine, make_session
    from lmscope.tui.app import make_app

    fake = FakeEngine(make_session("llama", steps=6))
    writer = TraceWriter(tmp_path / "r.lmscope")
    app = make_app(lambda: RecordingEngine(fake, writer, {}), theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", "n", "n", "left")
        await settle(app, pilot)
        await open_layers(app, pilot, "s")  # steps into step 2 (index 1)
        await settle(app, pilot)
        await pilot.press("right")  # and step 3 (index 2)
        await settle(app, pilot)
        await pilot.press("left")  # back: the pane keeps it, nothing is written again
        await settle(app, pilot)
    writer.close()
    trace = Trace(tmp_path / "r.lmscope")
    assert [trace.has_lens(i) for i in range(3)] == [False, True, True]
    assert [c.kind for c in trace._chunks].count(b"LENS") == 2
    assert trace.lens_data(1) == lens_to_list(fake.lens(1))
    engine = ReplayEngine(trace)
    app = make_app(lambda: engine, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("left")
        await open_layers(app, pilot, "s")
        await settle(app, pilot)
        assert f"{fake.lens(1)[-1].chosen_prob:.3f}" in screen_text(app)


async def test_a_single_step_with_the_layers_tab_showing_captures_its_layers_in_the_step(tiny_llama_dir):
    """``n`` with the Layers tab showing: the step captures its layers as it runs, so the lens
    that the pane asks for next needs no second forward pass; with another tab showing, and in
    a continue, the step leaves them to a replay."""
    from lmscope.engine import models
    from lmscope.engine.layers import REPLAY
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8)
    stepper = Stepper(loaded, "the quick brown fox", settings)
    replayed = []
    replay = stepper._replayed
    stepper._replayed = lambda step: (replayed.append(step), replay(step))[1]
    app = make_app(lambda: stepper, theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n")  # step 0 comes from the prefill, captured in start()
        await settle(app, pilot)
        pane = await open_layers(app, pilot, "5")
        for _ in range(2):
            await pilot.press("n")
            await settle(app, pilot)
            await pilot.pause()
        assert "step 3 · chose" in screen_text(app)
        assert [stepper._residuals[step][0] is REPLAY for step in (1, 2)] == [False, False]
        assert replayed == []
        shown = pane._lenses[pane.key_of(app.view)][0]
        await pilot.press("1")  # the Attention tab
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        assert stepper._residuals[3][0] is REPLAY
        await open_layers(app, pilot, "5")
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.state == "finished"
        assert [stepper._residuals[step][0] is REPLAY for step in range(4, 7)] == [True] * 3
    reference = Stepper(loaded, "the quick brown fox", settings)
    reference.start()
    for _ in range(3):
        reference.step()
    assert lens_numbers(shown) == lens_numbers(reference.lens(2))
