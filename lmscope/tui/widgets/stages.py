"""Stages: the selected step's top candidates after the raw logits and after each processor.

One column per stage, in transformers' order, ranks down the rows, each with a probability bar.
``▸`` marks the chosen token; below the ranks, ``✗`` rows list (struck through) the candidates
a stage removed from the previous stage's top. Each column's header gives ``kept`` and entropy.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lmscope.engine.records import Candidate, StepRecord
from lmscope.tui.render import base_style, bar_color, compact_count, percent, stage_label, text_strips, token_text, truncate
from lmscope.tui.view import View

_RANK_WIDTH = 3


@lru_cache(maxsize=256)
def _style(definition: str) -> Style:
    return Style.parse(definition) if definition else Style()


class Column:
    """One stage column: ``▸token   41%`` with the probability drawn as a bar behind the cell.

    Cells are built as Segments (not a Rich Text to render): the pane redraws on every
    left/right key, and this is the cheapest form Textual takes.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.inner = width - 1  # one cell of gap between columns
        self.token = max(1, self.inner - 6)

    def cell(self, candidate: Candidate | None, chosen_id: int, removed: bool = False) -> list[Segment]:
        """One candidate; struck and dim when the stage removed it, bold and ``▸`` when chosen."""
        if candidate is None:
            return [Segment(" " * self.width)]
        chosen = candidate.token_id == chosen_id
        mark = "✗" if removed else ("▸" if chosen else " ")
        token = truncate(token_text(candidate.token), self.token)
        pieces = [Segment(mark, _style("bold" if chosen else "dim")),
                  Segment(token, _style("dim strike" if removed else ("bold" if chosen else ""))),
                  Segment(" " * (self.inner - 5 - cell_len(token))),
                  Segment(percent(candidate.prob), _style("dim" if removed else ("bold" if chosen else "")))]
        if not removed:  # the bar: the first prob * width cells get a tinted background
            pieces = _under_bar(pieces, round(candidate.prob * self.inner), _style(f"on {bar_color(candidate.prob)}"))
        return [*pieces, Segment(" ")]


def _under_bar(pieces: list[Segment], cells: int, bar: Style) -> list[Segment]:
    """The pieces with ``bar`` applied under their first ``cells`` cells."""
    out: list[Segment] = []
    for piece in pieces:
        if cells <= 0:
            out.append(piece)
            continue
        left, right = piece.split_cells(min(cells, piece.cell_length))
        out.append(Segment(left.text, bar + left.style if left.style else bar))
        if right.text:
            out.append(right)
        cells -= left.cell_length
    return out


def removed_candidates(record: StepRecord, index: int) -> list[Candidate]:
    """Candidates of stage ``index - 1``'s top that stage ``index`` removed (with their old prob)."""
    if index == 0:
        return []
    before = {c.token_id: c for c in record.stages[index - 1].top}
    return [before[i] for i in record.stages[index].removed if i in before]


def stage_table(record: StepRecord, width: int, height: int) -> list[list[Segment]]:
    """The pane's lines: 2 header rows, rank rows, then ``✗`` rows, fitted to the size."""
    stages = record.stages
    column = Column(max(8, (width - _RANK_WIDTH) // len(stages)))
    removed = [removed_candidates(record, i) for i in range(len(stages))]
    removed_rows = min(max(map(len, removed)), max(0, height - 5))
    ranks = min(max(len(s.top) for s in stages), max(1, height - 2 - removed_rows))
    lines = [_header(stages, column, True), _header(stages, column, False)]
    for rank in range(ranks):
        line = [Segment(f"{rank + 1:>2} ", _style("dim"))]
        for stage in stages:
            line += column.cell(stage.top[rank] if rank < len(stage.top) else None, record.token_id)
        lines.append(line)
    for row in range(removed_rows):
        line = [Segment(" ✗ ", _style("dim"))]
        for gone in removed:
            line += column.cell(gone[row] if row < len(gone) else None, record.token_id, removed=True)
        lines.append(line)
    return lines


def _header(stages, column: Column, names: bool) -> list[Segment]:
    line = [Segment(" " * _RANK_WIDTH)]
    for stage in stages:
        if names:
            line.append(Segment(truncate(stage_label(stage.name), column.width - 1).ljust(column.width), _style("bold")))
        else:
            facts = f"k{compact_count(stage.kept)} H{abs(stage.entropy):.2f}"
            line.append(Segment(truncate(facts, column.width - 1).ljust(column.width), _style("dim")))
    return line


class StagesPane(Widget):
    """The processor pipeline of the selected step."""

    can_focus = True
    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""
    _shown: StepRecord | None = None
    _key: tuple | None = None
    _strips: list[Strip] = []

    def watch_current(self, view: View | None) -> None:
        """Redraw when another step is selected; the title names the chosen token."""
        record = view.selected if view is not None else None
        if record is self._shown and record is not None:
            return
        self._shown = record
        if record is not None:
            chosen = record.chosen
            prob = f" p={chosen.prob:.2f}" if chosen else " (not in top)"
            self.border_subtitle = f"▸ {token_text(record.token)}{prob} · {record.chosen_by} · H {abs(record.entropy):.2f} nats"
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
        return "no step yet: n steps one token, c continues to the end"

    def render_line(self, y: int) -> Strip:
        """Line API: row ``y`` of the table, built once per record and size."""
        width, height = self.content_size
        key = (self._shown, self.current is not None and bool(self.current.steps), width, height)
        if key != self._key:
            self._key, self._strips = key, self.lines(width, height)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, base_style(self))

    def lines(self, width: int, height: int) -> list[Strip]:
        """The stage table, or a hint when the prompt (no step) is selected, as full-width Strips."""
        view, base = self.current, base_style(self)
        record = view.selected if view is not None else None
        if record is None or not record.stages:
            return text_strips(self.app.console, Text(self.hint(view), style="dim"), width, base)
        return [Strip(line).apply_style(base).crop_extend(0, width, base) for line in stage_table(record, width, height)]
