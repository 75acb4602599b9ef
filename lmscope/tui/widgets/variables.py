"""Variables: the tensors the selected forward pass received, like a debugger's Variables view."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import DataTable

from lmscope.engine.records import TensorInfo
from lmscope.tui.draw.render import plain_text
from lmscope.tui.identity import Same
from lmscope.tui.view import View
from lmscope.tui.widgets.tab_pane import CatchUpWhenShown


def preview(info: TensorInfo) -> str:
    """Leading values, with ``…`` when the tensor holds more."""
    if not info.preview:
        return ""
    size = 1
    for dim in info.shape:
        size *= dim
    more = ", …" if size > len(info.preview) else ""
    return "[" + ", ".join(map(str, info.preview)) + more + "]"


class VariablesPane(CatchUpWhenShown, DataTable):
    """Name, shape, dtype and preview of each tensor of the selected step (or the prefill)."""

    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: tuple | None = None

    def on_mount(self) -> None:
        """Columns once."""
        self.add_columns("name", "shape", "dtype", "preview")

    def show_view(self, view: View | None) -> None:
        """Refill the rows when another record is selected."""
        if view is None or view.prompt is None:
            return
        record = view.selected
        source = record if record is not None else view.prompt
        if (Same(source), view.index) == self._shown:
            return
        self._shown = (Same(source), view.index)
        self.clear()
        for info in source.tensors:
            cells = (info.name, str(list(info.shape)), info.dtype, preview(info))
            self.add_row(*(plain_text(cell) for cell in cells))  # a recording's file holds any name
        self.border_subtitle = f"step {view.index + 1}" if record is not None else "prefill / encoder pass"
