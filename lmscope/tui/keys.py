"""Key bindings and the commands behind them: one table for the Footer, the help screen and the
command palette, with pdb / VS Code keys (``n`` and F10 step, ``c`` and F5 continue).

Bindings live on the main screen, not the app: history keys are priority bindings (so a focused
table or tab bar does not eat left/right), and screen bindings stay out of the way of modal
screens such as the command palette, whose input needs its own left/right.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Command:
    """An app action as the help screen and the command palette describe it."""

    action: str
    title: str
    help: str


COMMANDS = (
    Command("step", "Step", "run one forward pass and choose one token"),
    Command("continue", "Continue", "step until EOS, a stop string or max_new_tokens (p pauses)"),
    Command("pause", "Pause", "stop a continue at the next step boundary"),
    Command("restart", "Restart", "encode the prompt again and clear the history"),
    Command("add_breakpoint", "Add breakpoint", "break when a condition holds, e.g. p < 0.3 or flip"),
    Command("list_breakpoints", "Breakpoints", "enable, disable or delete breakpoints"),
    Command("rewind", "Rewind", "go back to just before the selected step (the rest becomes a branch)"),
    Command("force_text", "Force a token", "rewind to the selected step and force the first token of a text"),
    Command("branches", "Branches", "every continuation a rewind or force set aside; show or resume one"),
    Command("move(-1)", "Previous step", "select the step before (the prompt before step 1)"),
    Command("move(1)", "Next step", "select the step after"),
    Command("select(-1)", "Select the prompt", "show the prefill / encoder pass"),
    Command("select_last", "Select the newest step", "follow new steps again"),
    Command("layer(-1)", "Previous layer", "attention panes: layer before"),
    Command("layer(1)", "Next layer", "attention panes: layer after"),
    Command("head(-1)", "Previous head", "attention panes: head before"),
    Command("head(1)", "Next head", "attention panes: head after"),
    Command("head_mean", "Toggle head mean", "attention panes: mean over all heads, or one head"),
    Command("toggle_ids", "Toggle token ids", "show each token's vocabulary id"),
    Command("show_tab('attention')", "Attention tab", "self-attention heatmap"),
    Command("show_tab('cross')", "Cross-attention tab", "T5 decoder over encoder tokens"),
    Command("show_tab('kv')", "KV cache tab", "cache sizes and growth"),
    Command("show_tab('variables')", "Variables tab", "the forward pass's tensors"),
    Command("show_tab('layers')", "Layers tab", "the selected step layer by layer: the logit lens"),
    Command("step_into", "Step into", "open the selected step's layers (enter on a layer: its tensors)"),
    Command("zoom", "Zoom pane", "maximize the focused pane, or restore it"),
    Command("write_session", "Write session", "save the session so far to a file lmscope open reopens"),
    Command("screenshot", "Screenshot", "save an SVG of the screen"),
    Command("help", "Help", "this list of keys"),
    Command("quit", "Quit", "leave lmscope"),
)

_HISTORY = Binding.Group("History", compact=True)
_LAYER = Binding.Group("Layer", compact=True)
_HEAD = Binding.Group("Head", compact=True)

BINDINGS = [
    Binding("n", "app.step", "Step"),
    Binding("space,f10", "app.step", "Step", show=False),
    Binding("c,f5", "app.continue", "Continue"),
    Binding("p", "app.pause", "Pause"),
    Binding("r", "app.restart", "Restart"),
    Binding("b", "app.add_breakpoint", "Break"),
    Binding("B", "app.list_breakpoints", "Breakpoints", show=False),
    Binding("u", "app.rewind", "Rewind"),
    Binding("f", "app.force_text", "Force"),
    Binding("t", "app.branches", "Branches", show=False),
    Binding("left", "app.move(-1)", "Prev", key_display="←", priority=True, group=_HISTORY),
    Binding("right", "app.move(1)", "Next", key_display="→", priority=True, group=_HISTORY),
    Binding("home", "app.select(-1)", "Prompt", show=False, priority=True),
    Binding("end", "app.select_last", "Newest", show=False, priority=True),
    Binding("left_square_bracket", "app.layer(-1)", "Layer-", key_display="[", group=_LAYER),
    Binding("right_square_bracket", "app.layer(1)", "Layer+", key_display="]", group=_LAYER),
    Binding("left_curly_bracket", "app.head(-1)", "Head-", key_display="{", group=_HEAD),
    Binding("right_curly_bracket", "app.head(1)", "Head+", key_display="}", group=_HEAD),
    Binding("h", "app.head_mean", "Mean"),
    Binding("i", "app.toggle_ids", "Ids", show=False),
    Binding("1", "app.show_tab('attention')", "Attention", show=False),
    Binding("2", "app.show_tab('cross')", "Cross", show=False),
    Binding("3", "app.show_tab('kv')", "KV", show=False),
    Binding("4", "app.show_tab('variables')", "Variables", show=False),
    Binding("5", "app.show_tab('layers')", "Layers", show=False),
    Binding("s,f11", "app.step_into", "Into", show=False),
    Binding("z", "app.zoom", "Zoom", show=False),
    Binding("w", "app.write_session", "Write", show=False),
    Binding("ctrl+s", "app.screenshot", "Screenshot", show=False),
    Binding("question_mark", "app.help", "Help", key_display="?"),
    Binding("q", "app.quit", "Quit"),
]

_DISPLAY = {"left": "←", "right": "→", "space": "space", "question_mark": "?", "left_square_bracket": "[",
            "right_square_bracket": "]", "left_curly_bracket": "{", "right_curly_bracket": "}"}


def keys_for(action: str) -> str:
    """Keys bound to ``action`` as the user types them: ``n space F10``."""
    keys = []
    for binding in BINDINGS:
        if binding.action == f"app.{action}":
            keys += [_DISPLAY.get(k, k.upper() if k.startswith("f") and k[1:].isdigit() else k)
                     for k in binding.key.split(",")]
    return " ".join(keys)
