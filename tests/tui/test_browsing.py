"""History, layer and head keys, tabs, help and the palette: they only read records."""

from __future__ import annotations

from lmscope.testing import FakeEngine, Recording, engine_factory, make_session, make_step, screen_text
from lmscope.tui.app import make_app
from lmscope.tui.help import HelpScreen
from lmscope.tui.widgets.attention import AttentionPlot
from lmscope.tui.widgets.cross_attention import CrossAttentionPlot
from lmscope.tui.widgets.stages import StagesPane
from lmscope.tui.widgets.tokens import TokensPane
from tui_harness import running, settle


async def test_left_right_move_the_selection_without_engine_calls():
    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        calls = engine.step_calls
        await pilot.press("left", "left")
        assert app.view.index == 3 and app.query_one(StagesPane).current.selected is app.view.steps[3]
        assert "viewing 4" in screen_text(app)
        await pilot.press("home")
        assert app.view.index == -1 and "the prompt (prefill) is selected" in screen_text(app)
        await pilot.press("left", "right")
        assert app.view.index == 0
        await pilot.press("end", "right")
        assert app.view.index == 5
        assert engine.step_calls == calls and engine.start_calls == 1


async def test_layer_and_head_keys_change_the_attention_pane():
    async with running() as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        plot = app.query_one(AttentionPlot)
        assert (plot.layer, plot.head) == (0, 0)
        await pilot.press("right_square_bracket", "right_curly_bracket", "right_curly_bracket")
        assert (plot.layer, plot.head) == (1, 2)
        await pilot.pause()
        assert "layer 2/4 · head 3/9" in screen_text(app)
        await pilot.press("h")
        await pilot.pause()
        assert plot.head is None and "mean of 9 heads" in screen_text(app)
        await pilot.press("h", "left_square_bracket", "left_square_bracket", "left_curly_bracket")
        assert (plot.layer, plot.head) == (3, 8)  # both wrap around


async def test_help_screen_opens_and_closes():
    async with running() as (app, pilot, engine):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "Continue" in text and "F10" in text and "Toggle head mean" in text
        await pilot.press("n")  # the debugger's keys do not reach through the dialog
        assert engine.step_calls == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_offers_the_actions_and_respects_busy():
    async with running() as (app, pilot, engine):
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {"Step", "Continue", "Pause", "Restart", "Next layer", "Toggle head mean"} <= set(commands)
        await commands["Step"].callback()
        await settle(app, pilot)
        assert len(app.view.steps) == 1
        app.busy = True
        await commands["Step"].callback()
        await settle(app, pilot)
        assert engine.step_calls == 1
        app.busy = False
        await pilot.press("ctrl+p", "n", "left", "right")  # typed into the palette, not the debugger
        await settle(app, pilot)
        assert engine.step_calls == 1 and app.view.index == 0
        await pilot.press("escape")


async def test_t5_session_shows_encoder_decoder_and_cross_attention():
    async with running("t5", steps=4) as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        plain = app.query_one(TokensPane).text.plain
        assert "encoder" in plain and "decoder" in plain and "<pad>Das" in plain.replace(" ", "")
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one("#tabs").active == "cross"
        cross = app.query_one(CrossAttentionPlot)
        text = screen_text(app)
        assert "cross-attention · layer 1/3 · head 1/8" in text and "German" in text
        assert cross.matrix(app.view).rows[-1][0] is app.view.steps[-1].cross_attention
        await pilot.press("3")
        await pilot.pause()
        assert "cross-attention (fixed)" in screen_text(app)


async def test_a_hidden_heatmap_asks_for_no_repaint_and_shows_the_latest_view_when_shown():
    """A dirty widget off the screen makes Textual's compositor rebuild the map of every widget
    in the next frame (each key, each frame of a continue), so the hidden tab's plot only takes
    the View; it draws the latest one when its tab is shown."""
    async with running("t5", steps=4) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        cross = app.query_one(CrossAttentionPlot)
        repaints = []
        real_refresh = cross.refresh
        cross.refresh = lambda *args, **kwargs: repaints.append(args) or real_refresh(*args, **kwargs)
        await pilot.press("left", "right_square_bracket", "right_curly_bracket")
        await pilot.pause()
        assert repaints == [] and app.view.index == 1
        await pilot.press("2")
        await pilot.pause()
        assert repaints
        assert "cross-attention · layer 2/3 · head 2/8" in screen_text(app)
        assert cross.matrix(app.view).rows[-1][0] is app.view.steps[1].cross_attention


