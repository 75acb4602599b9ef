"""Actions that only read records: history, layer and head, tabs, zoom, help.

None of these calls the engine, so they run on the UI thread at once, also while a step runs.
Each builds a new View from the one the app holds.
"""

from __future__ import annotations

from textual.widgets import TabbedContent

from lmscope.tui.help import HelpScreen


class BrowseActions:
    """Mixin for the app: ``self.view`` is the app's View reactive."""

    def action_move(self, delta: int) -> None:
        """Select the step ``delta`` away (left/right)."""
        self.view = self.view.moved(delta)

    def action_select(self, index: int) -> None:
        """Select step ``index`` (-1: the prompt)."""
        self.view = self.view.selecting(index)

    def action_select_last(self) -> None:
        """Select the newest step, so new steps are followed again."""
        self.view = self.view.selecting(len(self.view.steps) - 1)

    def action_layer(self, delta: int) -> None:
        """Change the attention layer (``[`` ``]``)."""
        self.view = self.view.with_layer(delta)

    def action_head(self, delta: int) -> None:
        """Change the attention head (``{`` ``}``)."""
        self.view = self.view.with_head(delta)

    def action_head_mean(self) -> None:
        """Toggle the mean over heads (``h``)."""
        self.view = self.view.with_mean()

    def action_toggle_ids(self) -> None:
        """Show or hide token ids (``i``)."""
        self.view = self.view.with_ids()

    def action_show_tab(self, tab: str) -> None:
        """Bring a tab of the lower area to the front (``1``-``4``)."""
        tabs = self.get_screen_stack_root().query_one("#tabs", TabbedContent)
        if tab == "cross" and self.view.info is None:
            self.notify("the model is still loading: cross-attention is shown for T5 models")
            return
        if tab == "cross" and self.view.info.family != "t5":
            self.notify("cross-attention exists only in encoder-decoder models (T5)")
            return
        tabs.active = tab

    def action_step_into(self) -> None:
        """Open the Layers tab on the selected step and focus its table (``s``, F11)."""
        screen = self.get_screen_stack_root()
        screen.query_one("#tabs", TabbedContent).active = "layers"
        screen.query_one("#layers-pane DataTable").focus()
        if self.view.selected is None:
            self.notify("the prompt is selected: step into a generated step (← →)")

    def action_zoom(self) -> None:
        """Maximize the focused pane, or restore the layout (``z``)."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused)

    def action_write_session(self) -> None:
        """Write the session so far to a trace file (``w``): ``lmscope open FILE`` reopens it."""
        if self.record_path:
            self.notify(f"the session is being recorded to {str(self.record_path)!r} as it runs", markup=False)
            return
        if self.view.prompt is None or self.view.info is None:
            self.notify("nothing to write yet: the model is still loading")
            return
        import datetime
        import re

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.view.info.model.split("/")[-1].split(" ")[0])
        from lmscope.tui.widgets.layers import LayersPane

        # each breakpoint hit goes with its step, as --record keeps them, and so does each lens:
        # live, those the Layers pane shows or keeps; in a replay, every lens the recording kept
        # for the steps (the worker reads them from the file, not only those the pane loaded)
        replay = None if self.live_engine else self.engine
        lenses = {} if replay is not None else \
            self.get_screen_stack_root().query_one(LayersPane).lenses_of(self.view.prompt, self.view.steps)
        self.write_session(self._unused_session_name(f"{name}-{stamp}"), self.view.info, self.view.prompt,
                           self.view.steps, lenses, self.hits_of(self.view.steps), replay)

    def _unused_session_name(self, base: str) -> str:
        """``BASE.lmscope``, or ``BASE-2.lmscope`` ... where that is taken: the time in the name is
        to the second, and a second ``w`` in it (after a rewind, say) wrote over the first file.
        Names this app chose count as taken before their worker has made the file."""
        import os

        chosen = self._session_names
        for number in range(1, 10_000):
            path = f"{base}.lmscope" if number == 1 else f"{base}-{number}.lmscope"
            if path not in chosen and not os.path.lexists(path):
                chosen.add(path)
                return path
        return path

    def on_session_written(self, message) -> None:
        path = repr(str(message.path))  # as the command line quotes paths
        self.notify(f"wrote {message.steps} steps to {path} (lmscope open {path})", markup=False)
        if message.lenses_left_out:  # a replay's recorded lens that did not read: the rest were written
            self.notify("\n".join(message.lenses_left_out), title=f"left out of {path}",
                        severity="warning", timeout=10, markup=False)

    def on_session_not_written(self, message) -> None:
        """A failed ``w`` is one line; a continue it came during runs on (nothing in the engine failed)."""
        self.notify(f"{type(message.error).__name__}: {message.error}", title=f"could not write {str(message.path)!r}",
                    severity="error", timeout=10, markup=False)

    def action_screenshot(self) -> None:
        """Save an SVG of the screen (``ctrl+s``), Textual's own screenshot."""
        path = self.save_screenshot()
        self.notify(f"screenshot saved to {str(path)!r}", markup=False)

    def action_help(self) -> None:
        """Open the key list (``?``)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
