"""What the app does before its first frame: each piece is paid once (``lmscope open`` must show
its first frame within a second; benchmarks/bench_replay.py measures it)."""

from __future__ import annotations

from textual.widgets import LoadingIndicator
from textual.widgets._footer import FooterKey

from lmscope.tui.widgets.footer import GREY_AFTER_S, DebuggerFooter
from lmscope.tui.widgets.panes import LOADING_DELAY_S, PanesArea
from tui_harness import running


async def test_the_footer_has_its_keys_from_its_first_compose(monkeypatch):
    """The keys are there in the first frame, and the bindings changing while the app starts (and
    on each step) grey them in place: no recompose."""
    recomposes = []
    original = DebuggerFooter.recompose

    async def counted(self):
        recomposes.append(len(self.screen.active_bindings))
        await original(self)

    monkeypatch.setattr(DebuggerFooter, "recompose", counted)
    async with running(steps=3) as (app, pilot, engine):
        keys = list(app.screen.query(FooterKey))
        assert recomposes == [] and len(keys) > 10
        await pilot.press("n")  # busy flips twice
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert recomposes == [] and list(app.screen.query(FooterKey)) == keys


async def test_keys_greyed_in_place_look_as_textuals_disabled_keys(monkeypatch):
    """Greying sets the keys' dim style inline (a ``-disabled`` class restyled each key through the
    whole stylesheet: 4 ms of the UI thread at each continue's start and end): a key greyed in
    place looks as one Textual composed disabled, and one composed disabled, enabled in place,
    as an enabled one."""
    async with running(steps=3) as (app, pilot, engine):
        keys = {key.action: key for key in app.screen.query(FooterKey)}
        step, pause = keys["app.step"], keys["app.pause"]
        enabled, disabled = step.rich_style, pause.rich_style  # as composed
        assert pause._disabled and pause.has_class("-disabled") and disabled.dim
        assert not step._disabled and not enabled.dim
        restyled = []
        update_styles = type(app).update_styles
        monkeypatch.setattr(type(app), "update_styles",
                            lambda self, node, **kwargs: (restyled.append(node), update_styles(self, node, **kwargs))[1])
        app.view = app.view.with_state("running")
        app.busy = True  # as a continue starts: pause is enabled at once, step greys a moment later
        await pilot.pause()
        assert not pause._disabled and pause.rich_style == enabled
        assert not step._disabled
        await pilot.pause(GREY_AFTER_S + 0.1)
        assert not [node for node in restyled if isinstance(node, FooterKey)]
        assert step._disabled and step.rich_style == disabled
        app.busy = False
        app.view = app.view.with_state("ready")
        app.refresh_bindings()
        await pilot.pause()
        assert not step._disabled and step.rich_style == enabled
        assert pause._disabled and pause.rich_style == disabled


async def test_a_call_shorter_than_the_grey_delay_greys_no_key():
    """A step or a short continue ends before the keys it disables would grey: only the keys it
    enables (pause, for a continue) change, and change back at its end; the others are never
    restyled."""
    async with running(steps=3) as (app, pilot, engine):
        keys = {key.action: key for key in app.screen.query(FooterKey)}
        step, pause = keys["app.step"], keys["app.pause"]
        styled = []
        set_attr = type(step.styles).__setattr__

        def counted(styles, name, value):
            if name == "text_style":
                styled.append((styles.node.action, value))
            set_attr(styles, name, value)

        type(step.styles).__setattr__ = counted
        try:
            app.view = app.view.with_state("running")
            app.busy = True
            await pilot.pause()
            assert not step._disabled and not pause._disabled and app.check_action("step", ()) is None
            app.busy = False
            app.view = app.view.with_state("ready")
            app.refresh_bindings()
            await pilot.pause()
            assert pause._disabled  # once the call is over, at once
            await pilot.pause(GREY_AFTER_S + 0.1)
        finally:
            type(step.styles).__setattr__ = set_attr
        assert not step._disabled and pause._disabled
        assert styled == [("app.pause", "none"), ("app.pause", "dim")]


async def test_a_continue_greys_its_keys_in_its_first_paced_frame(monkeypatch):
    """A continue's keys grey with the panes' first update, not in a frame of their own later."""
    from lmscope.tui.widgets import footer

    monkeypatch.setattr(footer, "GREY_AFTER_S", 60.0)  # the timer cannot be what greys them
    async with running(steps=60, delay_s=0.01) as (app, pilot, engine):
        step = {key.action: key for key in app.screen.query(FooterKey)}["app.step"]
        await pilot.press("c")
        while not app.view.steps:
            await pilot.pause(0.01)
        assert app.view.state == "running" and step._disabled
        app.action_pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not step._disabled


async def test_the_footer_recomposes_once_however_often_its_keys_change(monkeypatch):
    """When the shown actions do change, several changes before the next refresh make one recompose."""
    recomposes = []
    original = DebuggerFooter.recompose

    async def counted(self):
        recomposes.append(1)
        await original(self)

    monkeypatch.setattr(DebuggerFooter, "recompose", counted)
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        monkeypatch.setattr(DebuggerFooter, "_shown_enabled", staticmethod(lambda screen, keys: None))  # other actions shown
        for _ in range(4):
            footer.call_later(footer.bindings_changed, app.screen)  # as the signal calls it: in its context
        await pilot.pause()
        await pilot.pause()
        assert recomposes == [1] and len(footer.query(FooterKey)) > 10


async def test_footer_keys_start_with_the_footers_compact_state(monkeypatch):
    """Keys are built non-compact like the footer, so none restyles itself on mount (compact, then
    not); the command palette's key, which Textual leaves compact, keeps its default."""
    watched = []
    original = FooterKey._watch_compact

    def recorded(self, compact):
        watched.append((self.has_class("-command-palette"), compact))
        original(self, compact)

    monkeypatch.setattr(FooterKey, "_watch_compact", recorded)
    async with running(steps=2) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        palette = [key for key in footer.query(FooterKey) if key.has_class("-command-palette")]
        assert not footer.compact and len(palette) == 1 and palette[0].compact
        assert watched and all(not compact for is_palette, compact in watched if not is_palette)


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
