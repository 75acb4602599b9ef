"""Status: state, step counter, time per step and settings on the first line; the model below.

At one row of height (small terminals) only the first line is shown. The settings, the notice
(a breakpoint's expression, a replay's file name) and the model's facts are the user's or a
recording's text: they are drawn :func:`printable`.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from lmscope.tui.identity import Same
from lmscope.tui.draw.render import base_style, printable, text_strips
from lmscope.tui.view import View

STATE_STYLES = {
    "loading": "bold #d4a72c", "ready": "bold #57ab5a", "stepping": "bold #39c5cf", "running": "bold #39c5cf",
    "paused": "bold #d4a72c", "finished": "bold #6cb6ff", "error": "bold #e5534b",
}


def progress_line(view: View) -> Text:
    """``● running  step 12/32 · viewing 5  31.2 ms/step  │ temperature=0.7 top_k=50 …``."""
    style = STATE_STYLES.get(view.state, "")
    text = Text.assemble(("● ", style), (f"{view.state:<8}", style))
    if view.info is not None:
        text.append(f"  step {len(view.steps)}/{view.info.max_new_tokens}")
    if view.prompt is not None and not view.following:
        text.append(f" · viewing {'prompt' if view.index < 0 else view.index + 1}", style="bold")
    record = view.selected
    if view.rate is not None:
        text.append(f"  {view.rate:.1f} tok/s", style="bold")
    if record is not None:
        text.append(f"  {record.elapsed_s * 1000:.1f} ms/step")
        if record.finish_reason:
            text.append(f"  ended by {printable(record.finish_reason)}", style="bold")
    elif view.prompt is not None:
        text.append(f"  prefill {view.prompt.elapsed_s * 1000:.1f} ms")
    if view.notice:
        text.append(f"  {printable(view.notice)}", style="bold #d4a72c")
    if view.info is not None:
        settings = " ".join(f"{key}={value}" for key, value in view.info.settings) or "greedy"
        text.append(f"  │ {printable(settings)}", style="dim")
    return text


def model_line(view: View) -> Text:
    """``SmolLM2-135M · llama/llama · cpu · float32 · 30 layers · 9 q / 3 kv heads``."""
    info = view.info
    if info is None:
        return Text("loading the model…", style="dim")
    facts = printable(f" · {info.family}/{info.model_type} · {info.device} · {info.dtype}")
    text = Text.assemble((printable(info.model), "bold"), facts)
    text.append(f" · {info.layers} layers · {info.query_heads} q / {info.kv_heads} kv heads", style="dim")
    if getattr(info, "placement", ""):  # a device map or tensor parallel (older recordings lack it)
        text.append(f" · {printable(info.placement)}", style="bold #d4a72c")
    return text


class StatusBar(Widget):
    """Two lines of session status; the app sets ``current``."""

    current: reactive[View | None] = reactive(None, layout=False)
    """The View to show; set by the app."""
    _key: tuple | None = None
    _strips: list[Strip] = []

    def render_line(self, y: int) -> Strip:
        """Line API: the two lines, rendered once per View and width."""
        width = self.content_size.width
        if self._key != (Same(self.current), width, self.content_size.height):
            self._key = (Same(self.current), width, self.content_size.height)
            self._strips = text_strips(self.app.console, self.lines(), width, base_style(self))
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, base_style(self))

    def lines(self) -> Text:
        """Progress line, then the model line when there is room."""
        view = self.current or View()
        lines = [progress_line(view)]
        if self.content_size.height > 1:
            lines.append(model_line(view))
        for line in lines:  # one terminal row each: cut long settings rather than wrap them
            line.no_wrap, line.overflow = True, "ellipsis"
        return Text("\n", end="").join(lines)
