"""The breakpoints list (``B``): enable, disable and delete the conditions ``c`` stops at."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from lmscope.engine.breakpoints import Breakpoint
from lmscope.tui.draw.render import plain_text


@dataclass(frozen=True)
class BreakpointEntry:
    """One breakpoint as the app keeps it.

    Attributes:
        number: shown in the status line (``breakpoint 2 ...``); never reused in a session.
        breakpoint: the parsed condition.
        enabled: whether ``c`` stops at it.
    """

    number: int
    breakpoint: Breakpoint
    enabled: bool = True


class BreakpointsScreen(ModalScreen[tuple[BreakpointEntry, ...]]):
    """Lists the breakpoints; space toggles, d deletes; escape returns the edited list."""

    BINDINGS = [
        Binding("space,enter", "toggle", "Enable/disable"),
        Binding("d,delete", "delete", "Delete"),
        Binding("escape,B,q", "close", "Close"),
    ]

    def __init__(self, entries: tuple[BreakpointEntry, ...]) -> None:
        super().__init__()
        self.entries = list(entries)

    def compose(self) -> ComposeResult:
        with Vertical(id="breakpoints-dialog"):
            yield Label("Breakpoints  (space enable/disable · d delete · b in the debugger adds · esc close)")
            yield DataTable(id="breakpoints-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "on", "condition")
        self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for entry in self.entries:
            table.add_row(str(entry.number), "●" if entry.enabled else "○", plain_text(entry.breakpoint.expr))
        if not self.entries:
            table.add_row("", "", Text("no breakpoints: press b in the debugger to add one", style="dim"))
        table.move_cursor(row=min(row, max(0, len(self.entries) - 1)))

    def action_toggle(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.entries):
            self.entries[row] = replace(self.entries[row], enabled=not self.entries[row].enabled)
            self._fill()

    def action_delete(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.entries):
            del self.entries[row]
            self._fill()

    def action_close(self) -> None:
        self.dismiss(tuple(self.entries))
