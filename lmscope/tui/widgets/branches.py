"""The branches view (``t``): every continuation a rewind or a force set aside, as a tree of forks.

Each node: the branch, where it forked from its parent and with which forced token, its text
and how it ended. ``enter`` shows a branch in every pane (no model work); ``r`` resumes it,
re-running its tokens on the live cache by forcing them.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Tree

from lmscope.engine.branches import Branch, BranchTree
from lmscope.tui.draw.render import printable, quoted_token, token_text, truncate


def branch_label(tree: BranchTree, branch: Branch, shown: int) -> Text:
    """``branch 2 · fork at step 5 · forced ' dragon' · "…text…" · eos  (live)``."""
    text = Text(f"branch {branch.id}", style="bold")
    if branch.parent is not None:
        text.append(f" · fork at step {branch.fork_step}")
    for step in branch.steps:
        if step.chosen_by == "forced":
            text.append(f" · forced {quoted_token(step.token)} at {step.step}", style="#d4a72c")
    words = "".join(step.token for step in branch.steps[branch.fork_step:])
    text.append(f' · "{truncate(token_text(words), 40)}"', style="dim")
    text.append(f" · {printable(branch.finish_reason or f'{len(branch.steps)} steps')}")
    if branch.id == tree.live:
        text.append("  (live)", style="bold #57ab5a")
    if branch.id == shown:
        text.append("  (shown)", style="bold #39c5cf")
    return text


class BranchesScreen(ModalScreen[tuple[str, int] | None]):
    """Returns ``("show", id)``, ``("resume", id)`` or None (escape)."""

    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("escape,t,q", "close", "Close"),
    ]

    def __init__(self, tree: BranchTree, shown: int, resumable: bool = True) -> None:
        super().__init__()
        self.branch_tree, self.shown, self.resumable = tree, shown, resumable
        """``resumable``: False in a replay, which has no model to resume a branch on."""

    def compose(self) -> ComposeResult:
        resume = " · r resumes it on the live cache" if self.resumable else " (a replay: none resumes)"
        with Vertical(id="branches-dialog"):
            yield Label(f"Branches  (enter shows a branch{resume} · esc close)")
            yield Tree(Text("session"), id="branches-tree")

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.show_root = False
        nodes = {}
        for branch in sorted(self.branch_tree.branches.values(), key=lambda b: b.id):
            parent = nodes.get(branch.parent, tree.root)
            nodes[branch.id] = parent.add(branch_label(self.branch_tree, branch, self.shown), data=branch.id,
                                          expand=True, allow_expand=False)
        tree.root.expand_all()
        tree.focus()
        tree.call_after_refresh(tree.move_cursor, nodes[self.shown])  # once the nodes have lines

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data is not None:
            self.dismiss(("show", event.node.data))

    def action_resume(self) -> None:
        node = self.query_one(Tree).cursor_node
        if node is not None and node.data is not None:
            self.dismiss(("resume", node.data))

    def action_close(self) -> None:
        self.dismiss(None)
