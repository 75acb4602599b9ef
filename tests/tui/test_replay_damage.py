"""A recording whose Nth step does not read (its JSON changed with its CRC recomputed: the file
opens whole, and the reader refuses the step only when it decodes it). The replay stays open on
the steps before it, as the app stays open after a live step that failed, and says why."""

from __future__ import annotations

from contextlib import asynccontextmanager

from lmscope.engine.recording import ReplayEngine
from lmscope.engine.trace_reader import Trace
from lmscope.testing import screen_text, wait_until_idle
from lmscope.tui.app import make_app
from trace_chunks import with_step_changed


def replay_app(path):
    return make_app(lambda: ReplayEngine(Trace(path)), theme="textual-dark")


@asynccontextmanager
async def replaying_damaged(t5_recording, tmp_path, step: int):
    """The replay of ``t5_recording`` with step ``step``'s stages emptied, loaded and still
    running, its notification drawn; yields ``(app, pilot)``."""
    app = replay_app(with_step_changed(t5_recording, tmp_path / "t5.lmscope", step, stages=[]))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:  # drawn, as in a terminal
        await wait_until_idle(pilot)
        await pilot.pause()  # the notification is drawn in the next refresh
        assert app.is_running and app.return_code is None
        yield app, pilot


def on_screen(app) -> str:
    """The screen's words in one line: a notification wraps its text over several rows."""
    return " ".join(word for line in screen_text(app).splitlines() for word in line.strip("▌▐ ").split())


async def test_the_steps_before_a_damaged_step_stay_browsable(t5_recording, tmp_path):
    """The 3rd step has no stages. Before: the app exited with the error (exit 2), its two
    steps before it gone with it."""
    async with replaying_damaged(t5_recording, tmp_path, 2) as (app, pilot):
        assert [record.step for record in app.view.steps] == [0, 1] and app.view.state == "error"
        text = on_screen(app)
        assert "step 2's chunk" in text and "stages is []" in text, text
        assert "part of the recording is not shown" in text
        assert "replay of t5.lmscope (damaged)" in screen_text(app).splitlines()[0]
        await pilot.press("left")  # browsing works: the first step is selected
        assert app.view.index == 0 and app.view.selected.step == 0
        await pilot.press("q")
        await pilot.pause()
    # as after a live step that failed, and as `open FILE --headless` ends: bad input, the error the result
    assert app.return_code == 2 and "step 2's chunk" in str(app.return_value)


async def test_a_first_step_that_does_not_read_leaves_the_prompt_to_browse(t5_recording, tmp_path):
    """Nothing of the history reads, but the prompt did (its tokens, encoder attention, cache):
    the app stays open on it, as it does on a recording cut before its first step."""
    async with replaying_damaged(t5_recording, tmp_path, 0) as (app, pilot):
        assert app.view.steps == () and app.view.prompt is not None and app.view.state == "error"
        assert "step 0's chunk" in on_screen(app)


async def test_the_steps_after_the_first_batch_are_kept_too(tmp_path):
    """The history comes in batches (8 steps, then 64): the steps read in the batch the damaged
    step was in join the history too."""
    from lmscope.testing import make_session, write_trace

    write_trace(tmp_path / "whole.lmscope", make_session("llama", steps=12))
    path = with_step_changed(tmp_path / "whole.lmscope", tmp_path / "s.lmscope", 10, token=["a"])
    app = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until_idle(pilot)
        assert [record.step for record in app.view.steps] == list(range(10)) and app.view.state == "error"
        assert app.view.index == 9 and app.return_code is None
