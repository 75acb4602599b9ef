"""Tokens: the prompt (T5: the encoder input) and the generated tokens coloured by probability.

Token boundaries show as alternating backgrounds; whitespace and control characters get visible
stand-ins (``⏎``); the selected step's token is reversed. Texts are appended to ``rich.text.Text``
(never parsed as markup), so ``[INST]`` shows as typed.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from lmscope.tui.render import is_special, prob_color, token_text
from lmscope.tui.view import View

_SPECIAL_STYLE = "italic #c678dd"


class TokensText:
    """Builds the pane's Text, wrapping at token boundaries (never inside a token, and a token's
    leading space stays with it, unlike word wrapping); remembers the selected token's line."""

    INDENT = 8

    def __init__(self, view: View, shades: tuple[str, str], width: int) -> None:
        self.view, self.shades, self.width = view, shades, max(width, self.INDENT + 8)
        self.text = Text(end="", no_wrap=True, overflow="fold")
        self.selected_line = self.line = self.column = self._count = 0

    def label(self, name: str) -> None:
        """A line heading such as ``prompt``."""
        if self.text:
            self._newline(indent=False)
        self.text.append(f"{name:>7} ", style="bold dim")
        self.column = self.INDENT

    def _newline(self, indent: bool = True) -> None:
        self.text.append("\n" + (" " * self.INDENT if indent else ""))
        self.line += 1
        self.column = self.INDENT if indent else 0

    def token(self, token: str, token_id: int | None, color: str | None = None, selected: bool = False) -> None:
        """One token on an alternating background; a newline token also breaks the line."""
        background = self.shades[self._count % 2]
        self._count += 1
        shown = token_text(token)
        suffix = f":{token_id}" if self.view.show_ids and token_id is not None else ""
        if self.column + cell_len(shown + suffix) > self.width and self.column > self.INDENT:
            self._newline()
        special = is_special(token)
        parts = [color or (_SPECIAL_STYLE if special else ""), "italic" if special else "", f"on {background}"]
        if selected:
            self.selected_line = self.line
            parts.append("reverse bold")
        self.text.append(shown, style=" ".join(p for p in parts if p))
        if suffix:
            self.text.append(suffix, style=f"dim on {background}")
        self.column += cell_len(shown + suffix)
        if "\n" in token:
            self._newline()

    def build(self) -> Text:
        """Prompt then output (decoder-only), or encoder then decoder (T5)."""
        view, prompt = self.view, self.view.prompt
        t5 = prompt.family == "t5"
        self.label("encoder" if t5 else "prompt")
        last = len(prompt.input_ids) - 1
        for i, (token, token_id) in enumerate(zip(prompt.input_tokens, prompt.input_ids)):
            self.token(token, token_id, selected=view.index == -1 and i == last)
        self.label("decoder" if t5 else "output")
        if t5:
            self.token(prompt.decoder_start_token or "<pad>", prompt.decoder_start_id)
        for i, step in enumerate(view.steps):
            chosen = step.chosen
            self.token(step.token, step.token_id, prob_color(chosen.prob if chosen else None), i == view.index)
        return self.text


class TokensPane(Widget):
    """The token stream, wrapped to the pane; shows the lines around the selected token.

    Like a debugger's source view following the current line, the window of lines moves to
    keep the selection visible; the mouse wheel scrolls it too.
    """

    can_focus = True
    current: reactive[View | None] = reactive(None, layout=False)
    """The View to show; set by the app."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self._lines: list[Text] = []
        self._selected_line = 0
        self.top = 0
        """First line shown."""
        self.text = Text()
        """The whole wrapped Text (tests read ``text.plain``)."""

    def watch_current(self, view: View | None) -> None:
        """Refresh when the prompt, the steps, the selection or the id toggle changed."""
        if view is not None and view.prompt is not None:
            self.border_subtitle = f"{len(view.prompt.input_ids)} prompt · {len(view.steps)} generated"
            self.refresh()

    def render(self) -> Text:
        """The lines that fit, moved to show the selected token when it changed."""
        view = self.current
        if view is None or view.prompt is None:
            return Text("loading…", style="dim")
        width, height = self.content_size
        shown = (id(view.prompt), len(view.steps), view.index, view.show_ids, width)
        if shown != self._shown:
            self._shown = shown
            builder = TokensText(view, self._shades(), width)
            self.text = builder.build()
            self._lines = self.text.split("\n")
            self._reveal(builder.selected_line, height)
        window = self._lines[self.top : self.top + max(height, 1)]
        return Text("\n", no_wrap=True, overflow="crop", end="").join(window)

    def _reveal(self, line: int, height: int) -> None:
        """Move the window so ``line`` is visible, leaving one line of context below when possible."""
        height = max(height, 1)
        if line < self.top:
            self.top = line
        elif line >= self.top + height - 1:
            self.top = max(0, min(line + 2 - height, len(self._lines) - height))

    def on_mouse_scroll_down(self) -> None:
        """Scroll the window down one line."""
        self.top = min(self.top + 1, max(0, len(self._lines) - self.content_size.height))
        self.refresh()

    def on_mouse_scroll_up(self) -> None:
        """Scroll the window up one line."""
        self.top = max(0, self.top - 1)
        self.refresh()

    def _shades(self) -> tuple[str, str]:
        """Two backgrounds a little lighter than the theme's surface, to show token boundaries."""
        variables = self.app.theme_variables
        return (variables.get("surface-lighten-1", "#2a2a2a"), variables.get("surface-lighten-2", "#363636"))
