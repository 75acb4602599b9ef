"""Attention heatmap: queries (prompt rows, then one row per step) by key positions.

``[`` ``]`` change the layer, ``{`` ``}`` the head and ``h`` toggles the head mean; the app puts
those in the View, so this pane only reads ``current``.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from lmscope.tui.heatmap import Matrix, fit, self_attention
from lmscope.tui.plot_canvas import canvas_shape, draw_frame, guess_canvas, paint, paint_title, to_text
from lmscope.tui.view import View


class HeatmapPlot(PlotextPlot):
    """A PlotextPlot that draws one attention Matrix of the View on the fixed colour scale.

    Rendering is cached by (what is shown, size, theme): the View changes on every key, but a
    pane only rebuilds its picture when its own rows, layer or head changed, and a hidden pane
    (an inactive tab) does not render at all.
    """

    can_focus = True
    current: reactive[View | None] = reactive(None, layout=False)
    """The View to show; set by the app."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self._picture: tuple[tuple, Text] | None = None
        self._geometry: dict[tuple[int, int], tuple[int, int]] = {}
        self._rows: dict = {}

    def matrix(self, view: View) -> Matrix | None:
        """The rows this pane shows (subclasses pick self- or cross-attention)."""
        raise NotImplementedError

    @property
    def layer(self) -> int:
        """The layer shown."""
        return self.current.layer if self.current else 0

    @property
    def head(self) -> int | None:
        """The head shown, None for the mean over heads."""
        return self.current.head if self.current else 0

    def watch_current(self, view: View | None) -> None:
        """Refresh only when what this pane shows changed (not on a state change or a new step
        appended while an older one is selected)."""
        shown = None if view is None else (id(view.prompt), view.index, view.layer, view.head)
        if shown != self._shown:
            self._shown = shown
            self.refresh()

    def title(self, matrix: Matrix, keys: int, cols: int) -> str:
        """``self-attention · layer 3/30 · head 2/9 · max of 5 keys/cell`` (or ``mean of 9 heads``)."""
        view = self.current
        head = f"mean of {view.heads} heads" if view.head is None else f"head {view.head + 1}/{view.heads}"
        pooled = f" · max of {-(-keys // cols)} keys/cell" if keys > cols else ""
        return f"{matrix.title} · layer {view.layer + 1}/{view.layers} · {head}{pooled}"

    def render(self) -> Text:
        """The heatmap for the current View at the widget's size, from cache when nothing changed."""
        width, height = self.size
        key = (self._shown, width, height, self.app.theme)
        if self._picture is not None and self._picture[0] == key:
            return self._picture[1]
        picture = self._draw(width, height)
        self._picture = (key, picture)
        return picture

    def _draw(self, width: int, height: int) -> Text:
        view = self.current
        matrix = self.matrix(view) if view is not None else None
        if matrix is None or not matrix.rows:
            return Text(self.empty_text(view), style="dim")
        if width < 24 or height < 5:
            return Text("too small: press z to zoom", style="dim")
        theme = self._get_plotext_theme_name(self.app.theme)
        for _ in range(2):  # a second pass when plotext's canvas differs from the guess
            rows, cols = self._geometry.get((width, height)) or guess_canvas(width, height)
            grid = fit(matrix, view.layer, view.head, rows, cols, self._rows)
            figure = draw_frame(self.plt, (width, height), grid, matrix.keys, theme)
            if canvas_shape(figure) == (rows, cols):
                break
            self._geometry[(width, height)] = canvas_shape(figure)
        paint(figure, grid)
        paint_title(figure, self.title(matrix, grid.keys, cols))
        return to_text(figure)

    def empty_text(self, view: View | None) -> str:
        """What to show before there are rows."""
        return "waiting for the model…" if view is None or view.prompt is None else "no attention recorded"


class AttentionPlot(HeatmapPlot):
    """Self-attention: the prompt's rows and one row per generated step (T5: encoder or decoder)."""

    def matrix(self, view: View) -> Matrix | None:
        """Self-attention rows up to the selected step."""
        return self_attention(view)
