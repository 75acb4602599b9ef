"""Text from outside lmscope (a breakpoint, a setting, a model or file name, an error, a token)
reaches the screen with no character that is not printable: an ESC, a C1 control or a bidi
override is drawn escaped (``\\x1b``), never handed to the terminal to act on."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from textual import events
from textual.widgets import Input

from lmscope.engine.breakpoints import parse
from lmscope.engine.recording import ReplayEngine
from lmscope.engine.trace_reader import Trace
from lmscope.testing import (FakeEngine, engine_factory, make_session, screen_text, unprintable_on_screen,
                             write_trace)
from lmscope.tui.app import make_app
from tui_harness import settle

ESCAPE = "\x1b[31mRED"
"""Would turn the rest of the screen red if it reached the terminal raw."""
C1_AND_BIDI = "\x9b31m\u202e"
"""CSI as one C1 character, then a right-to-left override."""


@asynccontextmanager
async def showing(recording, engine=None, **app_kwargs):
    """The app on ``recording`` at 120x40 with notifications shown; yields ``(app, pilot)``."""
    engine = engine or FakeEngine(recording)
    app = make_app(engine_factory(engine), theme="textual-dark", **app_kwargs)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(app, pilot)
        yield app, pilot
        app.pause_requested.set()


async def press(app, pilot, *keys) -> None:
    """Press ``keys``, waiting for the engine after each."""
    for key in keys:
        await pilot.press(key)
        await settle(app, pilot)


def assert_drawn_escaped(app, *shown: str) -> None:
    """Nothing on screen is unprintable, and each of ``shown`` (an escaped text) is on it."""
    assert unprintable_on_screen(app) == []
    text = screen_text(app)
    for escaped in shown:
        assert escaped in text


def with_token_text(recording, old: str, new: str):
    """``recording`` with the token text ``old`` written as ``new`` wherever a token shows: the
    prompt, the chosen tokens and every stage's candidates (the lens takes the logits stage's)."""
    def text(token: str) -> str:
        return new if token == old else token

    def stage(s):
        return replace(s, top=tuple(replace(c, token=text(c.token)) for c in s.top))

    prompt = replace(recording.prompt, input_tokens=tuple(map(text, recording.prompt.input_tokens)))
    steps = tuple(replace(s, token=text(s.token), stages=tuple(map(stage, s.stages))) for s in recording.steps)
    return replace(recording, prompt=prompt, steps=steps)


async def test_a_token_with_c1_and_bidi_controls_is_drawn_escaped_in_every_pane():
    token = f" Pa{C1_AND_BIDI}ris"
    session = with_token_text(make_session(steps=8), " Paris", token)
    assert session.steps[5].token == token
    async with showing(with_token_text(session, " France", f" Fr{C1_AND_BIDI}")) as (app, pilot):
        assert_drawn_escaped(app, " Fr\\x9b31m\\u202e")  # the prompt's token: tokens pane, heatmap
        await press(app, pilot, "c", "home", *["right"] * 6)  # step 6 chose it: stages, its title
        assert app.view.selected.token == token
        assert_drawn_escaped(app, "Pa\\x9b31m\\u202eris")
        for tab in "345":  # KV cache, variables, layers (the lens's top tokens)
            await press(app, pilot, tab)
            await pilot.pause()
            assert_drawn_escaped(app)
        await press(app, pilot, "u", "t")  # the rewound steps, a branch, in the branches view
        assert_drawn_escaped(app, "Pa\\x9b31m\\u202eris")


async def test_a_t5_token_with_c1_and_bidi_controls_is_drawn_escaped_in_cross_attention():
    session = with_token_text(make_session("t5", steps=5), "house", f"ho{C1_AND_BIDI}use")
    async with showing(session) as (app, pilot):
        await press(app, pilot, "c", "2")
        await pilot.pause()
        assert_drawn_escaped(app, "ho\\x9b31m\\u202e")


async def test_a_breakpoint_expression_is_drawn_escaped_where_it_holds_and_in_the_list():
    expr = f"step >= 0 or token == '{ESCAPE}'"
    async with showing(make_session(steps=6), breakpoints=(parse(expr),)) as (app, pilot):
        await press(app, pilot, "n")  # breakpoint 1 holds: its line is the status bar's notice
        assert ESCAPE in app.view.notice
        assert_drawn_escaped(app, "`step >= 0 or token == '\\x1b[31mRED'`")
        await press(app, pilot, "B")
        assert_drawn_escaped(app, "step >= 0 or token == '\\x1b[31mRED'")


async def test_settings_are_drawn_escaped_in_the_status_bar():
    session = make_session(steps=4)
    settings = (("bad_words", f"ok,{ESCAPE}"), ("stop_strings", f"end{C1_AND_BIDI}"))
    async with showing(replace(session, info=replace(session.info, settings=settings))) as (app, pilot):
        assert_drawn_escaped(app, "bad_words=ok,\\x1b[31mRED stop_strings=end\\x9b31m\\u202e")


async def test_a_model_name_is_drawn_escaped_in_the_status_bar():
    session = make_session(steps=4)
    async with showing(replace(session, info=replace(session.info, model=f"./a{ESCAPE}"))) as (app, pilot):
        assert_drawn_escaped(app, "./a\\x1b[31mRED · llama")


async def test_a_replay_file_name_is_drawn_escaped_in_the_replay_label(tmp_path):
    path = tmp_path / f"a{ESCAPE}.lmscope"
    session = make_session(steps=4)
    write_trace(path, replace(session, info=replace(session.info, model=f"m{C1_AND_BIDI}")))
    engine = ReplayEngine(Trace(path))
    async with showing(session, engine=engine) as (app, pilot):
        assert_drawn_escaped(app, "replay of a\\x1b[31mRED.lmscope, recorded ", "m\\x9b31m\\u202e · llama")


async def test_an_error_quoting_text_is_notified_escaped_with_its_lines():
    error = RuntimeError(f"no file named '{ESCAPE}'\nsee {C1_AND_BIDI}")
    engine = FakeEngine(make_session(steps=4), fail_at=0, error=error)
    async with showing(engine.recording, engine=engine) as (app, pilot):
        await press(app, pilot, "n")
        await pilot.pause()
        assert_drawn_escaped(app, "RuntimeError: no file named '\\x1b[31mRED'", "see \\x9b31m\\u202e")


@pytest.mark.parametrize("key", ["b", "f"])
async def test_a_pasted_control_character_is_not_echoed_by_the_input(key):
    async with showing(make_session(steps=6)) as (app, pilot):
        await press(app, pilot, "n", key)
        field = app.screen.query_one(Input)
        field.post_message(events.Paste(f"p < 0.3{ESCAPE}\u009b\nsecond line"))
        await pilot.pause()
        assert field.value == "p < 0.3[31mRED"  # what a key would have typed: printable characters
        assert_drawn_escaped(app, "p < 0.3[31mRED")


async def test_names_read_from_a_recording_are_drawn_escaped():
    """A recording's file holds any string: a stage's, a tensor's or a cache layer's name, how a
    token was chosen, why generation ended."""
    session = make_session(steps=4)

    def renamed(step):
        stages = (step.stages[0], *(replace(s, name=f"Top{ESCAPE}") for s in step.stages[1:]))
        tensors = tuple(replace(t, name=f"ids{ESCAPE}") for t in step.tensors)
        cache = replace(step.cache, cache_class=f"Dyn{ESCAPE}",
                        layers=tuple(replace(e, kind=f"k{ESCAPE}") for e in step.cache.layers))
        reason = f"eos{ESCAPE}" if step.finish_reason else None
        return replace(step, stages=stages, tensors=tensors, cache=cache, chosen_by=f"s{ESCAPE}",
                       finish_reason=reason)

    async with showing(replace(session, steps=tuple(map(renamed, session.steps)))) as (app, pilot):
        await press(app, pilot, "c")
        assert_drawn_escaped(app, "ended by eos\\x1b[31mRED", "Top\\x1b", "· s\\x1b[31mRED ·")
        for tab in "34":
            await press(app, pilot, tab)
            await pilot.pause()
            assert_drawn_escaped(app, "ids\\x1b[31mRED" if tab == "4" else "Dyn\\x1b[31mRED")
        await press(app, pilot, "left", "u", "t")  # the steps set aside, ended as recorded, a branch
        assert_drawn_escaped(app, "· eos\\x1b[31mRED")


async def test_a_lens_error_quoting_text_is_drawn_escaped_in_the_layers_pane(monkeypatch):
    engine = FakeEngine(make_session(steps=4))

    def failing_lens(step, top=3):
        raise RuntimeError(f"no layer named {ESCAPE}")

    monkeypatch.setattr(engine, "lens", failing_lens)
    async with showing(engine.recording, engine=engine) as (app, pilot):
        await press(app, pilot, "n", "5")
        await settle(app, pilot)
        assert_drawn_escaped(app, "lens failed: RuntimeError: no layer named \\x1b[31mRED")


async def test_a_layer_tensor_name_is_drawn_escaped_in_the_layers_pane(monkeypatch):
    """A layer's tensor names come from the model's own modules (remote code may name them anything)."""
    engine = FakeEngine(make_session(steps=4))
    made = engine.layer_tensors

    def renamed(step, layer):
        return tuple(replace(info, name=f"q{ESCAPE}") for info in made(step, layer))

    monkeypatch.setattr(engine, "layer_tensors", renamed)
    async with showing(engine.recording, engine=engine) as (app, pilot):
        await press(app, pilot, "n", "5")
        await pilot.pause()
        app.query_one("LayersPane DataTable").focus()
        await press(app, pilot, "enter")  # the selected layer's tensors
        await pilot.pause()
        assert_drawn_escaped(app, "q\\x1b[31mRED")
