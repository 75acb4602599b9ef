"""The one thread that runs the model: every engine call of a process goes through it.

torch's CPU kernels run their parallel parts on OpenMP (libgomp), which gives each *calling*
thread a team of worker threads of its own. Two threads that call torch in turn leave two teams
on the machine, and on this project's 2-core machine a Stepper loop on a second thread stepped
the demo T5 at 0.55-0.65x of the same loop on a thread that alone had called torch (and slowed
the first thread's later runs as much). A pool of worker threads, as the TUI's workers had
before, lands engine calls on whichever thread is free. So the TUI, and the benchmarks that
compare against it, hand every engine call to this one long-lived thread instead; it also keeps
the Stepper's "one caller at a time" rule by construction.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

_EXECUTOR: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def engine_thread() -> ThreadPoolExecutor:
    """The process's engine thread (created on first use; calls run one at a time, in order)."""
    global _EXECUTOR
    with _LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmscope-engine")
        return _EXECUTOR


def submit(call: Callable[..., T], *args, **kwargs) -> Future:
    """Queue ``call(*args, **kwargs)`` on the engine thread; the Future holds its result."""
    return engine_thread().submit(call, *args, **kwargs)


def run(call: Callable[..., T], *args, **kwargs) -> T:
    """Run ``call`` on the engine thread and wait for its result (benchmarks, scripts)."""
    return submit(call, *args, **kwargs).result()
