"""What the app does before its first frame: each piece is paid once (``lmscope open`` must show
its first frame within a second; benchmarks/bench_replay.py measures it)."""

from __future__ import annotations

from textual.widgets import LoadingIndicator

from lmscope.tui.widgets.panes import LOADING_DELAY_S, PanesArea
from tui_harness import running


async def test_a_quick_load_never_covers_the_panes(monkeypatch):
    """A recorded session is ready at once: no loading indicator to mount and remove (two layouts)."""
    covered = []
    original = PanesArea.get_loading_widget
    monkeypatch.setattr(PanesArea, "get_loading_widget", lambda self: covered.append(self) or original(self))
    async with running(steps=2) as (app, pilot, engine):
        await pilot.pause(LOADING_DELAY_S + 0.1)
        panes = app.screen.query_one(PanesArea)
        assert not panes.loading and panes._cover_widget is None and covered == []


async def test_a_slow_load_is_covered_by_the_loading_indicator(gates):
    load_gate = gates()
    async with running(load_gate=load_gate) as (app, pilot, engine):
        panes = app.screen.query_one(PanesArea)
        await pilot.pause()
        assert panes.loading and panes._cover_widget is None  # not yet: it may be over at once
        await pilot.pause(LOADING_DELAY_S + 0.1)
        assert isinstance(panes._cover_widget, LoadingIndicator)
        load_gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not panes.loading and panes._cover_widget is None
