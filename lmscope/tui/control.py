"""Debugger control: breakpoints, rewind, force and branches, as app actions and message handlers.

The engine does the work (rewind on the live cache, forced steps) in the ``control`` worker; the
app keeps the branch tree and the breakpoints, and only ever asks. A rewind or a force never
deletes history: the old continuation becomes a branch (``lmscope.engine.branches``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from lmscope.engine.branches import BranchTree
from lmscope.engine.breakpoints import BreakpointError, parse
from lmscope.engine.records import StepRecord
from lmscope.tui.messages import BranchesLoaded, BranchesNotLoaded, BranchResumed, ForceRefused, Rewound
from lmscope.tui.widgets.branches import BranchesScreen
from lmscope.tui.widgets.breakpoints import BreakpointEntry, BreakpointsScreen
from lmscope.tui.widgets.text_input import TextInputScreen

CONTROL_ACTIONS = {"rewind", "force_text", "force_cursor"}
"""Actions that call the engine: greyed while it is busy, like step."""


class ControlActions:
    """Mixin for the app: ``self.view``, ``self.engine``, ``self.busy`` and the workers are the app's."""

    branch_tree: BranchTree
    _branch_marks: dict[int, frozenset[int]]
    """The breakpoint marks of each branch not shown (the shown one's are the View's)."""
    breakpoint_entries: tuple[BreakpointEntry, ...] = ()
    _next_breakpoint = 1

    # -- breakpoints ------------------------------------------------------------------------

    def _set_breakpoints(self, breakpoints) -> None:
        """The session's first breakpoints (``--break``), numbered from 1 and enabled."""
        self.breakpoint_entries = tuple(BreakpointEntry(number, breakpoint)
                                        for number, breakpoint in enumerate(breakpoints, start=1))
        self._next_breakpoint = len(self.breakpoint_entries) + 1

    def action_add_breakpoint(self) -> None:
        """Ask for a condition (``b``); a bad one is explained inline and the input stays."""
        self.push_screen(TextInputScreen("Break when", "p < 0.3 and not flip",
                                         partial(_breakpoint_problem, top=self.session_top)),
                         self._breakpoint_added)

    def _breakpoint_added(self, expr: str | None) -> None:
        if expr:
            entry = BreakpointEntry(self._next_breakpoint, parse(expr, top=self.session_top))
            self._next_breakpoint += 1
            self.breakpoint_entries = (*self.breakpoint_entries, entry)
            self.notify(f"breakpoint {entry.number} `{expr}`: c stops after the step where it holds", markup=False)

    def action_list_breakpoints(self) -> None:
        """Enable, disable and delete breakpoints (``B``)."""
        self.push_screen(BreakpointsScreen(self.breakpoint_entries), self._breakpoints_edited)

    def _breakpoints_edited(self, entries: tuple[BreakpointEntry, ...] | None) -> None:
        if entries is not None:
            self.breakpoint_entries = entries

    def enabled_breakpoints(self) -> tuple:
        """``(number, Breakpoint)`` pairs for the stepping worker."""
        return tuple((e.number, e.breakpoint) for e in self.breakpoint_entries if e.enabled)

    # -- rewind and force -------------------------------------------------------------------

    def action_rewind(self) -> None:
        """Go back to just before the selected step (``u``); what followed becomes a branch."""
        if self.check_action("rewind", ()) is True:
            self._control(self.view.index)

    def action_force_text(self) -> None:
        """Force the first token of a text at the selected step (``f``)."""
        if self.check_action("force_text", ()) is True:
            target, tree = max(self.view.index, 0), self.branch_tree
            self.push_screen(TextInputScreen(f"Force at step {target} the first token of",
                                             "a word or any text", _force_problem),
                             lambda text: self._force_typed(text, target, tree))

    def _force_typed(self, text: str | None, target: int, tree: BranchTree) -> None:
        """The text typed into ``f``'s input: forced at ``target`` if the session still allows it.

        The command palette can run a continue, a restart or a rewind while the input is open;
        the force then waits its turn or names a step the history no longer has."""
        if not text:
            return
        if tree is not self.branch_tree:
            self.notify("the session restarted while the text was typed: nothing was forced")
        elif self.check_action("force_text", ()) is not True:
            self.notify("the engine is busy or another branch is shown: nothing was forced")
        elif target > len(self.view.steps):
            self.notify(f"step {target} is no longer in the history: nothing was forced")
        else:
            self._control(target, force=text)

    def action_force_cursor(self) -> None:
        """Rewind to the selected step and force the candidate under the Stages cursor (``enter``)."""
        candidate = self.view.cursor_candidate
        if candidate is not None and self.check_action("force_cursor", ()) is True:
            self._control(self.view.index, force=candidate.token_id)

    def action_cursor(self, delta: int) -> None:
        """Move the Stages cursor over the selected step's candidates (``↑`` ``↓``)."""
        self.view = self.view.with_cursor(delta)

    def _control(self, step: int, force: int | str | None = None, replay: tuple[StepRecord, ...] = (),
                 branch: int | None = None) -> None:
        self.busy = True
        self.view = self.view.with_state("stepping")
        self.control(self.engine, step, force, replay, branch)

    def on_force_refused(self, message: ForceRefused) -> None:
        """The typed text cannot be forced: say why; nothing was rewound."""
        self.notify(str(message.error), title="nothing was forced", severity="warning", markup=False)

    def on_rewound(self, message: Rewound) -> None:
        """The engine is back before ``step``: the live branch forks there."""
        if not message.resuming and message.step < len(self.branch_tree.live_branch.steps):
            abandoned = self.branch_tree.fork(message.step, message.forced)
            self._branch_marks[abandoned.id] = self.view.marks  # it keeps every step they mark
        rewound = self.view.rewound(message.step)
        # Resuming another branch leaves this one whole in the tree: its marks go with it (kept
        # by show_branch once the other is live), not only those before the fork.
        self.view = replace(rewound, marks=self.view.marks) if message.resuming else rewound

    # -- branches ---------------------------------------------------------------------------

    def action_branches(self) -> None:
        """The tree of branches (``t``)."""
        tree = self.branch_tree
        self.push_screen(BranchesScreen(tree, self.view.branch, resumable=self.live_engine),
                         lambda choice: self._branch_chosen(choice, tree))

    def _branch_chosen(self, choice: tuple[str, int] | None, tree: BranchTree) -> None:
        """``enter`` (show) or ``r`` (resume) in the branches view of ``tree``.

        Refused while the engine is busy: the steps it is making join the live branch and the
        View shown (a paced continue holds some back for its next frame), so another branch
        shown then would get them too. A restart while the view was open replaced the tree."""
        if choice is None:
            return
        what, branch_id = choice
        if tree is not self.branch_tree:
            self.notify("the session restarted: the branches it had are gone")
        elif self.busy or self.engine is None:
            if branch_id != self.view.branch:
                self.notify("wait for the engine to finish before showing or resuming another branch")
        elif what == "show" or branch_id == tree.live:
            self.show_branch(branch_id)
        elif not self.live_engine:
            self.notify("a replay cannot resume a branch: it has no model (enter shows it)")
        else:
            common, records = tree.steps_to_replay(branch_id)
            self._control(common, replay=records, branch=branch_id)

    def show_branch(self, branch_id: int) -> None:
        """Every pane shows ``branch_id``'s steps, with the breakpoint marks of that branch; no
        model work."""
        live = branch_id == self.branch_tree.live
        if live:  # a replay's status bar keeps saying what it replays
            notice = "" if self.live_engine else getattr(self.engine, "label", "")
        else:
            resume = ": t, then r resumes it" if self.live_engine else ""
            notice = f"viewing branch {branch_id} (not live){resume}"
        self._branch_marks[self.view.branch] = self.view.marks
        steps = self.branch_tree.branches[branch_id].steps
        marks = frozenset(m for m in self._branch_marks.get(branch_id, ()) if m < len(steps))
        self.view = self.view.showing(branch_id, steps, live, notice, marks)

    def on_branches_loaded(self, message: BranchesLoaded) -> None:
        """A replay's branches, rebuilt from its recording, take the place of the tree its history
        made (the live branch alone), whose live branch they share; its id is the view's (not 0
        where the session resumed another branch)."""
        if len(message.tree.live_branch.steps) == len(self.branch_tree.live_branch.steps):
            self.branch_tree = message.tree
            self._branch_marks.update(message.marks)
            if self.view.branch == 0:  # still the history's one branch: no other was shown yet
                self.view = replace(self.view, branch=message.tree.live)

    def on_branches_not_loaded(self, message: BranchesNotLoaded) -> None:
        self.notify(f"its other branches are not shown: {message.error}", title="part of the recording is not shown",
                    severity="warning", timeout=20, markup=False)

    def on_branch_resumed(self, message: BranchResumed) -> None:
        """The engine re-ran the branch's tokens: it is the live one, with its own records."""
        self.branch_tree.switch(message.branch)
        self.show_branch(message.branch)


def _breakpoint_problem(expr: str, top: int | None = None) -> str | None:
    try:
        parse(expr, top=top)
    except BreakpointError as error:
        return str(error)
    return None


def _force_problem(text: str) -> str | None:
    return None if text else "type the text whose first token to force"