async def test_llama_hides_the_cross_attention_tab():
    async with running() as (app, pilot, engine):
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one("#tabs").active == "attention"
        assert "Cross-attention" not in screen_text(app)
        await pilot.press("4")
        await pilot.pause()
        assert "input_ids" in screen_text(app)


async def test_the_cross_attention_key_while_the_model_loads_says_it_is_loading(gates):
    load_gate = gates()
    async with running("t5", load_gate=load_gate) as (app, pilot, engine):
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one("#tabs").active == "attention"
        messages = [n.message for n in app._notifications]
        assert messages == ["the model is still loading: cross-attention is shown for T5 models"]
        load_gate.set()
        await settle(app, pilot)
        await pilot.press("2")
        await pilot.pause()
        assert app.query_one("#tabs").active == "cross"


async def test_ids_toggle_and_markup_like_tokens_stay_literal():
    async with running() as (app, pilot, engine):
        await pilot.press("i")
        await pilot.pause()
        plain = app.query_one(TokensPane).text.plain
        assert "[INST]:" in plain and "<s>:1" in plain
        assert "[/INST]" in screen_text(app)


async def test_tokens_pane_follows_the_selection_in_a_long_history():
    async with running(steps=24, size=(80, 24)) as (app, pilot, engine):
        await pilot.press("c")
        await settle(app, pilot)
        tokens = app.query_one(TokensPane)
        assert tokens.top > 0 and "</s>" in screen_text(app)
        await pilot.press("home")
        await pilot.pause()
        assert tokens.top == 0 and "prompt" in screen_text(app)


async def test_markup_like_tokens_and_errors_are_shown_literally():
    base = make_session("llama", steps=1)
    steps = (make_step(0, " [/INST]", prompt=base.prompt), make_step(1, " [", prompt=base.prompt))
    engine = FakeEngine(Recording(base.info, base.prompt, steps), fail_at=1,
                        error=RuntimeError("shapes [1, 3] and [/bold] differ"))
    app = make_app(engine_factory(engine), theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("n", "n")
        await settle(app, pilot)
        text = screen_text(app)
        assert "[/INST] p=" in text and app.view.state == "error"
        assert any("[/bold]" in n.message for n in app._notifications)
        await pilot.press("4")
        await pilot.pause()
        assert "input_ids" in screen_text(app)


async def test_tab_moves_between_panes_and_z_zooms_the_focused_one():
    async with running() as (app, pilot, engine):
        await pilot.press("n", "n")
        await settle(app, pilot)
        assert app.focused.id == "tokens"
        order = []
        for _ in range(4):
            await pilot.press("tab")
            order.append(app.focused.id or type(app.focused).__name__)
        assert order == ["stages", "ContentTabs", "attention-plot", "tokens"]  # round to the start
        await pilot.press("tab")
        stages = app.query_one(StagesPane)
        assert app.focused is stages and app.screen.maximized is None
        await pilot.press("z")
        await pilot.pause()
        assert app.screen.maximized is stages and "Tokens" not in screen_text(app)
        await pilot.press("z")
        await pilot.pause()
        assert app.screen.maximized is None and "Tokens" in screen_text(app)


async def test_1_brings_the_attention_tab_back():
    async with running() as (app, pilot, engine):
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("4")
        await pilot.pause()
        assert app.query_one("#tabs").active == "variables"
        await pilot.press("1")
        await pilot.pause()
        assert app.query_one("#tabs").active == "attention" and "layer 1/4 · head 1/9" in screen_text(app)


async def test_the_stages_title_gives_the_exact_p_of_a_token_outside_the_top():
    """A token sampled or forced outside the last stage's top candidates: its exact probability
    (``chosen_prob``, as --json prints it and `p` reads it), not only "(not in top)"."""
    from dataclasses import replace

    session = make_session("llama", steps=3)
    last = session.steps[-1].stages[-1]
    outside = next(i for i in range(1000) if i not in {c.token_id for c in last.top})
    steps = (*session.steps[:-1], replace(session.steps[-1], token_id=outside, chosen_prob=0.0371, chosen_by="forced"))
    engine = FakeEngine(Recording(session.info, session.prompt, steps))
    app = make_app(engine_factory(engine), theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        title = str(app.query_one(StagesPane).border_subtitle)
        assert "p=0.04 (not in top)" in title and "forced" in title
