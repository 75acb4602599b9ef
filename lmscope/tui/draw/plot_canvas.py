"""Draw a heatmap Grid in a plotext frame: plotext lays out the box once per size, lmscope paints.

plotext draws the box and reserves the tick-label areas with the theme's colours; that frame
depends only on the size and the theme, so it is built once and copied. The cells (on the fixed
colour scale), the tick marks, the token labels, the title and the colour legend are then
written into the copy of plotext's character matrix, which becomes Textual Strips directly.

Why not ``matrix_plot`` and ``Text.from_ansi``: measured at 118x17, ``matrix_plot`` (one plotext
point per cell) took ~19 ms and parsing the built ANSI string ~40 ms per picture, while copying
a cached frame, painting and building Strips takes a few ms. This reads plotext internals
(``monitor.matrix``), as textual-plotext's own ``PlotextPlot.render`` does (``_set_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from lmscope.tui.draw.heatmap import PALETTE, Grid
from lmscope.tui.draw.plotext_strips import plotext_style, to_strips
from lmscope.tui.draw.render import token_text, truncate

LABEL_WIDTH = 8
"""Cells of the y tick labels (query tokens)."""
TICK_SPACING = 9
"""Cells between x tick marks."""


@dataclass(frozen=True)
class Frame:
    """A snapshot of plotext's matrix for an empty plot of one size and theme.

    Attributes:
        layers: ``(marker, fullground, background, style)`` rows, bottom row first (plotext's order).
        top: matrix row of the canvas's top row; canvas rows go down from there.
        left: matrix column of the canvas's first column.
        rows: canvas rows.
        cols: canvas columns.
    """

    layers: tuple[list[list], list[list], list[list], list[list]]
    top: int
    left: int
    rows: int
    cols: int


def build_frame(plt, width: int, height: int, theme: str) -> Frame:
    """Let plotext lay out the box, one blank y label of LABEL_WIDTH and one x tick label row."""
    plt.clear_figure()
    plt.theme(theme)
    plt.plotsize(width, height)
    plt._set_size(width, height)
    plt.scatter([0, 1], [0, 1], marker=" ")  # plotext shows ticks only with data
    plt.xticks([0], [" "])
    plt.yticks([0], [" " * LABEL_WIDTH])
    plt._set_sizes()
    plt._build_matrix()
    m = plt.monitor.matrix
    layers = tuple([row.copy() for row in rows] for rows in (m.marker, m.fullground, m.background, m.style))
    return Frame(layers, m.Rows_canvas.stop - 1, m.Cols_canvas.start, len(m.Rows_canvas), len(m.Cols_canvas))


def x_ticks(keys: tuple[str, ...], span: int, cols: int) -> list[tuple[int, str]]:
    """Tick columns and the token shown there: one key per tick, ticks TICK_SPACING apart.

    With fewer keys than ticks, each key gets a tick at the middle of its cells.
    """
    if span <= cols // TICK_SPACING:
        columns = [((2 * k + 1) * cols) // (2 * span) for k in range(span)]
    else:
        columns = list(range(TICK_SPACING // 2, cols, TICK_SPACING))
    ticks = []
    for column in columns:
        key = min(span - 1, (column * span) // cols)
        label = token_text(keys[key]).strip() or "·" if key < len(keys) else str(key)
        ticks.append((column, truncate(label, TICK_SPACING - 2)))
    return ticks


def draw(frame: Frame, grid: Grid, keys: tuple[str, ...], title: str, cells: dict) -> list[Strip]:
    """The picture for ``grid`` in ``frame``, as one Strip per row.

    Rows outside the canvas (title, axis, tick labels) are painted into a copy of the frame;
    canvas rows are the label, the axis and the cells' Segments, which ``cells`` keeps per
    pooled row so that scrolling through history reuses the rows still in view.
    """
    canvas_rows = range(frame.top - frame.rows + 1, frame.top + 1)
    marker, fg, bg, style = ([row if i in canvas_rows else row.copy() for i, row in enumerate(rows)]
                             for rows in frame.layers)  # only the rows painted below are copied
    _paint_x_axis(marker, frame, x_ticks(keys, grid.keys, frame.cols))
    _paint_title(marker, bg, frame, title)
    strips = to_strips(marker, fg, bg, style, skip=canvas_rows)
    canvas = _frame_style(frame, frame.top, frame.left)
    label_style, axis_style = _frame_style(frame, frame.top, 0), _frame_style(frame, frame.top, frame.left - 1)
    right = _row_segments(frame, frame.top, frame.left + frame.cols)
    if len(cells) > 4096:
        cells.clear()
    for r, (levels, label) in enumerate(zip(grid.levels, grid.labels)):
        mark = "▸" if r == grid.selected else ""
        shown = truncate(token_text(label).strip() or "·", LABEL_WIDTH - 1 - len(mark))
        text = mark + shown if label or mark else ""
        head = [Segment(text.rjust(frame.left - 1), label_style), Segment("┤" if text else "│", axis_style)]
        row = [*head, *_cell_segments(levels, frame.cols, canvas, cells), *right]
        strips[len(marker) - 1 - (frame.top - r)] = Strip(row)
    return strips


def _cell_segments(levels, cols: int, canvas: Style, cache: dict) -> list[Segment]:
    """One canvas row: runs of equal colour level as coloured spaces (-1: the empty canvas)."""
    if levels is None:
        return [Segment(" " * cols, canvas)]
    hit = cache.get(id(levels))
    if hit is not None and hit[0] is levels:
        return hit[1]
    segments, start, values = [], 0, levels.tolist()
    for col in range(1, len(values) + 1):
        if col == len(values) or values[col] != values[start]:
            level = values[start]
            style = canvas if level < 0 else plotext_style((None, PALETTE[level], None))
            segments.append(Segment(" " * (col - start), style))
            start = col
    cache[id(levels)] = (levels, segments)
    return segments


def _frame_style(frame: Frame, row: int, col: int) -> Style:
    _marker, fg, bg, style = frame.layers
    return plotext_style((fg[row][col], bg[row][col], style[row][col]))


def _row_segments(frame: Frame, row: int, start: int) -> list[Segment]:
    """The frame's cells of ``row`` from column ``start`` to the end (the right border)."""
    marker = frame.layers[0][row]
    return [Segment(marker[col], _frame_style(frame, row, col)) for col in range(start, len(marker))]


def _paint_x_axis(marker: list[list], frame: Frame, ticks: list[tuple[int, str]]) -> None:
    """Tick marks on the bottom border and token labels centred below, never touching."""
    border, labels = frame.top - frame.rows, frame.top - frame.rows - 1
    if labels < 0:
        return
    for c in range(frame.cols):
        marker[border][frame.left + c] = "─"
    free = 0
    for column, label in ticks:
        marker[border][frame.left + column] = "┬"
        start = min(max(frame.left + column - (len(label) - 1) // 2, free), len(marker[labels]) - len(label))
        if start >= free:
            marker[labels][start : start + len(label)] = list(label)
            free = start + len(label) + 1


def _paint_title(marker: list[list], bg: list[list], frame: Frame, title: str) -> None:
    """The title in the top border, and the colour scale ``0 ▇▇▇ 1 √p`` at its right if room."""
    row, left, width = frame.top + 1, frame.left + 1, len(marker[frame.top + 1])
    title = truncate(f" {title} ", width - left - 1)
    marker[row][left : left + len(title)] = list(title)
    cells, legend = 8, " 0 " + " " * 8 + " 1 √p "
    start = width - 1 - len(legend)
    if start < left + len(title) + 1:
        return
    marker[row][start : start + len(legend)] = list(legend)
    for i in range(cells):
        bg[row][start + 3 + i] = PALETTE[round(i * (len(PALETTE) - 1) / (cells - 1))]
