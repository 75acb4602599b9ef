"""benchmarks/profile_step.py runs and times every part of a step (the demo T5: offline, fast)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "profile_step.py"


def parts(*args: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--family", "t5", "--tokens", "8", "--rounds", "1", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"^\s+(\S.*?)\s+([\d.]+) ms\s+[\d.]+%$", done.stdout, flags=re.MULTILINE))


def test_profile_step_times_every_part_of_a_t5_step():
    rows = parts()
    for part in ("generate() step", "Stepper step", "model forward", "attention rows: computed",
                 "layer capture: stacked", "processors, stages, choice", "record", "generate(): model forward"):
        assert part in rows, (part, rows)
    assert 0 < float(rows["attention rows: computed"]) < float(rows["model forward"])
    assert float(rows["Stepper step"]) > float(rows["model forward"])


def test_as_a_continue_the_rows_are_made_when_completing():
    rows = parts("--continue")
    for part in ("Stepper step", "completing waiting steps", "attention rows", "attention rows: computed"):
        assert part in rows, (part, rows)
    assert float(rows["completing waiting steps"]) >= float(rows["attention rows"]) > 0
