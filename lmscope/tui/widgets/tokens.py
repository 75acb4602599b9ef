"""Tokens: the prompt (T5: the encoder input) and the generated tokens coloured by probability.

Token boundaries show as alternating backgrounds; whitespace and control characters get visible
stand-ins (``⏎``); the selected step's token is reversed. Token texts become Segments (never
parsed as markup), so ``[INST]`` shows as typed.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lmscope.tui.identity import Same
from lmscope.tui.draw.render import base_style
from lmscope.tui.draw.token_layout import TokensText, token_style
from lmscope.tui.view import View

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
        self._subtitle = ""
        self.top = 0
        """First line shown."""

    @property
    def text(self) -> Text:
        """All lines as plain Text (tests read ``text.plain``)."""
        self._update()
        return Text("\n".join(strip.text for strip in self._strips))

    def watch_current(self, view: View | None) -> None:
        """Repaint what changed: the two restyled lines when only the selection moved in view."""
        if view is None or view.prompt is None:
            return
        subtitle = f"{len(view.prompt.input_ids)} prompt · {len(view.steps)} generated"
        if subtitle != self._subtitle:  # setting a border title repaints the pane, even if equal
            self.border_subtitle = self._subtitle = subtitle
        changed = self._update() if self.content_size.area else None
        if changed is None:
            self.refresh()
        elif changed:  # refresh() with no regions would repaint the whole pane
            width = self.content_size.width
            self.refresh(*(Region(0, line - self.top, width, 1) for line in changed))

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the window, cropped to the pane."""
        self._update()
        width, line = self.content_size.width, self.top + y
        base = base_style(self)
        if line >= len(self._strips):
            text = "loading…" if not self._strips and y == 0 else ""
            return Strip([Segment(text, base + token_style("dim"))]).crop_extend(0, width, base)
        return self._strips[line].apply_style(base).crop_extend(0, width, base)

    def _update(self) -> set[int] | None:
        """Lay out again when the prompt, ids or width changed, extend the layout by new steps,
        restyle when the selection moved.

        Returns:
            The lines restyled (in view), or None when more changed (a new layout, new steps,
            the window moved).
        """
        view, top = self.current, self.top
        if view is None or view.prompt is None:
            return None
        width, height = self.content_size
        changed: set[int] | None = set()
        # The marks too: a branch shown shares its first records with the live one, not its marks.
        key = (Same(view.prompt), view.show_ids, width, self.app.theme, view.marks)
        layout = self._layout[1] if self._layout is not None and self._layout[0] == key else None
        if layout is None or not layout.extends_to(view.steps):
            layout = TokensText(view, self._shades(), width).build()
            self._layout, self._selected, changed = (key, layout), None, None
            self._strips = [layout.strip(i) for i in range(len(layout.lines))]
        elif len(view.steps) > len(layout.steps):
            changed = None
            first = len(layout.lines) - 1  # the last line may get more tokens
            layout.extend(view.steps, view)
            self._strips[first:] = [layout.strip(i) for i in range(first, len(layout.lines))]
            if self._selected is not None and layout.where[self._selected][0] >= first:
                self._selected = None  # its line was rebuilt without the highlight
        selected = layout.selected(view)
        if selected != self._selected:
            for token, chosen in ((self._selected, None), (selected, selected)):
                if token is not None:
                    line = layout.where[token][0]
                    self._strips[line] = layout.strip(line, chosen)
                    changed = None if changed is None else changed | {line}
            self._selected = selected
            self._reveal(layout.where[selected][0], height)
        if changed is None or self.top != top:
            return None
        return {line for line in changed if top <= line < top + height}

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
