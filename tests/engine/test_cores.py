"""engine.cores.spare_core: whether the model's steps leave the host a core (the row writer and
the TUI's frame duty ask it)."""

from __future__ import annotations

import pytest
import torch

from lmscope.engine import cores


@pytest.mark.parametrize("threads, cpus, device, expected", [
    (2, 2, "cpu", False),        # torch's team on every core
    (1, 2, "cpu", True),
    (4, 16, torch.device("cpu"), True),
    (16, 16, "cuda:0", True),    # an accelerator's host: the CPU waits on the device
    (16, 16, "meta", True),
    (16, 16, "disk", True),      # a name torch has no device for (a recording's): not the CPU
])
def test_a_core_is_spare_off_the_cpu_or_with_fewer_torch_threads_than_cores(monkeypatch, threads, cpus,
                                                                            device, expected):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert cores.spare_core(device) is expected


def test_without_torch_in_the_process_a_core_is_spare_and_torch_stays_out(monkeypatch):
    """A replay has no model and no OpenMP team: its load asks, and torch is not imported to answer."""
    import sys

    monkeypatch.delitem(sys.modules, "torch")
    assert cores.spare_core("cpu") is True
    assert "torch" not in sys.modules
