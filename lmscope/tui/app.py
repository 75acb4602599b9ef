"""LmscopeApp: the actions behind the keys, the engine workers, and the handlers of their messages.

State is one immutable ``View`` (``self.view``); every change builds a new one and hands it to
the panes (attributes down). One engine call at a time: ``busy`` is set before a worker starts
and cleared by the message that ends it, and ``check_action`` disables (greys) the actions that
would start a second one. ``continue`` steps in its worker until generation finishes or the
``threading.Event`` set by ``pause`` is seen at a step boundary.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace

from textual.app import App
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import TabbedContent

from lmscope.engine.branches import BranchTree
from lmscope.engine.errors import exit_code
from lmscope.engine.protocol import Engine, EngineFactory
from lmscope.tui.actions import BrowseActions
from lmscope.tui.control import CONTROL_ACTIONS, ControlActions
from lmscope.tui.draw.render import printable, printable_lines
from lmscope.tui.messages import EngineFailed, ModelLoaded, PromptEncoded, RunStopped, StepCompleted
from lmscope.tui.pacing import FramePacer, frame_duty
from lmscope.tui.palette import PaletteCommands
from lmscope.tui.screen import PANES, DebuggerScreen
from lmscope.tui.view import View
from lmscope.tui.widgets.footer import DebuggerFooter
from lmscope.tui.widgets.tokens import TokensPane
from lmscope.tui.workers import EngineWorkers

_ENGINE_ACTIONS = {"step", "continue", "restart"} | CONTROL_ACTIONS


class LmscopeApp(ControlActions, PaletteCommands, BrowseActions, EngineWorkers, App):
    """The debugger. ``engine_factory`` is called once, in a worker thread, to load the model.

    Args:
        engine_factory: builds the Engine (loads weights: slow).
        title: the app title.
        theme: a Textual theme name (snapshots fix one); None keeps Textual's default.
    """

    CSS_PATH = "lmscope.tcss"
    TITLE = "lmscope"

    busy: reactive[bool] = reactive(False, bindings=True, repaint=False)
    """True while an engine call runs; step, continue and restart are disabled meanwhile."""
    view: reactive[View] = reactive(View, init=False, repaint=False)  # panes repaint themselves
    """Everything the panes show."""

    def __init__(self, engine_factory: EngineFactory, *, title: str = "lmscope", theme: str | None = None,
                 record_path: str | None = None, breakpoints: tuple = (), top: int | None = None) -> None:
        super().__init__()
        self.record_path = record_path
        """Where ``--record`` writes the session, if it does."""
        self.session_top = top
        """The candidates the session keeps per stage (``--top``), when known: a new breakpoint
        is checked against it (``margin`` needs two)."""
        self._set_breakpoints(breakpoints)
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.title = title
        if theme is not None:
            self.theme = theme
        self._panes: list | None = None
        self.pause_requested = threading.Event()
        """Set by ``pause`` (and on quit); the stepping worker checks it between steps."""
        self.branch_tree = BranchTree()
        """The live branch and every continuation a rewind or a force set aside."""
        self._branch_marks = {}
        self._hit_notes: dict[int, tuple] = {}
        """``id(record)``: ``(record, note)`` of each step a breakpoint held at (:meth:`hits_of`)."""
        self._pending_steps: list = []
        self._flush_timer = None
        self._run_began: tuple[float, int] | None = None
        self._pacer = FramePacer()
        self._footer_widget: DebuggerFooter | None = None
        self._session_names: set[str] = set()
        """The files ``w`` chose (:meth:`_unused_session_name`), taken before a worker writes them."""
        self._failure: Exception | None = None
        """The error of the last engine call that failed; the exit's result while the session
        stays in the error state (:meth:`action_quit`)."""

    def notify(self, message: str, *, title: str = "", **kwargs) -> None:
        """Textual's notification with its message and title :func:`printable` (line breaks
        kept): they quote paths, breakpoints and errors, whose text is the user's or a library's,
        and a toast hands its text to the terminal as it is. Every pane's notification comes here.

        Args:
            message: the notification's text.
            title: its heading, "" for none.
            **kwargs: ``severity``, ``timeout``, ``markup``, as Textual takes them.
        """
        super().notify(printable_lines(message), title=printable(title), **kwargs)

    def get_default_screen(self) -> Screen:
        """The debugger screen."""
        return DebuggerScreen()

    def on_ready(self) -> None:
        """Once the screen is up, load the model in a worker; a loading indicator covers the panes."""
        self.busy = True
        self.screen.query_one("#panes").loading = True
        self.load_engine(self.engine_factory)

    def watch_view(self, view: View) -> None:
        """Attributes down: every pane gets the new View."""
        if self._panes is None:
            screen = self.get_screen_stack_root()
            self._panes = [pane for kind in PANES for pane in screen.query(kind)]
        for pane in self._panes:
            pane.current = view

    @property
    def live_engine(self) -> bool:
        """Whether the engine runs a model (a replay's does not: it cannot step, rewind or
        resume a branch; its lenses are the recorded ones). True before an engine is loaded."""
        return getattr(self.engine, "live", True)

    def get_screen_stack_root(self) -> Screen:
        """The debugger screen, even while a help or palette screen is on top of it."""
        return self.screen_stack[0] if self.screen_stack else self.screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out (None) what cannot run now: engine actions while busy, pause unless running."""
        if action in _ENGINE_ACTIONS:
            if self.busy or self.engine is None or self.view.prompt is None:
                return None
            if not self.live_engine:
                return None  # a replayed session shows; it cannot step
            if action in ("step", "continue") and (self.view.state == "finished" or not self.view.live):
                return None
            if action in CONTROL_ACTIONS and not self.view.live:
                return None  # another branch is shown: resume it (t, r) or show the live one first
            if action in ("rewind", "force_cursor") and self.view.index < 0:
                return None
        if action == "pause" and self.view.state != "running":
            return None
        return True

    def action_step(self) -> None:
        """One step (n, space, F10)."""
        self._run(limit=1, state="stepping")

    def action_continue(self) -> None:
        """Step until finished or paused (c, F5)."""
        self._run(limit=None, state="running")

    def _run(self, limit: int | None, state: str) -> None:
        if self.check_action("step", ()) is not True:  # the command palette calls actions directly
            return
        self.pause_requested.clear()
        self.busy = True
        self._run_began = (time.perf_counter(), len(self.view.steps)) if limit is None else None
        self._pacer.begin()
        # A breakpoint's line was about the step it held at; this run's own hit says its own.
        self.view = replace(self.view.with_state(state), notice="")
        text = "".join(step.token for step in self.view.steps)
        # A single step with the Layers tab showing is shown there next: capture its layers in
        # the step (a few hooks) rather than replay its forward pass when the lens asks.
        layers_in_step = limit == 1 and self._layers_showing()
        self.run_steps(self.engine, limit, self.pause_requested, self.enabled_breakpoints(), text, layers_in_step)

    def _layers_showing(self) -> bool:
        """Whether the main screen's Layers tab is the active one."""
        return self.get_screen_stack_root().query_one("#tabs", TabbedContent).active == "layers"

    def action_pause(self) -> None:
        """Ask the running continue to stop after the current step (p)."""
        self.pause_requested.set()

    def action_restart(self) -> None:
        """Encode the prompt again and clear the history (r)."""
        if self.check_action("restart", ()) is not True:
            return
        self.busy = True
        self.view = self.view.with_state("loading")
        self.start_engine(self.engine)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        """Keep the engine; hide the cross-attention tab for decoder-only models."""
        self.engine = message.engine
        self._pacer.duty = frame_duty(message.spare_core)
        if message.info.family != "t5":
            self.get_screen_stack_root().query_one("#tabs", TabbedContent).hide_tab("cross")
        self.view = View(info=message.info, state="loading")

    def on_prompt_encoded(self, message: PromptEncoded) -> None:
        """A fresh session: history cleared, ready to step."""
        self._time_frame()  # all panes draw the prompt: what the first continue's frames will cost
        gc.unfreeze()  # the old history may now be collected
        # The first collection walks the whole process (the model's modules, Textual, ~400k
        # objects: 240 ms here): pay it now, after this frame, not when the first continue ends.
        self.call_after_refresh(self._settle_memory)
        screen = self.get_screen_stack_root()
        screen.query_one("#panes").loading = False
        # Removing the loading indicator settles focus on a later refresh; focusing the tokens
        # pane after that makes the first frame the same on every run.
        self.call_after_refresh(self._focus_tokens_if_unfocused)
        self.busy = False
        self.branch_tree = BranchTree()
        self._branch_marks = {}
        self._hit_notes = {}
        self.view = self.view.started(message.prompt)
        label = getattr(self.engine, "label", "")
        if label:
            self.view = replace(self.view, notice=label)
        warning = getattr(self.engine, "warning", "")  # a replay's file that is cut or damaged
        if warning:
            self.notify(warning, title="part of the recording is not shown", severity="warning", timeout=20,
                        markup=False)

    def _focus_tokens_if_unfocused(self) -> None:
        screen = self.get_screen_stack_root()
        if screen.focused is None:
            screen.query_one(TokensPane).focus()

    def on_step_completed(self, message: StepCompleted) -> None:
        """Append the step to the history (the selection follows if it was on the newest step)."""
        self._steps_arrived([(message.record, message.hit)])

    def on_steps_completed(self, message) -> None:
        """A continue's steps since the worker last posted."""
        self._steps_arrived(message.steps)

    def _steps_arrived(self, steps) -> None:
        """Every step joins the history at once; the panes get a new View when a frame is due.

        During a continue the frames are paced (``tui/pacing.py``): each costs the UI thread
        tens of milliseconds that the model would otherwise step in. A step a breakpoint stopped
        at shows at once (it comes here when a batch happened to end with it; else, like a
        single step's, it comes with ``RunStopped``).
        """
        self._join_history(steps)
        if self.view.state != "running" or any(hit for _, hit in steps):
            self._flush_steps()
        elif self._flush_timer is None:
            delay = self._pacer.delay()
            if delay <= 0:
                self._flush_steps()
            else:
                self._flush_timer = self.set_timer(delay, self._flush_steps)

    def _join_history(self, steps) -> None:
        """``(record, hit)`` pairs join the branch tree now and the View at the next flush."""
        for record, hit in steps:
            self.branch_tree.append(record)
            self._pending_steps.append((record, hit))

    def _flush_steps(self) -> None:
        """The pending steps join the View in one update."""
        view = self._with_pending_steps()
        if view is self.view:  # none were pending
            return
        self.view = view
        if view.state == "running":
            self._pacer.drawn()
            self._footer().show_waiting()  # in this frame, not one of its own

    def _with_pending_steps(self) -> View:
        """The View with the pending steps appended (and the continue's rate); the current View
        itself if none are pending. A paced frame waiting for them is no longer needed."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        if not self._pending_steps:
            return self.view
        view = self.view.appended_all(self._pending_steps)
        self._pending_steps.clear()
        return view.with_rate(self._rate(len(view.steps)))

    def _time_frame(self) -> None:
        """Time the frame this handler makes, on the UI thread's CPU clock from now until it is
        drawn, for the pacer: a continue's first frame waits by what a frame of new steps costs.
        Call before other after-refresh work (memory settling), which the timing must not include."""
        pacer = self._pacer
        began = pacer.cpu()
        self.call_after_refresh(lambda: pacer.measured(pacer.cpu() - began))

    def _footer(self) -> DebuggerFooter:
        if self._footer_widget is None:
            self._footer_widget = self.get_screen_stack_root().query_one(DebuggerFooter)
        return self._footer_widget

    @staticmethod
    def _settle_memory() -> None:
        """Collect, then freeze what is left, once the steps have stopped coming.

        The history only grows until a restart, yet every full collection walks all of it:
        with 500 steps (~140k objects) one took up to 100 ms, a visible stall on a key press
        (benchmarks/bench_tui.py). Frozen objects are skipped; a restart unfreezes them.
        Collect first: freezing uncollected cycles would keep that garbage until a restart
        (~0.5 MiB a step). Once per engine call that brings steps, at its end (``RunStopped``,
        ``EngineFailed``), never per frame: a collection per frame of a continue is time the
        model does not step.
        """
        gc.collect()
        gc.freeze()
        gc.enable()  # held since the engine call ended (on_run_stopped)

    def on_hit_noted(self, message) -> None:
        """A breakpoint held at a step: kept by the record's identity (every branch that has the
        record has the hit), for ``w`` to write beside the step."""
        self._hit_notes[id(message.record)] = (message.record, message.note)

    def hits_of(self, steps) -> dict[int, dict]:
        """The breakpoint hits of ``steps``, by step number, as ``w`` writes them."""
        kept = self._hit_notes
        return {record.step: kept[id(record)][1] for record in steps
                if id(record) in kept and kept[id(record)][0] is record}

    def on_history_loaded(self, message) -> None:
        """A batch of a replay's steps joins the history in one View update; the newest is
        selected. The steps where a breakpoint held are marked, as they were live; the status bar
        keeps the replay's label (each hit's line is in ``lmscope open FILE --headless``)."""
        records = tuple(record for record, _ in message.steps)
        for record in records:
            self.branch_tree.append(record)
        marks = self.view.marks | {record.step for record, hit in message.steps if hit}
        self.view = self.view.showing(0, self.view.steps + records, live=True, notice=self.view.notice, marks=marks)
        gc.freeze()

    def _rate(self, steps: int) -> float | None:
        """Tokens per second since the continue began, None outside one."""
        if self._run_began is None:
            return None
        began, count = self._run_began
        elapsed = time.perf_counter() - began
        return (steps - count) / elapsed if elapsed > 0 and steps > count else None

    def on_run_stopped(self, message: RunStopped) -> None:
        """The worker ended: finished, paused, or ready for the next step. Its last steps and the
        new state make one frame; memory settles after that frame is drawn, not before it."""
        # No automatic collection until memory settles after this frame: that full collection
        # finds the same garbage, and a generation-1 collection inside the frame (2-5 ms of the
        # UI thread after a 64-step continue of the demo T5) only delays what the frame shows.
        gc.disable()
        if message.steps:
            self._time_frame()
        self._join_history(message.steps)
        # One View for the last steps and the new state (not one each: every pane takes each
        # View), and no greying of keys that un-grey in the same frame.
        view = self._with_pending_steps()
        self._run_began = None
        state = "finished" if message.finished else ("paused" if message.paused else "ready")
        self.busy = False
        self.view = view.with_state(state)
        self.call_after_refresh(self._settle_memory)

    def on_engine_failed(self, message: EngineFailed) -> None:
        """Show the error; keep the history so the steps before it stay browsable (a replay's
        too, when one of its recorded steps does not read: the prompt, at least, was read).

        A failed load leaves nothing to browse: the app exits with the error as its result
        (the CLI prints it as one line, exit 2 for bad input) instead of showing "loading..."
        forever. Otherwise the error is the result of the exit to come, if the session is still
        in the error state then."""
        if message.during == "load":
            self.exit(result=message.error, return_code=exit_code(message.error))
            return
        if getattr(message.error, "ends_session", False):  # tensor parallel: the ranks left lockstep
            self.exit(result=message.error, return_code=1)
            return
        self._flush_steps()  # the steps before the failure, at once (a paced frame may be pending)
        self.get_screen_stack_root().query_one("#panes").loading = False
        self.busy = False
        view, title = self.view.with_state("error"), f"engine failed during {message.during}"
        if message.during == "replay":  # a recorded step did not read: the status bar goes on saying so
            view = replace(view, notice=getattr(self.engine, "label", view.notice))
            title = "part of the recording is not shown"
        self.view = view  # one View: every pane takes each one
        self._settle_memory()
        error = self._failure = message.error
        self.notify(f"{type(error).__name__}: {error}", title=title, severity="error", timeout=10, markup=False)

    def action_quit(self) -> None:
        """Stop a running continue at the next step boundary, then exit.

        A session that ends with a failed engine call (a step, a rewind, a restart, a replay's
        step that does not read) exits with that error as its result and the exit code
        ``--headless`` gives it (2 for bad input, else 1): the CLI prints its one line, which
        the notification took away with the screen. A later call that worked clears it."""
        self.pause_requested.set()
        failure = self._failure if self.view.state == "error" else None
        if failure is None:
            self.exit()
        else:
            self.exit(result=failure, return_code=exit_code(failure))

    def on_unmount(self) -> None:
        """However the app ends: the engine thread outlives it, so a continue still stepping
        there stops at its next step boundary instead of holding that thread for the next app.
        Collections held for a settling that will not come (the app exits first) resume."""
        self.pause_requested.set()
        gc.enable()


def make_app(engine_factory: EngineFactory, **kwargs) -> LmscopeApp:
    """The one way to build the app (CLI, tests and screenshot script).

    Args:
        engine_factory: builds the Engine; called in a worker thread.
        **kwargs: ``title``, ``theme``, ``record_path``, ``breakpoints`` (parsed ``--break``
            conditions: breakpoints 1, 2 ... of the session, enabled), ``top`` (``--top``).
    """
    return LmscopeApp(engine_factory, **kwargs)
