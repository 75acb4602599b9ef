"""bench_engine's prefill children run with glibc's mmap threshold fixed: at its dynamic default
either prefill's peak memory landed at about 150 or about 600 MiB by chance (``FIXED_MMAP_THRESHOLD``)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import bench_engine  # noqa: E402


def test_each_prefill_child_runs_with_the_mmap_threshold_fixed(monkeypatch):
    children = []

    def run(command, **kwargs):
        children.append((command, kwargs.get("env")))
        seconds = 2.0 if "capture" in command else 1.0
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps({"seconds": seconds, "bytes": 100}) + "\n")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setenv("LMSCOPE_TEST_MARK", "kept")
    args = argparse.Namespace(rounds=2, device="cpu", dtype="float32", context=64, torch_threads=None)
    (sdpa_s, sdpa_bytes), (capture_s, capture_bytes) = bench_engine.measure_prefill("model", args)
    assert (sdpa_s, capture_s, sdpa_bytes, capture_bytes) == (1.0, 2.0, 100, 100)
    assert len(children) == 4
    for command, env in children:
        assert "--prefill-child" in command
        assert env["MALLOC_MMAP_THRESHOLD_"] == str(128 * 1024) and env["LMSCOPE_TEST_MARK"] == "kept"
