"""Recorded sessions behind the Engine protocol: :class:`RecordingEngine` writes a live session to
a trace as it runs (:class:`~lmscope.engine.trace_writer.TraceWriter`), :class:`ReplayEngine`
shows one read back (:class:`~lmscope.engine.trace_reader.Trace`). The file's layout:
:mod:`lmscope.engine.trace_format`."""

from __future__ import annotations

import weakref

from lmscope.engine.branches import BranchTree
from lmscope.engine.errors import UserError
from lmscope.engine.records import PromptRecord, StepRecord
from lmscope.engine.trace_format import TraceError
from lmscope.engine.trace_reader import Resumed, Rewind, Trace
from lmscope.engine.trace_writer import TraceWriter


class RecordingEngine:
    """Wraps an engine so that everything it produces is written to a trace as it happens.

    Recording runs in the caller's thread (the TUI's engine worker), never on the UI thread.
    """

    def __init__(self, engine, writer: TraceWriter, options: dict):
        self.engine, self.writer = engine, writer
        self.info = engine.info
        self._unwritten: list[StepRecord] = []
        """Steps made with ``rows_later``: written once their rows are complete."""
        self._lens_top: dict[int, int] = {}
        """By step number: the ``top`` of the lens written for the live record of that step."""
        self._waiting_lenses: dict[int, tuple] = {}
        """By step number: lenses of steps still in ``_unwritten``, written right after them."""
        self._waiting_hits: dict[int, dict] = {}
        """By step number: breakpoint hits of steps still in ``_unwritten``, written right after them."""
        self._places: weakref.WeakKeyDictionary[StepRecord, int] = weakref.WeakKeyDictionary()
        """Each written record's place among the trace's steps (``TraceWriter.step``), while
        someone holds the record: a resumed branch's steps are named by it."""
        writer.meta(engine.info, options)

    @property
    def finished(self) -> bool:
        return self.engine.finished

    def start(self) -> PromptRecord:
        self.complete_waiting()
        self._lens_top.clear()
        record = self.engine.start()
        self.writer.prompt(record)
        return record

    def step(self, force: int | None = None, rows_later: bool = False, record_later: bool = False,
             layers_later: bool | None = None, scores_in_step: bool = False) -> StepRecord | None:
        if not (rows_later or record_later):
            self.complete_waiting()  # the trace keeps the steps in the order they were made
        record = self.engine.step(force=force, rows_later=rows_later, record_later=record_later,
                                  layers_later=layers_later, scores_in_step=scores_in_step)
        if record is None:
            return None  # complete_waiting returns it
        if rows_later:
            self._unwritten.append(record)
        else:
            self._write_step(record)
        return record

    def complete_waiting(self, write_behind: bool = False) -> tuple[StepRecord, ...]:
        # Never behind: the trace writes each step's rows as soon as they are complete.
        made = self.engine.complete_waiting()
        # A run makes its steps one way (record_later or not), so the two lists never interleave.
        for record in (*self._unwritten, *made):
            self._write_step(record)
            hit = self._waiting_hits.pop(record.step, None)
            if hit is not None:
                self.writer.note(record.step, hit)
            lens = self._waiting_lenses.pop(record.step, None)
            if lens is not None:
                self._write_lens(record.step, lens)
        self._unwritten.clear()
        return made

    def _write_step(self, record: StepRecord) -> None:
        self._places[record] = self.writer.step(record)

    def rows_written(self, wait: bool = False) -> bool:
        return True  # complete_waiting never leaves a write behind

    def rewind(self, step: int) -> None:
        self.complete_waiting()
        self.engine.rewind(step)
        # Written whether or not it cut steps, and whatever follows: the next STEP's number would
        # say nothing where none follows, and a resume's own rewind is told from a rewind before
        # it by being the chunk right before the resume's re-run.
        self.writer.rewind(step)
        for later in [k for k in self._lens_top if k >= step]:  # their records are gone: a new step gets its own
            del self._lens_top[later]

    def note_hit(self, step: int, note: dict) -> None:
        """A breakpoint hit at ``step``, written beside the step as ``--headless`` writes it (the
        TUI's continue finds hits in steps whose rows wait: the hit then follows its step)."""
        if self._waiting(step):
            self._waiting_hits[step] = note
        else:
            self.writer.note(step, note)

    def note_resumed(self, step: int, records: tuple[StepRecord, ...]) -> None:
        """A branch resumed at ``step``: its re-run steps are in the trace already (forced: what
        an older lmscope shows), and a RSUM chunk names ``records``' own steps, live again. Not
        written when one of them is not in this trace (made before it began): then the re-run
        steps read as a branch of their own."""
        self.complete_waiting()
        places = [self._places.get(record) for record in records]
        if None not in places:
            self.writer.resume(step, places)

    def lens(self, step: int, top: int = 3) -> tuple:
        """The engine's logit lens of ``step``, written to the trace beside the step (once per
        record and ``top``). Only who asks for the lens pays for it: ``--json --layers``, the
        TUI's Layers pane; a recording that never asks writes no ``LENS`` chunk."""
        lens = self.engine.lens(step, top)
        if self._waiting(step):
            self._waiting_lenses[step] = lens  # the step is not in the trace yet: its lens follows it there
        elif self._lens_top.get(step) != top:
            self._write_lens(step, lens)
        return lens

    def _waiting(self, step: int) -> bool:
        """Whether ``step`` is not in the trace yet (its rows are still being made)."""
        return any(record.step == step for record in self._unwritten)

    def _write_lens(self, step: int, lens: tuple) -> None:
        self.writer.lens(step, lens)
        self._lens_top[step] = len(lens[0].top) if lens else 0

    def first_token(self, text: str) -> tuple[int, str]:
        return self.engine.first_token(text)

    def __getattr__(self, name: str):
        """Everything else (the logit lens, a layer's tensors) is the engine's own."""
        return getattr(self.engine, name)


