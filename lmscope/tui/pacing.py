"""How often a running continue may redraw the panes, so drawing never paces the model.

The stepping worker and the UI thread share one interpreter lock: every millisecond the UI
thread spends drawing is a millisecond the model does not step (on a 2-core machine a frame of
all panes cost 55 ms, and four frames a second took the demo T5 to half its speed). So the
frame rate follows the frames' cost: after each frame the UI thread's CPU time since the
previous one is read (``time.thread_time``: drawing, compositing, messages, collections) and
the next frame waits until that is at most ``duty`` of the time between them. Cheap frames
(a fast machine, a small terminal) come often; a frame is never further apart than
``max_interval``, so a long run still shows its progress.

The rule holds from a continue's first frame: its wait is set by what the last frame that showed
new steps cost (a step's, the previous continue's end, the prompt's), measured by the app
(:meth:`FramePacer.measured`). Without that, the first frame came after ``min_interval``
whatever it cost, and a short continue of the demo T5 drew all its panes once more than the duty
allows (about 25 ms of the UI thread's CPU in a 0.3 s continue on a 2-core machine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

DUTY = 0.04
"""At most this share of a continue goes to drawing on the UI thread, where the model's steps
leave the host a core (a model on an accelerator: the UI thread competes with the engine thread
for the interpreter only)."""
SHARED_CORES_DUTY = 0.01
"""The share where torch's CPU threads run on every core (``engine.cores.spare_core``): there a
frame also stops the step for as long as it draws, since it takes a core from torch's team, so
the same frames cost the model about twice as much. On the 2-core machine, paired rounds of the
real app's continue against the bare loop (medians): SmolLM2's 24 tokens 0.926 of the bare
loop at 0.04 against 0.944 at 0.02 (20 rounds; 0.920 against 0.947 and 0.935 against 0.937 in
two runs of 10), the demo T5's 256 tokens 0.925 against 0.950 (12 rounds). From 0.02 to 0.01,
``bench_fast_steps.py --rounds 4`` alternated twice: SmolLM2's row 0.92 and 0.89 best-of (0.93
and 0.92 paired; the steps inside it 0.94 and 0.91 of the bare loop's) against 0.95 and 0.93
(0.97 and 0.95; 0.97 and 0.95), the demo T5's rows unmoved. What it costs: a frame of this
machine's ~9 ms comes about once a second during a continue (``max_interval``), where a faster
host's 2-3 ms frame comes every 0.2-0.3 s; keys draw at once all the same (``--keys``: p95
12.0 ms)."""

MIN_INTERVAL_S = 1 / 10
MAX_INTERVAL_S = 1.0


def frame_duty(spare_core: bool) -> float:
    """The duty for a model whose steps leave the host a core (``spare_core``) or not."""
    return DUTY if spare_core else SHARED_CORES_DUTY


@dataclass
class FramePacer:
    """Frame timing for one continue; call :meth:`begin` when it starts, :meth:`drawn` per frame.

    Attributes:
        duty: the share of wall time the UI thread may use between two frames.
        min_interval, max_interval: bounds on the time between frames, in seconds.
        clock, cpu: wall clock and the calling thread's CPU clock (both seconds; injectable for tests).
    """

    duty: float = DUTY
    min_interval: float = MIN_INTERVAL_S
    max_interval: float = MAX_INTERVAL_S
    clock: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.thread_time
    _last_frame: float = field(default=0.0, init=False)
    _last_cpu: float = field(default=0.0, init=False)
    _interval: float = field(default=MIN_INTERVAL_S, init=False)
    _frame_cost: float = field(default=0.0, init=False)

    def begin(self) -> None:
        """A continue starts: its first frame waits as long as the last measured frame's cost
        asks (``min_interval`` before any was measured)."""
        self._last_frame, self._last_cpu = self.clock(), self.cpu()
        self._interval = self._spacing(self._frame_cost)

    def measured(self, cost: float) -> None:
        """A frame that showed new steps outside a continue took ``cost`` seconds of the UI
        thread's CPU (handling its message, drawing, compositing)."""
        self._frame_cost = cost

    def delay(self) -> float:
        """Seconds until the next frame may be drawn (0: now)."""
        return max(0.0, self._last_frame + self._interval - self.clock())

    def drawn(self) -> None:
        """A frame was handed to the panes: its cost sets the wait before the next one.

        The cost is read at the next call: the UI thread's CPU time since the previous frame,
        which includes drawing that frame (the compositor runs after the handler returns)."""
        now, cpu = self.clock(), self.cpu()
        self._interval = self._spacing(cpu - self._last_cpu)
        self._last_frame, self._last_cpu = now, cpu

    def _spacing(self, cost: float) -> float:
        """The wait after a frame of ``cost`` seconds that keeps drawing at ``duty``, in bounds."""
        return min(self.max_interval, max(self.min_interval, cost / self.duty))

    @property
    def interval(self) -> float:
        """The current wait between frames, in seconds."""
        return self._interval
