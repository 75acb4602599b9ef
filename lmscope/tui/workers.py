"""Every engine call, each in a worker whose body runs on the engine thread; results go back
to the UI thread as Messages.

Only these workers touch the engine (and so torch and the KV cache), all on one thread
(``engine/engine_thread.py``). They never read or write
app state: what they need comes in as arguments, and what they learn goes out through
``post_message``, which is thread-safe. Exceptions become ``EngineFailed`` messages, so a failed
step leaves the app running with its history.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import TYPE_CHECKING

from textual import work

from lmscope.engine import engine_thread
from lmscope.engine.breakpoints import Breakpoint, first_hit, hit_message, hit_note, note_message
from lmscope.engine.cores import spare_core
from lmscope.engine.errors import UserError
from lmscope.engine.protocol import Engine, EngineFactory
from lmscope.engine.records import StepRecord
from lmscope.tui.messages import (
    BranchesLoaded, BranchesNotLoaded, BranchResumed, EngineFailed, ForceRefused, HistoryLoaded, HitNoted,
    ModelLoaded, PromptEncoded, Rewound,
    RunStopped, SessionNotWritten, SessionWritten, StepCompleted, StepsCompleted,
)

if TYPE_CHECKING:
    from lmscope.engine.recording import ReplayEngine

STEPS_MESSAGE_S = 1 / 4
"""A continue hands its steps to the UI thread at most this often; the last ones (a breakpoint's
step among them) go at once, with ``RunStopped``."""


def on_engine_thread(body=None, *, group: str = "engine"):
    """A worker (of ``group``) whose body runs on the process's one engine thread.

    Textual's thread workers take any free thread of a pool; torch then gives each thread it is
    called from a parallel team of its own, and two teams slow every step (see
    ``engine/engine_thread.py``). The worker itself is async: it awaits the body's Future, so
    ``workers`` still tracks every engine call. Calls run one at a time, in the order made.
    """

    def decorate(body):
        @functools.wraps(body)
        def start(self, *args, **kwargs):
            async def run() -> None:
                await asyncio.wrap_future(engine_thread.submit(body, self, *args, **kwargs))

            return self.run_worker(run(), name=body.__name__, group=group, exit_on_error=False)

        return start

    return decorate(body) if body is not None else decorate


class EngineWorkers:
    """Mixin for the app: the worker methods, all in the ``engine`` group.

    Never ``exclusive=True``: cancelling a thread worker does not stop it, so a cancelled step
    would still run and race the next one on the same cache. The app gates with ``busy``.
    """

    @on_engine_thread
    def load_engine(self, factory: EngineFactory) -> None:
        """Load the model (slow), then encode the prompt."""
        try:
            engine = factory()
            self.post_message(ModelLoaded(engine, engine.info, spare_core(engine.info.device)))
            prompt = engine.start()
        except Exception as error:  # shown in the app; the worker must not take the app down
            self.post_message(EngineFailed(error, "load"))
            return
        self.post_message(PromptEncoded(prompt))
        if not getattr(engine, "live", True):  # a replay: its recorded steps become the history
            self._load_history(engine)

    def _load_history(self, engine: Engine) -> None:
        """A replay's recorded steps join the history in batches. A step that does not read (a
        damaged chunk) ends it as a failed step ends a continue: the steps before it are the
        history, and the app stays open on them and says why."""
        batch, size = [], 8  # a small first batch: the first frame need not wait for all
        try:
            for record, note in engine.recorded_steps():
                if note is not None:  # marked as live; ``w`` writes it again
                    self.post_message(HitNoted(record, note))
                batch.append((record, note_message(note) if note is not None else None))
                if len(batch) == size:
                    self.post_message(HistoryLoaded(tuple(batch)))
                    batch, size = [], 64
        except Exception as error:  # the steps read before it are not lost with it
            self.post_message(HistoryLoaded(tuple(batch)))
            self.post_message(EngineFailed(error, "replay"))
            return
        self.post_message(HistoryLoaded(tuple(batch)))
        self.post_message(RunStopped(finished=engine.finished, paused=not engine.finished))
        self._load_branches(engine)

    def _load_branches(self, engine: Engine) -> None:
        """The replay's other branches, after its history, and where a breakpoint held in each: a
        step or a hit of one that does not read leaves the history and the live branch as they
        are, and says so."""
        try:
            tree = engine.recorded_branches()
            if tree is None:
                return
            marks = _recorded_marks(engine, tree)
        except Exception as error:
            self.post_message(BranchesNotLoaded(error))
            return
        self.post_message(BranchesLoaded(tree, marks))

    @work(thread=True, group="io", exit_on_error=False)
    def write_session(self, path: str, info, prompt, steps, lenses: dict | None = None,
                      hits: dict | None = None, replay: ReplayEngine | None = None) -> None:
        """Write the history so far to a trace file (``w``), off the UI thread (with ``lenses``,
        the logit lens of those steps, and ``hits``, their breakpoint hits, by step number).

        ``replay``: the replay engine the steps come from; every lens its recording kept for
        them is read here, from the file, and written with them (a replay's lens is a read of
        the file, no model work, so it need not wait for the engine thread)."""
        from lmscope.engine.trace_writer import write_session

        left_out = ()
        if replay is not None:
            lenses, left_out = recorded_lenses(replay, steps)
        try:
            write_session(path, info, prompt, steps, lenses=lenses, hits=hits)
        except Exception as error:
            self.post_message(SessionNotWritten(path, error))
            return
        self.post_message(SessionWritten(path, len(steps), left_out))

    @on_engine_thread
    def start_engine(self, engine: Engine) -> None:
        """Encode the prompt again (restart)."""
        try:
            prompt = engine.start()
        except Exception as error:
            self.post_message(EngineFailed(error, "start"))
            return
        self.post_message(PromptEncoded(prompt))

    @on_engine_thread
    def run_steps(self, engine: Engine, limit: int | None, pause: threading.Event,
                  breakpoints: tuple[tuple[int, Breakpoint], ...] = (), text: str = "",
                  layers_in_step: bool = False) -> None:
        """Step ``limit`` times (None: until finished), stopping at a step boundary once ``pause``
        is set or after a step where one of ``breakpoints`` holds.

        Args:
            engine: the engine; no other thread calls it while this runs.
            limit: how many steps at most.
            pause: checked before each step after the first, so a pause never interrupts a step.
            breakpoints: the enabled breakpoints with their numbers (a snapshot: plain data).
            text: the generated text so far, for the ``text`` field.
            layers_in_step: capture each step's layers in the step (the Layers pane shows the
                step next: a replay would run its forward pass a second time). Otherwise the
                Layers pane replays a step when it is asked for it.
        """
        done, hit, batch, posted = 0, None, [], time.perf_counter()
        # Without breakpoints nothing reads a step's record before the hand-over, so the
        # records wait too and their stages are summarised together (engine/waiting_records.py).
        record_later = not breakpoints
        handed = ()  # steps completed at the last hand-over whose rows may still be being written
        try:
            while not engine.finished and (limit is None or done < limit) and hit is None:
                if done and pause.is_set():
                    break
                # The attention rows wait, and are made for the whole batch before it goes
                # (engine/deferred_rows.py): a step then reads the keys once, not twice. Its
                # layers are not captured (unless the Layers pane is about to show this step): the
                # Layers pane's lens replays the step it asks for.
                record = engine.step(rows_later=True, record_later=record_later, layers_later=not layers_in_step,
                                     scores_in_step=limit == 1)
                if record is not None:
                    text += record.token
                    hit = self._first_hit(engine, breakpoints, record, text)  # breakpoints read no attention rows
                    batch.append((record, hit))
                done += 1
                # One message per frame, not per step: each message wakes the UI thread, and
                # handing the GIL back and forth for every step of a fast model paces the model.
                # The batch's rows may be written behind, while the next steps run (where a core
                # is free for it: engine/row_store.py); the UI gets the steps once they are
                # written, asked after each step. At most one hand-over is in flight.
                # The last steps (a single step's only one, a breakpoint's) go with RunStopped.
                if time.perf_counter() - posted >= STEPS_MESSAGE_S:
                    if handed:
                        engine.rows_written(wait=True)
                        self.post_message(StepsCompleted(handed))
                    batch += _unhit(engine.complete_waiting(write_behind=True))
                    handed, batch, posted = tuple(batch), [], time.perf_counter()
                if handed and engine.rows_written():  # at once where nothing was written behind
                    self.post_message(StepsCompleted(handed))
                    handed = ()
            finished = engine.finished
            batch += _unhit(engine.complete_waiting())  # every row written, the handed ones' too
        except Exception as error:
            batch += _unhit(_complete_quietly(engine))
            batch = [*handed, *batch]
            if batch:
                self.post_message(StepsCompleted(tuple(batch)))
            self.post_message(EngineFailed(error, "step"))
            return
        self.post_message(RunStopped(finished=finished, paused=pause.is_set() and not finished,
                                     steps=(*handed, *batch)))
        _prepare_quietly(engine)  # while the UI shows these steps: the next one's row pages

    def _first_hit(self, engine: Engine, breakpoints, record, text: str) -> str | None:
        """The status line of the first breakpoint that holds at ``record``, or None. The hit is
        kept beside the step: by the engine (a recording writes it, as ``--headless`` does) and
        by the app (``w`` writes it), from the engine thread."""
        hit = first_hit(breakpoints, record, text)
        if hit is None:
            return None
        note = hit_note(*hit)
        engine.note_hit(record.step, note)
        self.post_message(HitNoted(record, note))
        return hit_message(*hit)

    @on_engine_thread
    def control(self, engine: Engine, rewind_to: int, force: int | str | None = None,
                replay: tuple[StepRecord, ...] = (), branch: int | None = None) -> None:
        """Rewind, then force one token or re-run a branch's tokens, on the live cache.

        Args:
            engine: the engine.
            rewind_to: the step the engine goes back before.
            force: a token id to force there, or a text whose first token is forced.
            replay: ``branch``'s records from ``rewind_to``, their tokens forced one after another
                (the records stay the branch's own: only the cache is rebuilt, and a recording
                notes that they are live again).
            branch: the branch ``replay`` rebuilds.
        """
        if isinstance(force, str):
            try:
                force = engine.first_token(force)[0]
            except UserError as error:  # a typo, not an engine failure: the session stays as it was
                self.post_message(ForceRefused(error))
                self.post_message(RunStopped(finished=engine.finished, paused=False))
                return
        try:
            engine.rewind(rewind_to)
            self.post_message(Rewound(rewind_to, force, resuming=branch is not None))
            if force is not None:
                self.post_message(StepCompleted(engine.step(force=force)))
            for record in replay:
                engine.step(force=record.token_id)
            if branch is not None:
                engine.note_resumed(rewind_to, replay)
                self.post_message(BranchResumed(branch))
            finished = engine.finished
        except Exception as error:
            self.post_message(EngineFailed(error, "rewind"))
            return
        self.post_message(RunStopped(finished=finished, paused=False))


def _prepare_quietly(engine: Engine) -> None:
    """Optional work between calls: if it fails (a full disk for the row store), the next
    step's own writes fail and say so, as an engine failure."""
    try:
        engine.prepare_next()
    except OSError:
        pass


