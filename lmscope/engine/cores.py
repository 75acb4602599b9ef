"""Whether the host keeps a core free while the model steps.

torch runs a CPU model's parallel parts on an OpenMP team, by default one thread per core. Any
other thread that runs meanwhile (the row store's writer, the TUI's drawing) then takes a core
from one of the team's threads, and each parallel region waits at its barrier for the thread it
stopped: on this project's 2-core machine a millisecond of other work stops the whole step for
about a millisecond. A model on an accelerator, or torch on fewer threads than the cores, leaves
a core to such work.
"""

from __future__ import annotations

import os
import sys


def spare_core(device) -> bool:
    """Whether a model on ``device`` (a ``torch.device`` or its name) leaves the host a core:
    always on an accelerator; on the CPU only if torch's threads are fewer than the cores this
    process may use. Without torch in the process (a replay: no model, no OpenMP team) nothing
    takes the cores, and torch is not imported to ask (1.3 s and 180 MiB of a replay's start)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return True

    try:
        on_cpu = torch.device(device).type == "cpu"
    except (RuntimeError, TypeError, ValueError):  # a name torch has no device for (a recording's)
        on_cpu = False
    if not on_cpu:
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return torch.get_num_threads() < cores
