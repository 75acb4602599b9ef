"""The footer: one widget that draws the screen's keys as Textual's Footer does, and redraws only
when what it shows changes (``tui/widgets/footer.py``)."""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import Footer

from lmscope.tui.widgets import footer as footer_module
from lmscope.tui.widgets.footer import KEYS_AFTER_S, DebuggerFooter
from tui_harness import running, settle


def cells(strip) -> list[tuple]:
    """Each cell of a drawn line: its character, colours, bold and dim."""
    def hex_of(color):
        return None if color is None else (color.triplet.hex if color.triplet else str(color))

    return [(char, hex_of(segment.style.color), hex_of(segment.style.bgcolor), bool(segment.style.bold),
             bool(segment.style.dim)) for segment in strip for char in segment.text]


async def bottom_line(app, pilot):
    await pilot.pause()
    return app.screen._compositor.render_strips()[-1]


async def both_footers(app, pilot) -> tuple[list[tuple], list[tuple]]:
    """The bottom line drawn by Textual's Footer, then by lmscope's, on the same screen and bindings."""
    ours = app.screen.query_one(DebuggerFooter)
    theirs = Footer()
    await app.screen.mount(theirs)
    ours.display = False
    await pilot.pause()
    app.refresh_bindings()  # Textual's Footer composes its keys at the first change of the bindings
    await pilot.pause(0.05)
    textual_line = cells(await bottom_line(app, pilot))
    ours.display, theirs.display = True, False
    lmscope_line = cells(await bottom_line(app, pilot))
    await theirs.remove()
    return textual_line, lmscope_line


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_footer_looks_as_textuals_footer(size):
    """Cell by cell, colours, bold and dim included: ready (pause greyed), and in a continue once
    its keys have greyed (pause enabled, step, continue, restart, rewind, force greyed); at 80
    columns the keys that do not fit are cut under the command palette's key, as Textual cuts them."""
    async with running(steps=3, size=size) as (app, pilot, engine):
        textual_line, lmscope_line = await both_footers(app, pilot)
        assert "".join(cell[0] for cell in lmscope_line).startswith(" n Step  c Continue  p Pause")
        text = "".join(cell[0] for cell in lmscope_line)
        step_key, pause_key = lmscope_line[text.index("n")], lmscope_line[text.index("p Pause")]
        assert pause_key[1] != step_key[1]  # pause is greyed (Textual draws dim as a blended colour)
        assert lmscope_line == textual_line
        app.view = app.view.with_state("running")
        app.busy = True
        await pilot.pause(KEYS_AFTER_S + 0.1)
        footer = app.screen.query_one(DebuggerFooter)
        assert footer.shown_enabled("app.pause") and not footer.shown_enabled("app.step")
        textual_line, lmscope_line = await both_footers(app, pilot)
        assert lmscope_line == textual_line


async def test_the_keys_are_in_the_first_frame_and_keep_their_place_when_focus_moves():
    """One widget, no children; the layers pane's focus puts its own bindings first in the
    screen's, and the keys stay where they were."""
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        assert not footer.children
        before = (await bottom_line(app, pilot)).text
        assert before.startswith(" n Step  c Continue") and "^p palette" in before
        app.screen.query_one("#tabs").active = "layers"
        app.screen.query_one("#layers-pane").focus()
        await pilot.pause()
        assert (await bottom_line(app, pilot)).text == before


async def test_a_step_does_not_redraw_the_footer(monkeypatch):
    """A step flips ``busy`` twice and each flip changes the bindings; what the footer shows does
    not change (no key greys within a step), so it is not redrawn. (The first step does redraw
    it: rewind becomes possible.)"""
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        await pilot.press("n")
        await settle(app, pilot)
        redraws = []
        draw = DebuggerFooter._draw
        monkeypatch.setattr(DebuggerFooter, "_draw", lambda self, width: (redraws.append(width), draw(self, width))[1])
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.pause(KEYS_AFTER_S + 0.1)
        assert len(app.view.steps) == 2 and redraws == []
        assert footer.shown_enabled("app.step") and not footer.shown_enabled("app.pause")


