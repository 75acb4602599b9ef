"""Pane caches cannot show a stale state (issue 12 item 6)."""

from __future__ import annotations

import gc

from lmscope.tui.identity import Same
from lmscope.tui.view import View
from lmscope.tui.widgets.stages import StagesPane
from lmscope.tui.widgets.status import StatusBar
from tui_harness import running


def test_same_is_identity_and_keeps_the_id_from_being_reused():
    first = View().with_state("running")
    key, freed_id = Same(first), id(first)
    del first
    gc.collect()
    fresh = [View().with_state("finished") for _ in range(2000)]
    assert all(id(view) != freed_id for view in fresh)  # a raw id() would be handed out again
    assert key == Same(key.obj) and key != Same(fresh[0]) and hash(key) == freed_id


async def test_status_and_stages_agree_after_load_and_after_each_state():
    async with running(steps=3) as (app, pilot, engine):
        stages, status = app.query_one(StagesPane), app.query_one(StatusBar)
        assert app.view.state == "ready"
        await pilot.pause()
        stages_text = "".join(stages.render_line(y).text for y in range(3))  # through the cache
        assert "waiting for the model" not in stages_text and "no step yet" in stages_text
        assert "ready" in status.render_line(0).text.lower()
