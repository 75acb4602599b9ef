"""Branches of one session: the live continuation plus every one a rewind or a force abandoned.

Pure data, no torch: the TUI keeps a :class:`BranchTree` in its state and asks the engine only to
rewind and force. Each branch holds its whole history (records are shared between branches, not
copied); ``parent`` and ``fork_step`` describe where it left the branch it was cut from.
``steps_to_replay`` says how to rebuild any branch exactly on the live cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lmscope.engine.records import StepRecord


@dataclass(frozen=True, eq=False)
class Branch:
    """One continuation.

    Attributes:
        id: unique in its tree; 0 is the first run.
        parent: the branch it was cut from (None for the root).
        fork_step: the first step where it differs from ``parent``.
        forced: the token id that was forced at ``fork_step`` in this branch, None when sampled.
        steps: all its records from step 0 (the ones before ``fork_step`` are shared with ``parent``).
        finish_reason: how it ended (``"eos"``, ``"max_new_tokens"`` ...), None while open.
    """

    id: int
    parent: int | None
    fork_step: int
    forced: int | None
    steps: tuple[StepRecord, ...] = ()
    finish_reason: str | None = None


class BranchTree:
    """Every branch of a session and which one is live (the one the engine's cache holds)."""

    def __init__(self) -> None:
        self.branches: dict[int, Branch] = {0: Branch(0, None, 0, None)}
        self.live = 0

    @property
    def live_branch(self) -> Branch:
        return self.branches[self.live]

    def append(self, record: StepRecord) -> None:
        """Add the engine's newest record (step ``len(steps)``) to the live branch."""
        branch = self.live_branch
        if record.step != len(branch.steps):
            raise ValueError(f"record of step {record.step} after {len(branch.steps)} steps")
        self.branches[self.live] = replace(branch, steps=branch.steps + (record,), finish_reason=record.finish_reason)

    def fork(self, at_step: int, forced_id: int | None) -> Branch:
        """Keep the live branch's steps as a new branch and truncate the live one before ``at_step``.

        Call it with the engine's ``rewind(at_step)``; ``forced_id`` is the token the live branch
        will force next (None for a plain rewind). Returns the new, abandoned branch.
        """
        live = self.live_branch
        if not 0 <= at_step <= len(live.steps):
            raise ValueError(f"cannot fork at step {at_step}: the live branch has {len(live.steps)} steps")
        old = live.steps[at_step] if at_step < len(live.steps) else None
        was_forced = old.token_id if old is not None and old.chosen_by == "forced" else None
        new_id = max(self.branches) + 1
        abandoned = Branch(new_id, self.live, at_step, was_forced, live.steps, live.finish_reason)
        self.branches[new_id] = abandoned
        self.branches[self.live] = replace(live, steps=live.steps[:at_step], finish_reason=None)
        return abandoned

    def switch(self, branch_id: int) -> None:
        """Make ``branch_id`` live, after the engine replayed ``steps_to_replay(branch_id)``."""
        if branch_id not in self.branches:
            raise KeyError(f"no branch {branch_id}")
        self.live = branch_id

    def steps_to_replay(self, branch_id: int) -> tuple[int, tuple[StepRecord, ...]]:
        """(fork_step, records): ``rewind(fork_step)``, then ``step(force=record.token_id)`` for each
        record, rebuilds the branch on the live cache; the records stay the branch's own.

        ``fork_step`` is the length of the history the branch shares with the live one.
        """
        live, target = self.live_branch.steps, self.branches[branch_id].steps
        common = 0
        while common < min(len(live), len(target)) and live[common] is target[common]:
            common += 1
        return common, target[common:]
