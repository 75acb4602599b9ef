"""What the README names that no other test ran from the command line: ``lmscope open FILE``
opening the TUI, the make targets, ``scripts/make_screenshots.py NAME`` and
``scripts/train_demo_t5.py``."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmscope.cli import main

ROOT = Path(__file__).resolve().parents[2]


def replay_driver(keys: tuple[str, ...], seen: dict):
    """A stand-in for ``cli._run_app``: runs the app ``lmscope open`` built without a terminal,
    presses ``keys``, keeps what the app shows in ``seen``, quits."""
    from lmscope.testing import screen_text, wait_until_idle

    async def drive(tui) -> None:
        async with tui.run_test(size=(200, 40)) as pilot:  # the whole status line
            await wait_until_idle(pilot)
            seen.update(before=len(tui.view.steps))
            for key in keys:
                await pilot.press(key)
                await wait_until_idle(pilot)
            seen.update(steps=len(tui.view.steps), state=tui.view.state, title=tui.title,
                        greyed=[action for action in ("step", "continue", "restart", "rewind", "force_text")
                                if tui.check_action(action, ()) is None],
                        status=screen_text(tui).splitlines()[0])
            await pilot.press("q")
            await pilot.pause()

    return lambda tui: asyncio.run(drive(tui))


def test_open_file_opens_the_tui_on_the_recording(tmp_path, monkeypatch):
    """README, Record and replay: ``lmscope open FILE`` opens the TUI on the recording; step,
    continue, restart, rewind and force are greyed, and the status bar says "replay of FILE,
    recorded DATE with MODEL"."""
    from lmscope import cli, testing

    session = testing.write_trace(tmp_path / "paris.lmscope", testing.make_session("llama", steps=5))
    seen: dict = {}
    monkeypatch.setattr(cli, "_check_terminal", lambda: None)
    monkeypatch.setattr(cli, "_run_app", replay_driver(("n", "c", "r", "u"), seen))
    assert main(["open", str(tmp_path / "paris.lmscope")]) == 0
    assert seen["before"] == seen["steps"] == len(session.steps) == 5 and seen["state"] == "finished"
    assert seen["greyed"] == ["step", "continue", "restart", "rewind", "force_text"]
    assert seen["title"] == "lmscope open paris.lmscope"
    assert re.search(r"replay of paris\.lmscope, recorded \d{4}-\d\d-\d\d.* with " + re.escape(session.info.model),
                     seen["status"]), seen["status"]


def make_dry_run(*args: str) -> list[str]:
    """The commands ``make`` would run for ``args`` (``-n``: nothing is run; ``-B``: as on a machine
    without ``.venv``), one a line."""
    done = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "--no-print-directory", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")

SETUP = ["python3 -m venv .venv", '.venv/bin/python -m pip install --quiet "torch==2.13.0"',
         '.venv/bin/python -m pip install --quiet -e ".[test]"', "touch .venv/.lmscope-installed",
         ".venv/bin/lmscope fetch"]


@needs_make
@pytest.mark.parametrize("target, then", [
    ("setup", []),
    ("demo", ['.venv/bin/lmscope llama --chat --prompt "What is the capital of France?"']),
    ("test", [".venv/bin/python -m pytest -q"]),
    ("test-slow", [".venv/bin/python -m pytest -q -m slow"]),
    ("bench", [".venv/bin/python benchmarks/bench_engine.py", ".venv/bin/python benchmarks/bench_tui.py"]),
    ("screenshots", [".venv/bin/python scripts/make_screenshots.py"]),
])
def test_make_targets_create_the_venv_with_pinned_torch_then_run_their_command(target, then):
    """README, Quickstart: each target creates .venv, installs the pinned torch first, then
    lmscope, prepares the default model (``lmscope fetch``) and runs its command."""
    assert make_dry_run(target) == SETUP + then


@needs_make
def test_make_torch_spec_chooses_the_torch_build():
    """README, Quickstart: ``make demo TORCH_SPEC="..."`` installs that requirement instead."""
    spec = "torch==2.13.0+cu128 --index-url https://download.pytorch.org/whl/cu128"
    commands = make_dry_run("demo", f"TORCH_SPEC={spec}")
    assert commands[1] == f'.venv/bin/python -m pip install --quiet "{spec}"'
    assert not any("torch==2.13.0\"" in line for line in commands)


