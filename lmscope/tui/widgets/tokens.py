"""Tokens: the prompt (T5: the encoder input) and the generated tokens coloured by probability.

Token boundaries show as alternating backgrounds; whitespace and control characters get visible
stand-ins (``⏎``); the selected step's token is reversed. Token texts become Segments (never
parsed as markup), so ``[INST]`` shows as typed.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lmscope.tui.render import base_style, is_special, prob_color, token_text
from lmscope.tui.view import View

_SPECIAL_STYLE = "italic #c678dd"


@lru_cache(maxsize=256)
def _style(definition: str) -> Style:
    """Parsed once: a few dozen distinct token styles (colour level x shade x selection)."""
    return Style.parse(definition)


class TokensText:
    """Lays the tokens out as lines of Segments, wrapping at token boundaries (never inside a
    token, and a token's leading space stays with it, unlike word wrapping).

    The layout does not depend on the selection: ``where[i]`` gives token ``i``'s line and
    segment, so moving the selection restyles one segment instead of laying everything out.
    """

    INDENT = 8

    def __init__(self, view: View, shades: tuple[str, str], width: int) -> None:
        self.view, self.shades, self.width = view, shades, max(width, self.INDENT + 8)
        self.lines: list[list[Segment]] = []
        self.where: list[tuple[int, int]] = []
        self.steps: tuple = ()
        """The steps laid out so far."""
        self.column = 0

    def label(self, name: str) -> None:
        """A new line with a heading such as ``prompt``."""
        self.lines.append([Segment(f"{name:>7} ", _style("bold dim"))])
        self.column = self.INDENT

    def _newline(self) -> None:
        self.lines.append([Segment(" " * self.INDENT)])
        self.column = self.INDENT

    def token(self, token: str, token_id: int | None, color: str | None = None) -> None:
        """One token on an alternating background; a newline token also breaks the line."""
        background = self.shades[len(self.where) % 2]
        shown = token_text(token)
        suffix = f":{token_id}" if self.view.show_ids and token_id is not None else ""
        if self.column + cell_len(shown + suffix) > self.width and self.column > self.INDENT:
            self._newline()
        special = is_special(token)
        parts = [color or (_SPECIAL_STYLE if special else ""), "italic" if special else "", f"on {background}"]
        self.where.append((len(self.lines) - 1, len(self.lines[-1])))
        self.lines[-1].append(Segment(shown, _style(" ".join(p for p in parts if p))))
        if suffix:
            self.lines[-1].append(Segment(suffix, _style(f"dim on {background}")))
        self.column += cell_len(shown + suffix)
        if "\n" in token:
            self._newline()

    def build(self) -> TokensText:
        """Prompt then output (decoder-only), or encoder then decoder (T5)."""
        prompt = self.view.prompt
        t5 = prompt.family == "t5"
        self.label("encoder" if t5 else "prompt")
        for token, token_id in zip(prompt.input_tokens, prompt.input_ids):
            self.token(token, token_id)
        self.label("decoder" if t5 else "output")
        if t5:
            self.token(prompt.decoder_start_token or "<pad>", prompt.decoder_start_id)
        return self.extend(self.view.steps)

    def extend(self, steps: tuple) -> TokensText:
        """Append generated tokens (a new step only adds to the last lines)."""
        for step in steps[len(self.steps) :]:
            chosen = step.chosen
            self.token(step.token, step.token_id, prob_color(chosen.prob if chosen else None))
        self.steps = steps
        return self

    def extends_to(self, steps: tuple) -> bool:
        """True if ``steps`` are this layout's steps plus new ones (not a restarted session)."""
        count = len(self.steps)
        return len(steps) >= count and (count == 0 or steps[count - 1] is self.steps[-1])

    def selected(self, view: View) -> int:
        """Index of the selected token: the step's token, or the prompt's last token."""
        prompt = view.prompt
        first_step = len(prompt.input_ids) + (1 if prompt.family == "t5" else 0)
        return first_step + view.index if view.index >= 0 else len(prompt.input_ids) - 1

    def strip(self, line: int, selected: int | None = None) -> Strip:
        """Line ``line`` as a Strip, with token ``selected`` reversed if it is on that line."""
        segments = self.lines[line]
        if selected is not None and self.where[selected][0] == line:
            at = self.where[selected][1]
            text, style, _ = segments[at]
            segments = [*segments[:at], Segment(text, style + _SELECTED), *segments[at + 1 :]]
        return Strip(segments)


_SELECTED = Style(reverse=True, bold=True)


class TokensPane(Widget):
    """The token stream, wrapped to the pane; shows the lines around the selected token.

    Like a debugger's source view following the current line, the window of lines moves to
    keep the selection visible; the mouse wheel scrolls it too. Lines are Strips (Textual's
    line API): only the visible ones are drawn, and a selection change rebuilds two lines.
    """

    can_focus = True
    current: reactive[View | None] = reactive(None, layout=False, repaint=False)
    """The View to show; set by the app (each pane decides when to repaint)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._layout: tuple[tuple, TokensText] | None = None
        self._selected: int | None = None
        self._strips: list[Strip] = []
        self.top = 0
        """First line shown."""

    @property
    def text(self) -> Text:
        """All lines as plain Text (tests read ``text.plain``)."""
        self._update()
        return Text("\n".join(strip.text for strip in self._strips))

    def watch_current(self, view: View | None) -> None:
        """Refresh when the prompt, the steps, the selection or the id toggle changed."""
        if view is not None and view.prompt is not None:
            self.border_subtitle = f"{len(view.prompt.input_ids)} prompt · {len(view.steps)} generated"
            self.refresh()

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the window, cropped to the pane."""
        self._update()
        width, line = self.content_size.width, self.top + y
        base = base_style(self)
        if line >= len(self._strips):
            text = "loading…" if not self._strips and y == 0 else ""
            return Strip([Segment(text, base + _style("dim"))]).crop_extend(0, width, base)
        return self._strips[line].apply_style(base).crop_extend(0, width, base)

    def _update(self) -> None:
        """Lay out again when the prompt, ids or width changed, extend the layout by new steps,
        restyle when the selection moved."""
        view = self.current
        if view is None or view.prompt is None:
            return
        width, height = self.content_size
        key = (id(view.prompt), view.show_ids, width, self.app.theme)
        layout = self._layout[1] if self._layout is not None and self._layout[0] == key else None
        if layout is None or not layout.extends_to(view.steps):
            layout = TokensText(view, self._shades(), width).build()
            self._layout, self._selected = (key, layout), None
            self._strips = [layout.strip(i) for i in range(len(layout.lines))]
        elif len(view.steps) > len(layout.steps):
            first = len(layout.lines) - 1  # the last line may get more tokens
            layout.extend(view.steps)
            self._strips[first:] = [layout.strip(i) for i in range(first, len(layout.lines))]
            if self._selected is not None and layout.where[self._selected][0] >= first:
                self._selected = None  # its line was rebuilt without the highlight
        selected = layout.selected(view)
        if selected != self._selected:
            for token, chosen in ((self._selected, None), (selected, selected)):
                if token is not None:
                    line = layout.where[token][0]
                    self._strips[line] = layout.strip(line, chosen)
            self._selected = selected
            self._reveal(layout.where[selected][0], height)

    def _reveal(self, line: int, height: int) -> None:
        """Move the window so ``line`` is visible, leaving one line of context below when possible."""
        height = max(height, 1)
        if line < self.top:
            self.top = line
        elif line >= self.top + height - 1:
            self.top = max(0, min(line + 2 - height, len(self._strips) - height))

    def on_mouse_scroll_down(self) -> None:
        """Scroll the window down one line."""
        self.top = min(self.top + 1, max(0, len(self._strips) - self.content_size.height))
        self.refresh()

    def on_mouse_scroll_up(self) -> None:
        """Scroll the window up one line."""
        self.top = max(0, self.top - 1)
        self.refresh()

    def _shades(self) -> tuple[str, str]:
        """Two backgrounds a little lighter than the theme's surface, to show token boundaries."""
        variables = self.app.theme_variables
        return (variables.get("surface-lighten-1", "#2a2a2a"), variables.get("surface-lighten-2", "#363636"))
