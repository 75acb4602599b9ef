"""Every benchmark mode the README names runs, at its smallest size, and prints its figures.

Each case runs a script in ``benchmarks/`` as a user would (a child process, the offline default
models) and reads the ``name=value`` pairs it prints: every named figure must be there and a
positive number. What the figures are is the benchmarks' business; that they still run after a
change anywhere is this file's. Cases that take more than a few seconds are marked ``slow``.
Not here: ``count_transfers.py`` (it needs a CUDA device) and ``random_twin.py`` (a tool that
writes a model folder, not a measure); ``profile_step.py``'s T5 modes are in ``test_profile_step.py``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SMALL_ENGINE = ("--context", "64", "--steps", "2", "--rounds", "1")


def run_benchmark(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=BENCHMARKS.parent)


def printed_figures(done: subprocess.CompletedProcess) -> dict[str, float]:
    """The ``name=value`` pairs of every line made only of them (a full run prints more than one)."""
    assert done.returncode == 0, done.stderr[-3000:]
    figures = {}
    for line in done.stdout.splitlines():
        pairs = line.split()
        if pairs and all(pair.count("=") == 1 and pair[0] != "=" for pair in pairs):
            figures.update((name, float(value)) for name, value in (pair.split("=") for pair in pairs))
    return figures


def assert_figures(figures: dict[str, float], names: tuple[str, ...]) -> None:
    for name in names:
        assert name in figures, (name, figures)
        assert math.isfinite(figures[name]) and figures[name] > 0, (name, figures)


ENGINE_CASES = [
    pytest.param((*SMALL_ENGINE, "--only", "rng"), ("rng_ratio",), id="only-rng"),
    pytest.param((*SMALL_ENGINE, "--only", "rows", "--dtype", "bfloat16"), ("rows_compute_ratio", "rows_store_ratio"),
                 id="only-rows-bfloat16"),
    pytest.param((*SMALL_ENGINE, "--only", "continue", "--torch-threads", "1"),
                 ("continue_behind_ratio", "continue_in_hand_over_ratio", "continue_step_ratio"),
                 id="only-continue-torch-threads"),
    pytest.param((*SMALL_ENGINE, "--only-layers"), ("layers_step_ratio",), id="only-layers"),
    pytest.param((*SMALL_ENGINE, "--only", "step", "--unprepared"), ("step_ratio", "inplace_step_ratio"),
                 id="only-step-unprepared",
                 marks=pytest.mark.slow),
    pytest.param((*SMALL_ENGINE, "--run-tokens", "4"),
                 ("step_ratio", "inplace_step_ratio", "continue_step_ratio", "rng_ratio", "prefill_time_ratio",
                  "prefill_mem_ratio", "run_ratio", "bytes_per_step"), id="everything", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("args, names", ENGINE_CASES)
def test_bench_engine_modes_run(args, names):
    assert_figures(printed_figures(run_benchmark("bench_engine.py", *args)), names)


def test_bench_engine_refuses_a_bad_thread_count_in_one_line():
    done = run_benchmark("bench_engine.py", "--torch-threads", "0", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--torch-threads" in done.stderr.strip().splitlines()[-1]


def test_bench_fast_steps_refuses_a_bad_round_count_in_one_line():
    done = run_benchmark("bench_fast_steps.py", "--rounds", "0", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--rounds" in done.stderr.strip().splitlines()[-1]


def test_page_cost_runs():
    figures = printed_figures(run_benchmark("page_cost.py", "--mib", "8", "--rounds", "1"))
    assert_figures(figures, ("fresh_page_us", "reused_page_us", "store_write_ms", "direct_store_write_ms",
                             "prepared_store_write_ms"))


def test_profile_step_rows_order_runs():
    done = run_benchmark("profile_step.py", "--rows-order", "--context", "64", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows" in done.stdout and "ms" in done.stdout


def test_profile_step_key_times_the_n_keys_completion():
    """``--key``: the step's rows are made when the call completes them, not in the forward pass."""
    done = run_benchmark("profile_step.py", "--key", "--context", "64", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "as the n key makes them" in done.stdout
    assert "completing waiting steps" in done.stdout and "attention rows: computed" not in done.stdout


def test_profile_step_key_refuses_t5_in_one_line():
    done = run_benchmark("profile_step.py", "--key", "--family", "t5")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--key" in done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_profile_step_compiled_summary_runs():
    done = run_benchmark("profile_step.py", "--compiled-summary")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "compile" in done.stdout


FAST_STEPS_CASES = [  # (args, the figures it prints: only the full run prints name=value pairs)
    pytest.param(("--rows-later", "--rounds", "1"), (), id="rows-later", marks=pytest.mark.slow),
    pytest.param(("--ops",), (), id="ops", marks=pytest.mark.slow),
    pytest.param(("--threads", "--rounds", "1"), (), id="threads"),
    pytest.param(("--timeline", "--rounds", "1", "--dtype", "bfloat16"), (), id="timeline-bfloat16"),
    # The keys wait for the continue's first paced frame, up to the pacer's MAX_INTERVAL_S (1 s)
    # after the key; the continue must outlast it and the presses (``p`` ends it early).
    pytest.param(("--keys", "--presses", "4", "--key-tokens", "2500"), (), id="keys"),
    pytest.param(("--ui-cpu", "--rounds", "1"), ("ui_key_frame_ms", "ui_last_frame_ms", "ui_continue_ms"), id="ui-cpu"),
    pytest.param(("--breakdown", "--rounds", "1"), (), id="breakdown", marks=pytest.mark.slow),
    pytest.param(("--rounds", "1", "--switch-interval", "0.001"),
                 ("stepper_ratio", "tui_ratio", "paired_stepper_ratio", "paired_tui_ratio", "tui_after_pause_ratio",
                  "paired_tui_after_pause_ratio"), id="everything",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("args, names", FAST_STEPS_CASES)
def test_bench_fast_steps_modes_run(args, names):
    done = run_benchmark("bench_fast_steps.py", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "printed nothing"
    assert_figures(printed_figures(done), names)


@pytest.mark.slow
def test_bench_replay_runs():
    done = run_benchmark("bench_replay.py", "--steps", "10", "--context", "64", "--repeats", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "first_frame_s=" in done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_bench_ranks_runs():
    done = run_benchmark("bench_ranks.py", "--ranks", "1", "3", "--tokens", "2", "--rounds", "1")  # 3 divides 9 heads
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 ranks" in done.stdout


@pytest.mark.slow
def test_bench_tui_runs():
    figures = printed_figures(run_benchmark("bench_tui.py", timeout=1200))
    assert_figures(figures, ("p95_key_to_frame_ms", "max_loop_stall_ms"))
