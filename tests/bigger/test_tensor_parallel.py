"""Tensor parallel under torchrun on CPU (gloo): two ranks give one process's output, once, and
follow rank 0's commands in lockstep; a failing rank ends every rank, never a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("tp_script.py")
TIMEOUT_S = 240
ARGS = ["--prompt", "the quick brown fox", "--max-new-tokens", "5", "--json", "--attention"]


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
    environment.pop("WORLD_SIZE", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=environment)


def torchrun(ranks: int, *args: str, **env) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
                "--standalone", *args], **env)


def lines(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = [json.loads(line) for line in done.stdout.splitlines()]
    for line in parsed:
        line.pop("elapsed_s", None)
    return parsed


def close(ours, theirs, path="") -> None:
    """Equal, floats within 1e-4."""
    if isinstance(ours, float) or isinstance(theirs, float):
        assert ours == pytest.approx(theirs, abs=1e-4), path
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), path
        for key in ours:
            close(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs)):
            close(a, b, f"{path}[{index}]")
    else:
        assert ours == theirs, path


def test_two_ranks_print_one_process_output_once(tiny_llama_dir):
    one = lines(run([sys.executable, "-m", "lmscope", "llama", "--model", str(tiny_llama_dir), *ARGS]))
    two = lines(torchrun(2, "-m", "lmscope", "llama", "--model", str(tiny_llama_dir), *ARGS))
    assert len(two) == len(one) == 5  # printed once: rank 1 prints nothing
    close(two, one)
    assert all(line["attention"] for line in two)
    # heads gathered in rank order: the tiny Llama has 4 query heads, 2 per rank
    assert {line["attention"]["shape"][1] for line in two} == {4}


def test_ranks_follow_rewind_force_and_restart(tiny_llama_dir):
    alone = run([sys.executable, str(SCRIPT), str(tiny_llama_dir)])
    ranked = torchrun(2, str(SCRIPT), str(tiny_llama_dir))
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    assert len(ranked.stdout.splitlines()) == 1
    ours, theirs = json.loads(ranked.stdout), json.loads(alone.stdout)
    close(ours, theirs)
    assert [s["by"] for s in ours] == ["sample"] * 4 + ["forced", "sample", "sample"]
    assert ours[4]["token"] == 5 and ours[6] == ours[0]  # seeded restart draws the first step again


@pytest.mark.parametrize("fail_rank", [0, 1])
def test_a_failing_rank_ends_every_rank(tiny_llama_dir, fail_rank):
    done = torchrun(2, str(SCRIPT), str(tiny_llama_dir), LMSCOPE_TEST_FAIL_RANK=str(fail_rank))
    assert done.returncode != 0
    assert done.stdout == ""
    ours = [line for line in done.stderr.splitlines() if line.startswith("lmscope: error")]
    assert any("injected failure" in line for line in ours), done.stderr[-3000:]
    assert 1 <= len(ours) <= 2  # the failing rank's line, and rank 0's when another rank failed
    assert "]: Traceback" not in done.stderr  # no rank printed a traceback (torchrun reports its own)


def test_heads_that_do_not_divide_are_one_line(tiny_llama_dir):
    done = torchrun(3, "-m", "lmscope", "llama", "--model", str(tiny_llama_dir), "--json")
    assert done.returncode != 0 and done.stdout == ""
    ours = [line for line in done.stderr.splitlines() if line.startswith("lmscope: error")]
    assert ours == ["lmscope: error: tensor parallel over 3 ranks needs heads that divide by 3: the model has "
                    "4 query heads and 2 key-value heads (run with a --nproc-per-node that divides both)"]