def load_screenshot_script(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_screenshots", ROOT / "scripts" / "make_screenshots.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_screenshots", script)  # its dataclass looks itself up there
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "OUT", tmp_path / "screenshots")  # never over the README's own
    return script


@pytest.mark.slow  # the real app and the demo T5: several seconds
def test_make_screenshots_name_makes_only_that_screenshot(tmp_path, monkeypatch, capsys):
    """README: ``scripts/make_screenshots.py NAME ...`` makes only the screenshots named, from the
    real app on the default models (the demo T5's ships with the package: nothing to fetch)."""
    script = load_screenshot_script(tmp_path, monkeypatch)
    assert "t5_cross_attention" in {shot.name for shot in script.SHOTS}
    monkeypatch.setattr("sys.argv", ["make_screenshots.py", "t5_cross_attention"])
    script.main()
    made = sorted(path.name for path in (tmp_path / "screenshots").iterdir())
    assert made == ["t5_cross_attention.svg"]
    svg = (tmp_path / "screenshots" / "t5_cross_attention.svg").read_text()
    assert svg.startswith("<svg") and "replay&#160;of&#160;t5_cross_attention.lmscope" in svg
    assert capsys.readouterr().out.strip().endswith("t5_cross_attention.svg")


@pytest.mark.slow  # two trainings and a run: about 20 s
def test_train_demo_t5_reproduces_its_model_bit_for_bit(tmp_path, capsys):
    """README, Models: ``python scripts/train_demo_t5.py`` reproduces the demo T5 bit for bit on the
    same machine and torch; here two tiny trainings (its own flags, a few steps) and the model they
    write opened by ``lmscope t5 --model``."""
    tiny = ("--train-size", "400", "--heldout-size", "4", "--steps", "3", "--batch", "8", "--d-model", "16",
            "--d-ff", "32", "--layers", "1", "--heads", "2")
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_demo_t5.py"), "--out", str(tmp_path / name),
                               *tiny], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for file in ("model.safetensors", "tokenizer.json", "config.json", "heldout.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert main(["t5", "--model", str(tmp_path / "a"), "--prompt", "the dog sleeps", "--json",
                 "--max-new-tokens", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_make_screenshots_refuses_a_name_it_does_not_have(tmp_path, monkeypatch, capsys):
    """A misspelt NAME made nothing and exited 0; now it is one line naming the screenshots, exit 2."""
    script = load_screenshot_script(tmp_path, monkeypatch)
    monkeypatch.setattr("sys.argv", ["make_screenshots.py", "t5_cross_attention", "llama_sampling_typo"])
    with pytest.raises(SystemExit) as done:
        script.main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and "no screenshot named llama_sampling_typo" in err and "llama_sampling," in err
    assert not (tmp_path / "screenshots" / "t5_cross_attention.svg").exists()


def load_training_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_demo_t5", ROOT / "scripts" / "train_demo_t5.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_demo_t5", script)
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # it imports demo_t5_grammar beside it
    spec.loader.exec_module(script)
    return script


def test_train_demo_t5_batches_fewer_pairs_than_fifty_batches(monkeypatch):
    """``--train-size`` below 50 batches looped forever without a batch (a run of 50 batches found
    none); now they make one run, every pair once an epoch."""
    import random

    script = load_training_script(monkeypatch)
    src = [[i + 1] * (1 + i % 3) for i in range(30)]
    batches = script.batches(src, src, 8, random.Random(0))
    epoch = [next(batches) for _ in range(3)]  # 30 pairs: 3 whole batches of 8
    assert all(inputs.shape[0] == 8 for inputs, _ in epoch)
    seen = sorted(int(row[0]) for inputs, _ in epoch for row in inputs)
    assert len(set(seen)) == 24 and all(1 <= value <= 30 for value in seen)


def test_train_demo_t5_refuses_fewer_pairs_than_a_batch(monkeypatch, capsys):
    script = load_training_script(monkeypatch)
    with pytest.raises(SystemExit) as done:
        script.parse_args(["--train-size", "10", "--batch", "64"])
    assert done.value.code == 2 and "must hold at least one --batch" in capsys.readouterr().err
