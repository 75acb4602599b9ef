"""A one-line input on a small modal screen, with the problem shown inline under it.

Used for a new breakpoint (``b``) and for the text to force (``f``): ``check`` returns the
one-line problem with what was typed, or None, and the screen stays open until it is fixed or
dismissed with escape.
"""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from lmscope.tui.draw.render import printable


class PrintableInput(Input):
    """An Input that takes from a paste only what it takes from keys: printable characters.

    Textual's Input refuses a key whose character is not printable but inserts a pasted line as
    it is, and draws its value to the terminal raw: a pasted ESC would recolour the screen.
    """

    def _on_paste(self, event: events.Paste) -> None:
        """Keep the printable characters of the pasted first line; Input's own handler, which
        runs next, inserts them."""
        first_line = event.text.splitlines()[0] if event.text else ""
        event.text = "".join(char for char in first_line if char.isprintable())


class TextInputScreen(ModalScreen[str | None]):
    """Returns the accepted text, or None on escape.

    Args:
        title: what is asked.
        placeholder: an example.
        check: the problem with a text, or None when it is acceptable.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str, check: Callable[[str], str | None]) -> None:
        super().__init__()
        self.title_text, self.placeholder, self.check = title, placeholder, check

    def compose(self) -> ComposeResult:
        with Vertical(id="text-input-dialog"):
            yield Label(self.title_text, id="text-input-title")
            yield PrintableInput(placeholder=self.placeholder, id="text-input")
            yield Static("", id="text-input-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Accept the text, or show what is wrong with it and stay."""
        problem = self.check(event.value)
        if problem:
            self.query_one("#text-input-error", Static).update(Text(printable(problem), style="bold #e5534b"))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
