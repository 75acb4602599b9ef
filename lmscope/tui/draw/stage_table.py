"""The Stages pane's table as lines of Segments: one column per stage, ranks down the rows.

Cells are built as Segments (not a Rich Text to render): the pane redraws on every left/right
key, and this is the cheapest form Textual takes.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style

from lmscope.engine.records import Candidate, StepRecord
from lmscope.tui.draw.render import bar_color, compact_count, percent, stage_label, token_text, truncate

_RANK_WIDTH = 3


@lru_cache(maxsize=256)
def _style(definition: str) -> Style:
    return Style.parse(definition) if definition else Style()


class Column:
    """One stage column: ``▸token   41%`` with the probability drawn as a bar behind the cell."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.inner = width - 1  # one cell of gap between columns
        self.token = max(1, self.inner - 6)

    def cell(self, candidate: Candidate | None, chosen_id: int, removed: bool = False,
             cursor: bool = False) -> list[Segment]:
        """One candidate; struck and dim when the stage removed it, bold and ``▸`` when chosen,
        reversed under the cursor (``enter`` forces it)."""
        if candidate is None:
            return [Segment(" " * self.width)]
        chosen = candidate.token_id == chosen_id
        mark = "✗" if removed else ("▸" if chosen else " ")
        token = truncate(token_text(candidate.token), self.token)
        pieces = [Segment(mark, _style("bold" if chosen else "dim")),
                  Segment(token, _style("dim strike" if removed else ("bold" if chosen else ""))),
                  Segment(" " * (self.inner - 5 - cell_len(token))),
                  Segment(percent(candidate.prob), _style("dim" if removed else ("bold" if chosen else "")))]
        if cursor:
            pieces = [Segment(piece.text, (piece.style or Style()) + _style("reverse")) for piece in pieces]
        elif not removed:  # the bar: the first prob * width cells get a tinted background
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


def stage_table(record: StepRecord, width: int, height: int,
                cursor: tuple[int, int] | None = None) -> list[list[Segment]]:
    """The pane's lines: 2 header rows, rank rows, then ``✗`` rows, fitted to the size.

    Args:
        record: the step.
        width, height: the pane's content size.
        cursor: ``(stage, rank)`` of the candidate under the cursor, if any.
    """
    stages = record.stages
    column = Column(max(8, (width - _RANK_WIDTH) // len(stages)))
    removed = [removed_candidates(record, i) for i in range(len(stages))]
    removed_rows = min(max(map(len, removed)), max(0, (height - 2) // 3))  # ranks keep most rows
    ranks = min(max(len(s.top) for s in stages), max(1, height - 2 - removed_rows))
    lines = [_header(stages, column, True), _header(stages, column, False)]
    for rank in range(ranks):
        line = [Segment(f"{rank + 1:>2} ", _style("dim"))]
        for index, stage in enumerate(stages):
            line += column.cell(stage.top[rank] if rank < len(stage.top) else None, record.token_id,
                                cursor=cursor == (index, rank))
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
            name = truncate(stage_label(stage.name), column.width - 1)
            line.append(Segment(name.ljust(column.width), _style("bold")))
        else:
            facts = f"k{compact_count(stage.kept)} H{abs(stage.entropy):.2f}"
            line.append(Segment(truncate(facts, column.width - 1).ljust(column.width), _style("dim")))
    return line
