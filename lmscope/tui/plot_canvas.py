"""Draw a heatmap Grid with plotext: plotext lays out the frame, the cells are painted into it.

plotext draws the box, the token tick labels and the title. The cells are then written straight
into the figure's character matrix, on the fixed colour scale, and the matrix becomes a Rich
Text without an ANSI round trip. Profiling showed why: for a 118x17 plot, ``matrix_plot``
(one plotext point per cell) took ~19 ms and ``Text.from_ansi`` of the built string ~40 ms, while
the frame alone takes ~4 ms and the conversion below ~2 ms. This reads plotext internals
(``monitor.matrix``); ``Plot``'s own ``render`` in textual-plotext already relies on them too.
"""

from __future__ import annotations

from rich.color import Color
from rich.style import Style
from rich.text import Text

from lmscope.tui.heatmap import PALETTE, Grid
from lmscope.tui.render import token_text, truncate

LABEL_WIDTH = 8
"""Cells of the y tick labels (query tokens); fixed so the canvas width is predictable."""


def guess_canvas(width: int, height: int) -> tuple[int, int]:
    """Canvas rows and columns plotext leaves inside a ``width`` x ``height`` frame (corrected later)."""
    return max(height - 3, 1), max(width - LABEL_WIDTH - 2, 1)


def x_ticks(keys: tuple[str, ...], span: int, cols: int) -> tuple[list[int], list[str]]:
    """Columns and truncated token labels of a few key positions, about 9 cells apart."""
    count = max(1, min(span, cols // 9))
    positions = sorted({round(i * (span - 1) / max(count - 1, 1)) for i in range(count)})
    columns = [min(cols - 1, ((2 * k + 1) * cols) // (2 * span)) for k in positions]
    labels = [truncate(token_text(keys[k]).strip() or "·", 7) if k < len(keys) else str(k) for k in positions]
    return columns, labels


def y_labels(grid: Grid) -> tuple[list[int], list[str]]:
    """Tick positions (bottom up) and right-aligned query-token labels; ``▸`` marks the selection."""
    rows = len(grid.levels)
    ticks, labels = [], []
    for r, label in enumerate(grid.labels):
        if label or r == grid.selected:
            mark = "▸" if r == grid.selected else ""
            ticks.append(rows - 1 - r)
            labels.append((mark + truncate(token_text(label).strip() or "·", LABEL_WIDTH - 1 - len(mark))).rjust(LABEL_WIDTH))
    return (ticks, labels) if ticks else ([0], [" " * LABEL_WIDTH])


def draw_frame(plt, size: tuple[int, int], grid: Grid, keys: tuple[str, ...], theme: str):
    """Lay out the figure for ``grid`` and build its character matrix; returns plotext's matrix."""
    width, height = size
    rows, cols = len(grid.levels), len(grid.levels[0]) if grid.levels[0] is not None else 1
    plt.clear_figure()
    plt.theme(theme)
    plt.plotsize(width, height)
    plt._set_size(width, height)
    plt.scatter([0, cols - 1], [0, rows - 1], marker=" ")  # plotext shows ticks only with data
    plt.xlim(-0.5, cols - 0.5)
    plt.ylim(-0.5, rows - 0.5)
    plt.xticks(*x_ticks(keys, grid.keys, cols))
    plt.yticks(*y_labels(grid))
    plt._set_sizes()
    plt._build_matrix()
    return plt.monitor.matrix


def canvas_shape(matrix) -> tuple[int, int]:
    """Rows and columns of the plot area plotext reserved."""
    return len(matrix.Rows_canvas), len(matrix.Cols_canvas)


def paint(matrix, grid: Grid) -> None:
    """Write the grid's cells into the canvas area: a space on the level's colour, top row first."""
    top, left = matrix.Rows_canvas.stop - 1, matrix.Cols_canvas.start
    for r, levels in enumerate(grid.levels):
        if levels is None:
            continue
        background = matrix.background[top - r]
        for c, level in enumerate(levels.tolist()):
            if level >= 0:
                background[left + c] = PALETTE[level]


def paint_title(matrix, title: str) -> None:
    """Write the title into the frame's top border, and the colour scale ``0 ▇▇▇ 1 √p`` at its
    right when there is room; saves the two rows plotext's title and axis label would take."""
    row, left = matrix.Rows_canvas.stop, matrix.Cols_canvas.start + 1
    markers, width = matrix.marker[row], matrix.cols
    cells, legend = 8, " 0" + " " * 8 + "1 √p "
    room = width - left - 1
    title = truncate(f" {title} ", room)
    for i, char in enumerate(title):
        markers[left + i] = char
    start = width - 1 - len(legend)
    if start < left + len(title) + 1:
        return
    for i, char in enumerate(legend):
        markers[start + i] = char
    for i in range(cells):
        matrix.background[row][start + 3 + i - 1] = PALETTE[round(i * (len(PALETTE) - 1) / (cells - 1))]


def _color(value) -> Color | None:
    """A plotext colour (RGB tuple, 256-colour int, name or "default") as a Rich colour."""
    if isinstance(value, tuple):
        return Color.from_rgb(*value)
    if isinstance(value, int):
        return Color.from_ansi(value)
    if value in (None, "default"):
        return None
    from plotext._utility import get_color_code  # names only appear with plotext's own themes

    try:
        return Color.from_ansi(int(get_color_code(value)))
    except (TypeError, ValueError):
        return None


_STYLES: dict[tuple, Style] = {}
"""Styles by plotext (foreground, background, style); a theme has a few dozen, so it stays small."""


def _style(key: tuple) -> Style:
    cache = _STYLES
    style = cache.get(key)
    if style is None:
        fg, bg, extra = key
        bold = extra not in (None, "default") and "bold" in str(extra)
        style = cache[key] = Style(color=_color(fg), bgcolor=_color(bg), bold=bold or None)
    return style


def to_text(matrix) -> Text:
    """The character matrix as Rich Text, one line per row (plotext stores rows bottom up).

    Consecutive cells with the same colours become one span, so a frame of a few thousand cells
    is a few hundred spans.
    """
    text = Text(no_wrap=True, overflow="crop", end="")
    for row in range(matrix.rows - 1, -1, -1):
        markers, fgs, bgs, extras = matrix.marker[row], matrix.fullground[row], matrix.background[row], matrix.style[row]
        start = 0
        for col in range(1, matrix.cols + 1):
            if col == matrix.cols or (fgs[col], bgs[col], extras[col]) != (fgs[start], bgs[start], extras[start]):
                text.append("".join(markers[start:col]), _style((fgs[start], bgs[start], extras[start])))
                start = col
        if row:
            text.append("\n")
    return text
