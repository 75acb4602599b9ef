"""Messages the engine worker posts to the app (past tense: each reports something that happened).

``post_message`` is thread-safe, so the worker thread uses it to hand records to the UI thread;
the handlers on the app are the only code that changes the session's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from lmscope.engine.protocol import Engine
from lmscope.engine.records import PromptRecord, SessionInfo, StepRecord


@dataclass
class ModelLoaded(Message):
    """``engine_factory()`` returned: the model is loaded, the prompt not yet encoded."""

    engine: Engine
    info: SessionInfo
    spare_core: bool = True
    """Whether the model's steps leave the host a core (``engine.cores.spare_core``): where they
    do not, every millisecond the UI thread draws stops the step, and frames come less often."""


@dataclass
class PromptEncoded(Message):
    """``engine.start()`` returned: a fresh session begins (history is cleared)."""

    prompt: PromptRecord


@dataclass
class StepCompleted(Message):
    """``engine.step()`` returned one generated token.

    Attributes:
        record: the step.
        hit: the status line of the breakpoint that held at this step, if one did.
    """

    record: StepRecord
    hit: str | None = None


@dataclass
class Rewound(Message):
    """``engine.rewind(step)`` returned: the engine is back before ``step``.

    Attributes:
        step: the step the engine produces next.
        forced: the token about to be forced there (None for a plain rewind).
        resuming: the rewind begins re-running another branch (the live one keeps its steps).
    """

    step: int
    forced: int | None = None
    resuming: bool = False


@dataclass
class BranchResumed(Message):
    """The engine re-ran a branch's tokens by forcing them: that branch is live again."""

    branch: int


@dataclass
class RunStopped(Message):
    """The worker stopped stepping: after one step, at a pause, or at the end of generation.

    Attributes:
        finished: generation has ended.
        paused: a pause stopped it.
        steps: the steps not handed over yet, ``(record, breakpoint hit or None)`` pairs: they
            join the history with the state change, in one frame (a single step: its only one).
    """

    finished: bool
    paused: bool
    steps: tuple = ()


@dataclass
class EngineFailed(Message):
    """An engine call raised; the session keeps its history.

    Attributes:
        error: the exception.
        during: ``"load"``, ``"start"``, ``"step"``, ``"rewind"``, or ``"replay"`` (a replay's
            recorded step did not read; the steps before it were loaded).
    """

    error: Exception
    during: str


@dataclass
class SessionWritten(Message):
    """``w`` wrote the session so far to ``path`` (``lenses_left_out``: a line for each lens a
    replay's recording kept that did not read, so was not written)."""

    path: str
    steps: int
    lenses_left_out: tuple[str, ...] = ()


@dataclass
class ForceRefused(Message):
    """The text typed into ``f`` makes no token the model can be forced to (nothing changed)."""

    error: Exception


@dataclass
class SessionNotWritten(Message):
    """``w`` could not write the session to ``path`` (a full disk, a folder that is not
    writable): said in one line; the session and the engine go on as they were."""

    path: str
    error: Exception


@dataclass
class HistoryLoaded(Message):
    """A replayed session's recorded steps, many at once (one View update, not one per step):
    ``(record, breakpoint hit or None)`` pairs, in order."""

    steps: tuple


@dataclass
class BranchesLoaded(Message):
    """A replayed session's branches, rebuilt from its recording (``ReplayEngine.recorded_branches``),
    and by branch other than the live one, the steps where a breakpoint held."""

    tree: object
    marks: dict


@dataclass
class BranchesNotLoaded(Message):
    """A step of a replay's other branches did not read: the replay shows its live branch alone."""

    error: Exception


@dataclass
class HitNoted(Message):
    """A breakpoint held at ``record`` (live, or recorded in a replay): ``note`` as
    ``breakpoints.hit_note`` keeps it, for ``w`` to write beside the step."""

    record: StepRecord
    note: dict


@dataclass
class StepsCompleted(Message):
    """Several steps of a continue at once: ``(record, breakpoint hit or None)`` pairs, in order."""

    steps: tuple