def _branch_ending(tree: BranchTree, step: int, records: list[StepRecord]) -> int:
    """The id of the branch of ``tree``, not the live one, whose steps from ``step`` to its end
    are ``records`` (a branch to resume, as the app chose it); with no records, whose steps are
    the live branch's before ``step``."""
    shared = records or tree.live_branch.steps[:step]
    for branch in tree.branches.values():
        ours = branch.steps[step:] if records else branch.steps
        if branch.id != tree.live and len(branch.steps) == step + len(records) \
                and all(a is b for a, b in zip(ours, shared)):
            return branch.id
    raise TraceError(f"a branch resumed at step {step} is not one the recording made before")


NO_LAYER_CAPTURES = ("the recording keeps no logit lens for this step: record with --json --layers, or step "
                     "into the step (s) while the TUI records")
"""What a replay says where a live session would show a step's layers (the Layers pane too)."""
NO_LAYER_TENSORS = "the recording keeps no layer tensors, only the lens: step into a layer in a live session"
"""What a replay says where a live session would list the tensors a layer saw."""


class ReplayEngine:
    """A recorded session behind the Engine protocol: it shows, it cannot step.

    ``live`` is False, so the app greys step, continue, restart, rewind and force; ``start``
    returns the prompt and ``recorded_steps`` hands every step to the history.
    """

    live = False

    def __init__(self, trace: Trace):
        self.trace = trace
        self.info = trace.info
        self._shown_label: str | None = None
        self.warning = trace.tail_notice
        """What of the file the replay cannot show ("" when nothing): the app shows it as a notification."""
        self._failure: Exception | None = None
        self._finished: bool | None = None
        self._live: list[StepRecord] = []
        """The live branch's records, as :meth:`recorded_steps` gave them."""
        self._places: dict[StepRecord, int] = {}
        """Every record of every branch, as :meth:`recorded_steps` and :meth:`recorded_branches`
        made them, by where each was written (``Trace.every_step``): their lenses and hits are
        read by it."""

    @property
    def failure(self) -> Exception | None:
        """The error of the recorded step that did not read, once :meth:`recorded_steps` met one
        (a TraceError: a damaged chunk whose CRC holds): the steps before it are the whole
        history. Or the error of any read that found the trace truncated since it opened (a
        pane's rows too): what it held is gone, and ``--svg`` ends with that error."""
        return self._failure if self._failure is not None else self.trace.truncated

    @property
    def label(self) -> str:
        """The status bar's line, "replay of FILE, recorded DATE with MODEL" (a screenshot may
        set another)."""
        if self._shown_label is not None:
            return self._shown_label
        if self.trace.truncated is not None:
            return self._label("truncated while open")
        return self._label("damaged" if self._failure is not None else self.trace.tail)

    @label.setter
    def label(self, text: str) -> None:
        self._shown_label = text

    def _label(self, tail: str) -> str:
        """The status bar's line for a file whose end is ``tail`` ("", "cut short" or "damaged")."""
        # A file read only in part says so where it stays in view, the status bar, as well as in
        # the notification that says what is missing (``warning``, or the step that did not read).
        tail = f" ({tail})" if tail else ""
        return f"replay of {self.trace.path.name}{tail}, recorded {self.trace.recorded} with {self.info.model}"

    @property
    def finished(self) -> bool:
        """Whether the recorded session's generation ended (its last step says why); a session
        recorded before it ended replays as paused there."""
        if self._finished is None:  # else known from the last step recorded_steps read
            self._finished = len(self.trace) > 0 and self.trace.step(len(self.trace) - 1).finish_reason is not None
        return self._finished

    def start(self) -> PromptRecord:
        return self.trace.prompt()

    def recorded_steps(self):
        """``(record, hit)`` of every recorded step of the live branch, in order (rows mapped, not
        read; ``hit``: the breakpoint hit recorded there, as ``breakpoints.hit_note`` keeps it, or
        None), up to one that does not read: its error ends them, and is kept in ``failure``."""
        for index in range(len(self.trace)):
            try:
                step = self.trace.step(index), self.trace.hit(index)
            except Exception as error:  # a TraceError, or a reader's bug: either way, what --svg ends with
                self._failure = error
                raise
            if index == len(self.trace) - 1:
                self._finished = step[0].finish_reason is not None
            self._live[index:] = [step[0]]
            self._places[step[0]] = self.trace.place(index)
            yield step

    def has_lens_of(self, record: StepRecord) -> bool:
        """Whether the recording kept a logit lens of ``record``, a step of any branch."""
        return record in self._places and self.trace.has_written_lens(self._places[record])

    def lens_of(self, record: StepRecord) -> tuple:
        """The recorded logit lens of ``record``, a step of any branch (:meth:`lens`)."""
        lens = self.trace.written_lens(self._places[record]) if record in self._places else None
        if lens is None:
            raise UserError(NO_LAYER_CAPTURES)
        return lens

    def hit_of(self, record: StepRecord) -> dict | None:
        """The breakpoint hit recorded at ``record``, a step of any branch, None where none was."""
        return self.trace.written_hit(self._places[record]) if record in self._places else None

    def recorded_branches(self) -> BranchTree | None:
        """The branches the recorded session's rewinds and forces made, rebuilt from the steps in
        the order they were written (None where there were none). Call it after
        :meth:`recorded_steps`: the tree shares the live branch's records it gave.

        A rewind that cut the live branch (a RWND chunk), and each step numbered below the live
        branch's length (a file of an older lmscope), is where a rewind or a force was, as the
        app's own tree forks there; a resumed branch becomes the live one again, the branch
        it left kept whole, as the app's own tree does. A TraceError where a resume names steps
        that no branch ends with."""
        if not self.trace.has_branches:
            return None
        tree, written = BranchTree(), {}
        for item in self.trace.every_step():
            if isinstance(item, Resumed):
                tree.switch(_branch_ending(tree, item.step, [written[place] for place in item.places]))
                continue
            if isinstance(item, Rewind):
                if item.step < len(tree.live_branch.steps):
                    tree.fork(item.step, None)
                continue
            place, index, record = item
            record = written[place] = self._live[index] if index is not None else record
            self._places[record] = place
            if record.step < len(tree.live_branch.steps):
                tree.fork(record.step, record.token_id if record.chosen_by == "forced" else None)
            tree.append(record)
        return tree

    def step(self, force: int | None = None, rows_later: bool = False, record_later: bool = False,
             layers_later: bool | None = None, scores_in_step: bool = False) -> StepRecord:
        raise UserError("a replayed session cannot step: record a new one with --record")

    def complete_waiting(self, write_behind: bool = False) -> tuple[StepRecord, ...]:
        """Recorded steps have their rows: nothing waits."""
        return ()

    def rows_written(self, wait: bool = False) -> bool:
        return True

    def prepare_next(self) -> None:
        """Nothing to prepare: a replayed session makes no steps."""

    def note_hit(self, step: int, note: dict) -> None:
        """Nothing to write: a replay makes no steps, and its hits are recorded already."""

    def note_resumed(self, step: int, records: tuple[StepRecord, ...]) -> None:
        """Nothing to write: a replay resumes no branch."""

    def rewind(self, step: int) -> None:
        raise UserError("a replayed session cannot rewind")

    def first_token(self, text: str) -> tuple[int, str]:
        raise UserError("a replayed session cannot force a token")

    def has_lens(self, step: int) -> bool:
        """Whether the recording kept step ``step``'s logit lens (the Layers pane asks first)."""
        return self.trace.has_lens(step)

    def lens(self, step: int, top: int = 3) -> tuple:
        """The recorded logit lens of ``step`` (as many candidates a layer as were recorded)."""
        lens = self.trace.lens(step)
        if lens is None:
            raise UserError(NO_LAYER_CAPTURES)
        return lens

    def layer_tensors(self, step: int, layer: int) -> tuple:
        raise UserError(NO_LAYER_TENSORS)
