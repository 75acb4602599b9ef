"""plotext's character matrix as Textual Strips: colours, cached styles, run-length segments."""

from __future__ import annotations

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip


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


def plotext_style(key: tuple) -> Style:
    """The Rich style of a plotext (foreground, background, style) cell, made once."""
    style = _STYLES.get(key)
    if style is None:
        fg, bg, extra = key
        bold = extra not in (None, "default") and "bold" in str(extra)
        style = _STYLES[key] = Style(color=_color(fg), bgcolor=_color(bg), bold=bold or None)
    return style


def to_strips(marker: list[list], fg: list[list], bg: list[list], style: list[list],
              skip: range = range(0)) -> list[Strip | None]:
    """The matrix as one Strip per row, top row first (plotext stores rows bottom up).

    Consecutive cells with the same colours become one Segment with a shared Style, and the
    widget hands the Strips to Textual as they are (its line API), without a Rich Text to convert.
    Rows in ``skip`` (matrix rows the caller draws itself) are left as None.
    """
    strips: list[Strip | None] = []
    for row in range(len(marker) - 1, -1, -1):
        if row in skip:
            strips.append(None)
            continue
        chars, fgs, bgs, extras = marker[row], fg[row], bg[row], style[row]
        segments, start, width = [], 0, len(chars)
        for col in range(1, width + 1):
            if col == width or bgs[col] != bgs[start] or fgs[col] != fgs[start] or extras[col] != extras[start]:
                cell_style = plotext_style((fgs[start], bgs[start], extras[start]))
                segments.append(Segment("".join(chars[start:col]), cell_style))
                start = col
        strips.append(Strip(segments, width))
    return strips
