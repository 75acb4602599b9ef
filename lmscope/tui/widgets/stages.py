"""Stages: the selected step's top candidates after the raw logits and after each processor.

One column per stage, in transformers' order, ranks down the rows, each with a probability bar.
``▸`` marks the chosen token; below the ranks, ``✗`` rows list (struck through) the candidates
a stage removed from the previous stage's top. Each column's header gives ``kept`` and entropy.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lmscope.engine.records import StepRecord
from lmscope.tui.draw.render import base_style, printable, text_strips, token_text
from lmscope.tui.draw.stage_table import stage_table
from lmscope.tui.view import View


class StagesPane(Widget):
    """The processor pipeline of the selected step."""

    can_focus = True
    BINDINGS = [
        Binding("down", "app.cursor(1)", "Next candidate", show=False),
        Binding("up", "app.cursor(-1)", "Previous candidate", show=False),
        Binding("enter", "app.force_cursor", "Force this", show=False),
    ]
    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""
    _shown: StepRecord | None = None
    _cursor: tuple[int, int] | None = None
    _hint: str | None = None
    _key: tuple | None = None
    _strips: list[Strip] = []

    def watch_current(self, view: View | None) -> None:
        """Redraw when another step is selected, or the hint shown without one changes (not on
        each change of state: a continue's start would redraw the pane while its first step
        waits); the title names the chosen token."""
        record = view.selected if view is not None else None
        cursor = view.cursor if view is not None else None
        hint = self.hint(view) if record is None else None
        if record is self._shown and cursor == self._cursor and hint == self._hint:
            return
        self._shown, self._cursor, self._hint = record, cursor, hint
        if record is not None:
            # the exact probability (as --json and `p`), outside the last stage's top too
            final_prob = record.final_prob
            prob = f" p={final_prob:.2f}" if final_prob is not None else ""
            prob += "" if record.chosen else " (not in top)"
            entropy = f"H {abs(record.entropy):.2f} nats"
            # a Text: a str border title is parsed as markup, where a token like [/INST] breaks it
            self.border_subtitle = Text(f"▸ {token_text(record.token)}{prob} · {printable(record.chosen_by)} · {entropy}")
        else:
            self.border_subtitle = ""
        self.refresh()

    @staticmethod
    def hint(view: View | None) -> str:
        """What to do when no step is selected."""
        if view is None or view.prompt is None:
            return "waiting for the model…"
        if view.steps:
            return "the prompt (prefill) is selected: → shows step 1's processors"
        if view.state == "loading":
            return "encoding the prompt…"
        return "no step yet: n steps one token, c continues to the end"

    def render_line(self, y: int) -> Strip:
        """Line API: row ``y`` of the table, built once per record and size."""
        width, height = self.content_size
        # the hint is part of the key: it changes when the prompt arrives, with no record selected
        key = (self._shown, self._cursor, self.hint(self.current), width, height)
        if key != self._key:
            self._key, self._strips = key, self.lines(width, height)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, base_style(self))

    def lines(self, width: int, height: int) -> list[Strip]:
        """The stage table, or a hint when the prompt (no step) is selected, as full-width Strips."""
        view, base = self.current, base_style(self)
        record = view.selected if view is not None else None
        if record is None or not record.stages:
            return text_strips(self.app.console, Text(self.hint(view), style="dim"), width, base)
        lines = stage_table(record, width, height, view.cursor)
        return [Strip(line).apply_style(base).crop_extend(0, width, base) for line in lines]
