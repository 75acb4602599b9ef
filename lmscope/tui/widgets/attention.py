"""Attention heatmap: queries (prompt rows, then one row per step) by key positions.

``[`` ``]`` change the layer, ``{`` ``}`` the head and ``h`` toggles the head mean; the app puts
those in the View, so this pane only reads ``current``.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from lmscope.engine.errors import UserError, first_line
from lmscope.tui.identity import Same
from lmscope.tui.messages import EngineFailed
from lmscope.tui.draw.attention_rows import Matrix, self_attention
from lmscope.tui.draw.heatmap import fit
from lmscope.tui.draw.plot_canvas import Frame, build_frame, draw
from lmscope.tui.draw.render import base_style
from lmscope.tui.view import View


class HeatmapPlot(PlotextPlot):
    """A PlotextPlot that draws one attention Matrix of the View on the fixed colour scale.

    Rendering is cached by (what is shown, size, theme): the View changes on every key, but a
    pane only rebuilds its picture when its own rows, layer or head changed, and a hidden pane
    (an inactive tab) neither renders nor asks for a repaint.
    """

    can_focus = True
    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self._picture: tuple[tuple, list[Strip]] | None = None
        self._frame: tuple[tuple, Frame] | None = None
        self._rows: dict = {}
        self._cells: dict = {}
        self._told = False

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
        appended while an older one is selected). The selected record, not its index, says which
        rows: another branch shown at the same index has its own (the steps before a record are
        the same on every branch that has it)."""
        shown = None if view is None else (Same(view.prompt), Same(view.selected), view.layer, view.head)
        if shown != self._shown:
            self._shown = shown
            # A hidden pane (an inactive tab) is not marked dirty: a dirty widget off the screen
            # makes Textual's compositor rebuild the map of every widget in the next frame.
            # It repaints when shown (on_show).
            if self.is_on_screen:
                self.refresh()

    def on_show(self) -> None:
        self.refresh()

    def title(self, matrix: Matrix, keys: int, cols: int) -> str:
        """``self-attention · layer 3/30 · head 2/9 · max of 5 keys/cell`` (or ``mean of 9 heads``)."""
        view = self.current
        head = f"mean of {view.heads} heads" if view.head is None else f"head {view.head + 1}/{view.heads}"
        pooled = f" · max of {-(-keys // cols)} keys/cell" if keys > cols else ""
        return f"{matrix.title} · layer {view.layer + 1}/{view.layers} · {head}{pooled}"

    def render_line(self, y: int) -> Strip:
        """Line API: one row of the cached picture (a Rich Text of every cell would be converted
        again on each frame; these Strips are built once per change)."""
        strips = self.picture()
        return strips[y] if y < len(strips) else Strip.blank(self.size.width, base_style(self))

    def picture(self) -> list[Strip]:
        """The heatmap for the current View at the widget's size, from cache when nothing changed."""
        width, height = self.size
        key = (self._shown, width, height, self.app.theme)
        if self._picture is None or self._picture[0] != key:
            self._picture = (key, self._draw(width, height))
        return self._picture[1]

    def _draw(self, width: int, height: int) -> list[Strip]:
        view = self.current
        matrix = self.matrix(view) if view is not None else None
        if matrix is None or not matrix.rows:
            return [self._message(self.empty_text(view), width)]
        if width < 24 or height < 5:
            return [self._message("too small: press z to zoom", width)]
        frame = self.frame(width, height)
        try:
            grid = fit(matrix, view.layer, view.head, frame.rows, frame.cols, self._rows)
        except UserError as error:  # a replay's trace truncated while open: these rows are gone from it
            if not self._told:  # once: the app says why, as for a recorded step that does not read
                self._told = True
                # to the app itself: drawn for the screen, a message from here stops bubbling there
                self.app.post_message(EngineFailed(error, "replay"))
            return [self._message(first_line(error), width)]
        return draw(frame, grid, matrix.keys, self.title(matrix, grid.keys, frame.cols), self._cells)

    def _message(self, text: str, width: int) -> Strip:
        base = base_style(self)
        return Strip([Segment(text, base + Style(dim=True))]).crop_extend(0, width, base)

    def frame(self, width: int, height: int) -> Frame:
        """plotext's empty frame for this size and theme, built once and reused."""
        key = (width, height, self.app.theme)
        if self._frame is None or self._frame[0] != key:
            self._frame = (key, build_frame(self.plt, width, height, self._get_plotext_theme_name(self.app.theme)))
        return self._frame[1]

    def empty_text(self, view: View | None) -> str:
        """What to show before there are rows."""
        return "waiting for the model…" if view is None or view.prompt is None else "no attention recorded"


class AttentionPlot(HeatmapPlot):
    """Self-attention: the prompt's rows and one row per generated step (T5: encoder or decoder)."""

    def matrix(self, view: View) -> Matrix | None:
        """Self-attention rows up to the selected step."""
        return self_attention(view)
