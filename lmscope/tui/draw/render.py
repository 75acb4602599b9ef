"""Pure helpers that turn record values into display text and colours (no widgets here).

Token texts go into ``rich.text.Text`` objects, never into markup strings, so a token such as
``[INST]`` or ``[/bold]`` is shown as typed instead of being parsed as Rich markup.

Nothing from outside lmscope reaches the screen with a character that is not printable: a token
goes through :func:`token_text`, any other text from a record, a setting, a path or an error
through :func:`printable`. Textual writes a Strip's text to the terminal as it is (and Rich's
Text drops only BEL, BS, VT, FF and CR), so a raw ESC, a C1 control such as U+009B or a bidi
override there would recolour the screen, move the cursor or reorder what follows it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.strip import Strip

from lmscope.streams import terminal_safe

# Whitespace and control characters get a visible stand-in, like repr() but readable in a line.
_VISIBLE = {"\n": "⏎", "\r": "␍", "\t": "⇥", "\u00a0": "⍽", "\x00": "␀"}
_SPECIAL = re.compile(r"<[^<>\s]{1,20}>|\[/?[A-Z_]{2,12}\]|<\|[^|]{1,30}\|>")
_LOW, _MID, _HIGH = Color.parse("#e5534b"), Color.parse("#d4a72c"), Color.parse("#57ab5a")


def token_text(token: str) -> str:
    """A token's text with newlines, tabs and every other character that is not printable made
    visible: a stand-in (``⏎`` ``⇥`` ``␍`` ``⍽`` ``␀``) where there is one, else written as
    ``repr`` writes it (ESC as ``\\x1b``, U+009B as ``\\x9b``, a bidi override as ``\\u202e``).

    Spaces are kept, except that a token made only of spaces shows them as ``·``; an empty
    token (a special token decoded to nothing) shows as ``∅``.
    """
    if token == "":
        return "∅"
    if token.strip(" ") == "":
        return "·" * len(token)
    if token.isprintable():  # most tokens (each stand-in is for a character that is not printable)
        return token
    out = []
    for char in token:
        if char in _VISIBLE:
            out.append(_VISIBLE[char])
        elif not char.isprintable():  # C0 and C1 controls, DEL, bidi and other format characters
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


def quoted_token(token: str) -> str:
    """``'Paris'``: :func:`token_text` in quotes, for a token named inside a line of text (not
    ``repr`` of it, which would write the backslash of an escape that token_text made twice)."""
    return f"'{token_text(token)}'"


def printable(text: str) -> str:
    """``text`` (a setting, a model or file name, a breakpoint, an error's message, a name read
    from a recording) safe to draw on one line: each character that is not printable written as
    ``repr`` writes it, ``\\x1b``, the same rule as the CLI's error lines
    (:func:`lmscope.streams.terminal_safe`). Printable text comes back as it was."""
    return terminal_safe(text)


def printable_lines(text: str) -> str:
    """``text`` made :func:`printable` line by line, its line breaks kept: for a notification,
    which breaks its lines itself (a library's error can span several)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def plain_text(text: str, style: str = "") -> Text:
    """A Rich Text of :func:`printable` ``text`` for a table cell or a label: never parsed as
    markup, so a name such as ``[bold]`` shows as it is."""
    return Text(printable(text), style=style)


def is_special(token: str) -> bool:
    """Heuristic: ``<s>``, ``</s>``, ``<pad>``, ``[INST]``, ``<|im_end|>`` look like special tokens.

    Records do not say which ids are special, so this only picks the style.
    """
    return bool(_SPECIAL.fullmatch(token.strip()))


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def prob_color(prob: float | None) -> str:
    """Hex colour for a probability: red (unlikely) through amber to green (near certain)."""
    return _LOW.hex if prob is None else _prob_color(round(min(max(prob, 0.0), 1.0), 2))


@lru_cache(maxsize=128)
def _prob_color(p: float) -> str:
    return (_LOW.blend(_MID, p / 0.5) if p < 0.5 else _MID.blend(_HIGH, (p - 0.5) / 0.5)).hex


def bar_color(prob: float) -> str:
    """A dark tint of ``prob_color``, dark enough to read text on (probability bars behind text)."""
    return _bar_color(round(min(max(prob, 0.0), 1.0), 2))


@lru_cache(maxsize=128)
def _bar_color(prob: float) -> str:
    return Color.parse("#1b1f24").blend(Color.parse(prob_color(prob)), 0.45).hex


def percent(prob: float) -> str:
    """A probability in 4 cells: ``100%``, `` 41%``, ``4.2%``, `` <1%`` (one more digit when small)."""
    if prob >= 0.995:
        return "100%"
    if prob >= 0.095:
        return f"{prob * 100:3.0f}%"
    return f"{prob * 100:3.1f}%" if prob >= 0.0095 else " <1%"


def stage_label(name: str) -> str:
    """Short stage name: ``TopPLogitsWarper`` becomes ``TopP`` (:func:`printable`: a recording's
    file holds any name)."""
    for suffix in ("LogitsProcessor", "LogitsWarper", "Processor", "Warper"):
        if name.endswith(suffix) and name != suffix:
            return printable(name[: -len(suffix)])
    return printable(name)


def human_bytes(count: int) -> str:
    """Bytes in binary units: ``1.5 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def compact_count(count: int) -> str:
    """``49152`` as ``49k``, small counts as they are."""
    return f"{count // 1000}k" if count >= 10_000 else str(count)


def text_strips(console: Console, text: Text, width: int, base: Style) -> list[Strip]:
    """Lines of ``text`` rendered once by Rich into Strips of exactly ``width`` cells (cropped or
    padded on the widget's ``base`` style, never wrapped).

    Panes that redraw on every key return these from ``render_line`` (Textual's line API) so the
    frame does not convert a Rich Text into Textual content again each time.
    """
    options = console.options.update(width=max(width, 1), height=None, no_wrap=True, overflow="crop")
    return [Strip(line, width) for line in console.render_lines(text, options, style=base, pad=True)]


def base_style(widget) -> Style:
    """The widget's own Rich style (its background), cached per theme.

    ``Widget.rich_style`` walks the ancestors on every call; line-API panes need it for every
    line of every frame, where it showed up as ~6 ms per key press in profiles.
    """
    cached = widget.__dict__.get("_lmscope_base_style")
    theme = widget.app.theme
    if cached is None or cached[0] != theme:
        cached = widget.__dict__["_lmscope_base_style"] = (theme, widget.rich_style)
    return cached[1]
