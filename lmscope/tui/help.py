"""The help screen (``?``): every key and what it does, from the same table as the palette."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from lmscope.tui.keys import COMMANDS, keys_for


def help_table() -> Table:
    """Keys, command and explanation, one row per command."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="dim")
    for command in COMMANDS:
        table.add_row(Text(keys_for(command.action) or "palette"), Text(command.title), Text(command.help))
    table.add_row("tab", "Next pane", "move focus between panes (shift+tab: back)")
    table.add_row("ctrl+p", "Command palette", "every command above, searchable")
    return table


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; escape, ``q`` or ``?`` closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", key_display="esc"),
    ]

    def compose(self) -> ComposeResult:
        """A bordered, scrollable table."""
        with VerticalScroll(id="help"):
            yield Static(help_table(), id="help-table")

    def on_mount(self) -> None:
        """Title the dialog."""
        help_box = self.query_one("#help")
        help_box.border_title = "lmscope keys"
        help_box.border_subtitle = "esc to close"