def _complete_quietly(engine: Engine) -> tuple:
    """The steps made before a failure keep their attention rows (and get their records) if the
    engine can still make them; if it cannot, the failure already on its way says why, and the
    steps whose records were made are still shown."""
    try:
        return engine.complete_waiting()
    except Exception:  # noqa: BLE001 - the step's own error is the one reported
        return ()


def _unhit(records) -> list:
    """``(record, None)`` pairs: records made after their steps, which no breakpoint read."""
    return [(record, None) for record in records]


def _recorded_marks(replay: ReplayEngine, tree) -> dict[int, frozenset[int]]:
    """By branch, other than the live one (its marks come with the history): the steps where a
    breakpoint held, as the recording kept them."""
    held: dict[StepRecord, bool] = {}  # a step shared by several branches is read once
    marks = {}
    for branch in tree.branches.values():
        if branch.id == tree.live:
            continue
        for record in branch.steps:
            if record not in held:
                held[record] = replay.hit_of(record) is not None
        marks[branch.id] = frozenset(record.step for record in branch.steps if held[record])
    return marks


def recorded_lenses(replay: ReplayEngine, steps) -> tuple[dict[int, tuple], tuple[str, ...]]:
    """Every logit lens ``replay``'s recording kept for ``steps``, by step number, and a line for
    each one that does not read (a damaged chunk): ``w`` writes the steps and the other lenses."""
    lenses, left_out = {}, []
    for record in steps:
        if not replay.has_lens_of(record):
            continue
        try:
            lenses[record.step] = replay.lens_of(record)
        except Exception as error:  # noqa: BLE001 - said in the notification; the rest is written
            left_out.append(f"step {record.step + 1}'s lens: {type(error).__name__}: {error}")
    return lenses, tuple(left_out)
