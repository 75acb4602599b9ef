"""Peak memory above a baseline, for one block of work: CUDA allocator stats or the process's RSS."""

from __future__ import annotations

import torch


class PeakMemory:
    """``reset()`` marks the baseline; ``extra_bytes()`` is the peak since then minus it.

    On CPU it resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux) and reads
    ``VmHWM`` against ``VmRSS`` at the reset, so what is measured is the block's own peak.
    """

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.baseline = 0

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            return
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        self.baseline = _status_kib("VmRSS") * 1024

    def extra_bytes(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.baseline
        return _status_kib("VmHWM") * 1024 - self.baseline


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
