"""benchmarks/gpu_check.sh, the one prepared run for a lent GPU machine: its parts, its logs and
its refusals, run here with a stand-in Python that records what it is asked to run."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.sh"

STAND_IN = """#!/bin/sh
echo "$*" >> "$CALLS"
echo "stand-in ran: $*"
"""


@pytest.fixture
def tree(tmp_path):
    """A copy of the script in a repository-like folder with a kit, and a stand-in Python."""
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(SCRIPT, tmp_path / "benchmarks" / "gpu_check.sh")
    (tmp_path / ".gpu" / "whl").mkdir(parents=True)
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def run(tree: Path, *parts: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = tree / "calls.txt"
    env = dict(os.environ, PYTHON=str(tree / "python"), CALLS=str(calls), OUT=str(tree / "out"),
               LMSCOPE_CACHE=str(tree / "cache"), DEVICE="cuda")
    result = subprocess.run(["bash", str(tree / "benchmarks" / "gpu_check.sh"), *parts],
                            capture_output=True, text=True, env=env, timeout=60)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_the_parts_named_run_in_order_each_logging_to_out(tree):
    result, calls = run(tree, "fidelity", "engine")
    assert result.returncode == 0, result.stderr
    assert calls[0].startswith("-m pip install -q --no-index --no-deps")
    assert calls[2] == "benchmarks/random_twin.py .gpu/smollm2 " + str(tree / "cache" / "SmolLM2-135M-Instruct")
    assert calls[3:] == [
        "-m pytest -q -p no:cacheprovider tests/engine/test_fidelity.py tests/engine/test_architectures.py",
        "benchmarks/bench_engine.py --device cuda --dtype float32 --rounds 2",
        "benchmarks/bench_engine.py --device cuda --dtype bfloat16 --rounds 2",
    ]
    logs = sorted(path.name for path in (tree / "out").iterdir())
    assert logs == ["device.txt", "engine_bfloat16.txt", "engine_float32.txt", "fidelity.txt"]
    assert (tree / "out" / "engine_bfloat16.txt").read_text().startswith("stand-in ran: benchmarks/bench_engine.py")
    assert "== engine_float32 (at most 150s)" in result.stdout


def test_no_part_named_runs_all_four(tree):
    result, calls = run(tree)
    assert result.returncode == 0, result.stderr
    ran = [call.split()[0] if call.startswith("benchmarks/") else call for call in calls[3:]]
    assert ran[0].endswith("tests/engine/test_fidelity.py tests/engine/test_architectures.py")
    assert [call for call in ran if call.startswith("benchmarks/")] == [
        "benchmarks/count_transfers.py", "benchmarks/count_transfers.py",
        "benchmarks/bench_fast_steps.py", "benchmarks/bench_fast_steps.py",
        "benchmarks/bench_engine.py", "benchmarks/bench_engine.py",
    ]


def test_an_unknown_part_is_refused_before_anything_runs(tree):
    result, calls = run(tree, "fast", "benches")
    assert result.returncode == 2 and calls == [] and not (tree / "out").exists()
    assert result.stderr.strip() == "unknown part: benches (fidelity, transfers, fast, engine)"


def test_without_the_kit_it_says_how_to_build_it(tree):
    shutil.rmtree(tree / ".gpu")
    result, calls = run(tree)
    assert result.returncode == 2 and calls == [] and not (tree / "out").exists()
    assert "benchmarks/gpu_kit.sh" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_kit_without_a_setup_says_to_run_it(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(SCRIPT.parent / "gpu_kit.sh", tmp_path / "benchmarks" / "gpu_kit.sh")
    env = {key: value for key, value in os.environ.items() if key != "PY"}
    result = subprocess.run(["bash", str(tmp_path / "benchmarks" / "gpu_kit.sh")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2 and not (tmp_path / ".gpu").exists()
    assert result.stderr.strip() == \
        "no .venv/bin/python here: run make setup first (the wheels are this checkout's .venv versions)"
