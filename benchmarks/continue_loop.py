"""The Stepper stepped as the TUI's continue steps it (``tui/workers.py run_steps``), for benchmarks.

A continue without breakpoints lets each step's attention rows and record wait
(``step(record_later=True)``) and completes them whenever it hands steps to the UI, every
``STEPS_MESSAGE_S``, and at its end; its decode steps capture no layers (the Layers pane
replays the step it shows: ``Stepper._replayed``). Where a core is free for the writer, each hand-over's rows
are written behind while the next steps run; the next hand-over waits for the last one's writes
(at most one is in flight).
"""

from __future__ import annotations

import time

from lmscope.tui.workers import STEPS_MESSAGE_S


def run_to_end(stepper) -> None:
    """``start()``, then :func:`continue_to_end`."""
    stepper.start()
    continue_to_end(stepper)


def continue_to_end(stepper) -> None:
    """Steps a started Stepper until finished, completing rows, captures and records as a
    continue does (the app's ``c`` after loading: the load ran ``start()``)."""
    handed = time.perf_counter()
    while not stepper.finished:
        stepper.step(rows_later=True, record_later=True)
        stepper.rows_written()  # the continue asks this after a step while a hand-over waits to go
        if time.perf_counter() - handed >= STEPS_MESSAGE_S:
            hand_over(stepper)
            handed = time.perf_counter()
    stepper.complete_waiting()


def hand_over(stepper) -> None:
    """One hand-over: the last one's writes finished, then this one's rows, captures and
    records completed, their rows written behind."""
    stepper.rows_written(wait=True)
    stepper.complete_waiting(write_behind=True)


def single_step(stepper) -> None:
    """The ``n`` key's step, as ``run_steps`` makes it with ``limit=1`` and no breakpoint: the
    step's rows and record wait (its layers are not captured: the Layers pane replays the step
    when it shows it; each layer's product ``q @ k.T`` is made in the step, right after SDPA:
    ``scores_in_step``), and the call's end completes them (``complete_waiting``: every row
    written). The app then calls ``prepare_next`` while the person reads the step; callers that
    time this call it untimed after."""
    stepper.step(rows_later=True, record_later=True, scores_in_step=True)
    stepper.complete_waiting()


def steps_then_complete(stepper, steps: int) -> None:
    """``steps`` steps whose rows, captures and records wait, then one hand-over."""
    for _ in range(steps):
        stepper.step(rows_later=True, record_later=True)
    hand_over(stepper)


def continue_segment(stepper, steps: int, hand_overs: int) -> None:
    """``hand_overs`` hand-overs of ``steps`` steps each, then the last one's writes waited for:
    nothing of the segment runs on after it returns (a timed segment pays for all its writes)."""
    for _ in range(hand_overs):
        steps_then_complete(stepper, steps)
    stepper.rows_written(wait=True)
