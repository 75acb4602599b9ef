"""The Stepper stepped as the TUI's continue steps it (``tui/workers.py run_steps``), for benchmarks.

A continue without breakpoints lets each step's attention rows, layer capture and record wait
(``step(record_later=True)``) and completes them whenever it hands steps to the UI, every
``STEPS_MESSAGE_S``, and at its end.
"""

from __future__ import annotations

import time

from lmscope.tui.workers import STEPS_MESSAGE_S


def run_to_end(stepper) -> None:
    """``start()``, then steps until finished, completing rows, captures and records as a continue does."""
    stepper.start()
    handed = time.perf_counter()
    while not stepper.finished:
        stepper.step(rows_later=True, record_later=True)
        if time.perf_counter() - handed >= STEPS_MESSAGE_S:
            stepper.complete_waiting()
            handed = time.perf_counter()
    stepper.complete_waiting()


def steps_then_complete(stepper, steps: int) -> None:
    """``steps`` steps whose rows, captures and records wait, then one ``complete_waiting`` (one
    hand-over's worth)."""
    for _ in range(steps):
        stepper.step(rows_later=True, record_later=True)
    stepper.complete_waiting()
