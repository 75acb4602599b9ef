"""Token layout for the Tokens pane: lines of Segments wrapped at token boundaries.

Separate from the widget so the layout (pure Rich objects, no Textual state) can be read and
tested on its own.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from lmscope.tui.draw.render import is_special, prob_color, token_text
from lmscope.tui.view import View

_SPECIAL_STYLE = "italic #c678dd"


@lru_cache(maxsize=256)
def token_style(definition: str) -> Style:
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
        """A new line with a heading such as ``prompt`` (reusing a line a ``⏎`` token just opened)."""
        if self.lines and self.column == self.INDENT and len(self.lines[-1]) == 1:
            self.lines.pop()
        self.lines.append([Segment(f"{name:>7} ", token_style("bold dim"))])
        self.column = self.INDENT

    def _newline(self) -> None:
        self.lines.append([Segment(" " * self.INDENT)])
        self.column = self.INDENT

    def token(self, token: str, token_id: int | None, color: str | None = None, marked: bool = False) -> None:
        """One token on an alternating background; a newline token also breaks the line.

        ``marked`` (a breakpoint held at this step) puts a red ``●`` before it and underlines it.
        """
        background = self.shades[len(self.where) % 2]
        shown = token_text(token)
        suffix = f":{token_id}" if self.view.show_ids and token_id is not None else ""
        mark = "●" if marked else ""
        if self.column + cell_len(mark + shown + suffix) > self.width and self.column > self.INDENT:
            self._newline()
        if mark:
            self.lines[-1].append(Segment(mark, token_style("bold #e5534b")))
            self.column += 1
        special = is_special(token)
        parts = [color or (_SPECIAL_STYLE if special else ""), "italic" if special else "", f"on {background}",
                 "underline" if marked else ""]
        self.where.append((len(self.lines) - 1, len(self.lines[-1])))
        self.lines[-1].append(Segment(shown, token_style(" ".join(p for p in parts if p))))
        if suffix:
            self.lines[-1].append(Segment(suffix, token_style(f"dim on {background}")))
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

    def extend(self, steps: tuple, view: View | None = None) -> TokensText:
        """Append generated tokens (a new step only adds to the last lines).

        Args:
            steps: all steps; those beyond the ones laid out are added.
            view: the View the new steps come with (their breakpoint marks).
        """
        self.view = view or self.view
        for step in steps[len(self.steps) :]:
            self.token(step.token, step.token_id, prob_color(step.final_prob),
                       marked=step.step in self.view.marks)
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