async def test_a_call_shorter_than_the_delay_changes_no_key(monkeypatch):
    """Neither the keys a call disables (step) nor those it enables (pause, for a continue) change
    on the footer while it is shorter than the delay; both work as they are meanwhile. The key's
    frame is then the status bar's alone."""
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        shown, redraws = [], []
        update, draw = DebuggerFooter._update, DebuggerFooter._draw

        def recorded(self, screen, now):
            update(self, screen, now)
            shown.append((self.shown_enabled("app.step"), self.shown_enabled("app.pause")))

        monkeypatch.setattr(DebuggerFooter, "_update", recorded)
        monkeypatch.setattr(DebuggerFooter, "_draw", lambda self, width: (redraws.append(width), draw(self, width))[1])
        app.view = app.view.with_state("running")
        app.busy = True
        await pilot.pause()
        assert footer.shown_enabled("app.step") and not footer.shown_enabled("app.pause")
        assert app.check_action("step", ()) is None and app.check_action("pause", ()) is True  # at once
        app.busy = False
        app.view = app.view.with_state("ready")
        app.refresh_bindings()
        await pilot.pause(KEYS_AFTER_S + 0.1)
        assert shown and all(step and not pause for step, pause in shown)  # neither key ever changed
        assert redraws == []


async def test_a_longer_call_changes_the_keys_after_the_delay():
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        app.view = app.view.with_state("running")
        app.busy = True
        await pilot.pause(KEYS_AFTER_S + 0.1)
        assert footer.shown_enabled("app.pause") and not footer.shown_enabled("app.step")
        app.busy = False
        app.view = app.view.with_state("ready")
        app.refresh_bindings()
        await pilot.pause()
        assert footer.shown_enabled("app.step") and not footer.shown_enabled("app.pause")  # at the end: at once


async def test_a_continue_changes_its_keys_in_its_first_paced_frame(monkeypatch):
    """A continue's keys change with the panes' first update, not in a frame of their own later."""
    monkeypatch.setattr(footer_module, "KEYS_AFTER_S", 60.0)  # the timer cannot be what changes them
    # 4 s of steps: the first paced frame waits by the last frame's cost, up to a second
    async with running(steps=400, delay_s=0.01) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        await pilot.press("c")
        while not app.view.steps:
            await pilot.pause(0.01)
        assert app.view.state == "running" and footer.shown_enabled("app.step") is False
        assert footer.shown_enabled("app.pause")
        app.action_pause()
        await settle(app, pilot)
        assert footer.shown_enabled("app.step")


def key_x(line: str, label: str) -> int:
    return line.index(label)


async def test_clicking_a_key_presses_it_and_a_greyed_key_rings_the_bell(monkeypatch):
    async with running(steps=3) as (app, pilot, engine):
        bells = []
        monkeypatch.setattr(type(app), "bell", lambda self: bells.append(1))
        line = (await bottom_line(app, pilot)).text
        await pilot.click(DebuggerFooter, offset=(key_x(line, "Pause"), 0))  # greyed: nothing runs
        await settle(app, pilot)
        assert bells == [1] and app.view.steps == ()
        await pilot.click(DebuggerFooter, offset=(key_x(line, "n Step"), 0))
        await settle(app, pilot)
        assert len(app.view.steps) == 1


async def test_a_click_acts_on_what_can_run_now_while_the_footer_waits_to_change(monkeypatch):
    """In a call's first moments the footer still shows pause greyed and step enabled; a click on
    pause pauses, one on step rings the bell."""
    monkeypatch.setattr(footer_module, "KEYS_AFTER_S", 60.0)
    async with running(steps=3) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        bells = []
        monkeypatch.setattr(type(app), "bell", lambda self: bells.append(1))
        line = (await bottom_line(app, pilot)).text
        app.view = app.view.with_state("running")
        app.busy = True
        await pilot.pause()
        assert not footer.shown_enabled("app.pause") and footer.shown_enabled("app.step")
        await pilot.click(DebuggerFooter, offset=(key_x(line, "n Step"), 0))
        assert bells == [1] and app.view.steps == ()
        await pilot.click(DebuggerFooter, offset=(key_x(line, "Pause"), 0))
        await pilot.pause()
        assert bells == [1] and app.pause_requested.is_set()


async def test_keys_that_do_not_fit_scroll_with_the_wheel():
    async with running(steps=3, size=(80, 24)) as (app, pilot, engine):
        footer = app.screen.query_one(DebuggerFooter)
        before = (await bottom_line(app, pilot)).text
        assert "History" not in before and before.rstrip().endswith("^p palette")
        for _ in range(10):
            footer.post_message(events.MouseScrollDown(footer, 10, 0, 0, 1, 0, False, False, False))
        after = (await bottom_line(app, pilot)).text
        assert "History" in after and "Mean" in after and after.rstrip().endswith("^p palette")
