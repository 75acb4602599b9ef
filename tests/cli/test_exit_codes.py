"""How a run ends when it is cut off, its reader goes away, or it has no terminal: the exit code
says so (130, 143, 141, 2), never 0 for a run that did not finish, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import typer

from lmscope import cli
from lmscope.cli import main

T5 = ["t5", "--max-new-tokens", "2"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: ") and "Traceback" not in err, err
    return lines[0]


def test_ctrl_c_during_a_headless_run_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lmscope.headless.run_headless", interrupted)
    assert main([*T5, "--json"]) == 130


@pytest.mark.parametrize("code", [130, 143])
def test_a_signal_that_ends_the_tui_keeps_its_exit_code(code, monkeypatch):
    def ended_by_signal(tui):
        raise typer.Exit(code)  # what _run_app raises when the app left on SIGINT or SIGTERM

    monkeypatch.setattr(cli, "_run_app", ended_by_signal)
    assert main(T5) == code


def test_a_reader_that_goes_away_ends_the_run_quietly(monkeypatch, capsys):
    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("lmscope.headless.run_headless", closed)
    assert main([*T5, "--json"]) == cli.SIGPIPE_EXIT
    assert capsys.readouterr().err == ""


def test_the_tui_without_a_terminal_is_one_line_and_exit_2(capsys):
    # Under pytest stdin is not a terminal, as under `lmscope t5 < /dev/null | cat`.
    assert not sys.stdin.isatty()
    assert main(T5) == 2
    assert "the TUI needs a terminal" in one_error_line(capsys)


OVERFLOWING = ["--do-sample", "--temperature", "1e-30", "--repetition-penalty", "1e-9", "--seed", "1"]
"""Each value passes its own check; together the demo T5's first step overflows float32 (bad input)."""


def step_then_quit(monkeypatch) -> None:
    """The TUI runs headless, steps once (``n``) and quits (``q``) once that step has ended."""
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import LmscopeApp

    async def step_once(pilot):
        await wait_until_idle(pilot)
        await pilot.press("n")
        await wait_until_idle(pilot)
        assert pilot.app.view.state == "error"
        await pilot.press("q")

    run = LmscopeApp.run
    monkeypatch.setattr(LmscopeApp, "run",
                        lambda self, **kwargs: run(self, headless=True, size=(100, 30), auto_pilot=step_once))


def broken_step(monkeypatch) -> None:
    """Every step of the Stepper fails as a model's own error would (not bad input)."""
    def step(self, *args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (fake)")

    monkeypatch.setattr("lmscope.engine.stepper.Stepper.step", step)


@pytest.mark.parametrize(("flags", "break_it", "code"), [(OVERFLOWING, None, 2), ([], broken_step, 1)])
def test_a_failed_step_ends_the_tui_as_it_ends_headless(flags, break_it, code, monkeypatch, capsys, terminal):
    """A step that fails: ``--headless`` ends with the error's line and its exit code (bad input
    2, anything else 1); the TUI stays open on it, and once quit, ends with the same line and code.
    Before: the TUI quit with exit code 0 and said nothing (the notification left with the screen)."""
    if break_it is not None:
        break_it(monkeypatch)
    assert main([*T5, *flags, "--headless"]) == code
    headless_line = one_error_line(capsys)
    step_then_quit(monkeypatch)
    assert main([*T5, *flags]) == code
    assert one_error_line(capsys) == headless_line


@pytest.mark.parametrize("command", [
    ["t5", "--json", "--max-new-tokens", "24"],
    ["llama", "--help"],  # printed by rich, which exits 1 on a closed pipe itself
])
def test_a_closed_pipe_in_a_real_process_exits_141_quietly(command, tmp_path):
    """`lmscope t5 --json | head -c 100`: the shell sees 141, as for `yes | head`, and stderr is
    empty. The pipe's reading end is closed before the process starts, so every write meets it
    (with `head` the first writes may fit in the pipe before it exits)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = subprocess.run([sys.executable, "-m", "lmscope", *command], stdout=write_end, stderr=subprocess.PIPE,
                             cwd=tmp_path, timeout=120, env={**os.environ, "COLUMNS": "100"})
    finally:
        os.close(write_end)
    assert run.returncode == cli.SIGPIPE_EXIT and run.stderr == b"", run.stderr


def test_sigint_in_a_real_headless_process_exits_130(tmp_path):
    """A real SIGINT (Ctrl+C) during a long --json run: exit 130 and the steps printed so far."""
    process = subprocess.Popen([sys.executable, "-m", "lmscope", "t5", "--json", "--max-new-tokens", "100000",
                                "--min-new-tokens", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = process.stdout.readline()  # the model is loaded and stepping
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert first.startswith(b"{") and process.returncode == 130, err


def test_sigterm_in_a_real_headless_process_exits_143_with_whole_lines(tmp_path):
    """README, Other exit codes: 143 for SIGTERM, and the lines printed before it whole. The
    reader lags here (it reads nothing for half a second), so the pipe is full and a write is
    waiting when the signal comes. With SIGTERM's default action the process died by the signal
    (-15 to its parent; only a shell says 143), and a line longer than the pipe's atomic write
    (these are 4.3 kB) could be cut short where part of it fit; now the run ends through the
    CLI's way out, after the line it is printing (``streams.print_line``). Ctrl+C the same."""
    process = subprocess.Popen([sys.executable, "-m", "lmscope", "t5", "--json", "--max-new-tokens", "100000",
                                "--min-new-tokens", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=tmp_path)
    first = process.stdout.readline()  # the model is loaded and stepping
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    # Read on from the same buffered reader: communicate() reads the pipe itself, and would lose
    # what readline() had read ahead.
    out, err = process.stdout.read(), process.stderr.read()
    assert process.wait(timeout=60) == 128 + signal.SIGTERM == 143 and err == b"", err
    lines = (first + out).decode().splitlines()
    assert len(lines) >= 2 and [json.loads(line)["step"] for line in lines] == list(range(len(lines)))


@pytest.mark.parametrize("output", ["--json", "--headless"])
def test_a_stdout_that_takes_no_utf8_gets_escapes_not_exit_1(output, tmp_path):
    """`PYTHONIOENCODING=ascii` (or a C locale with UTF-8 mode off): the demo T5's ' Tür'
    candidate ended the run with a UnicodeEncodeError. --json stays JSON, with the same tokens."""
    argv = [sys.executable, "-m", "lmscope", "t5", output, "--max-new-tokens", "2"]
    ascii_run = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120,
                               env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert ascii_run.returncode == 0 and ascii_run.stderr == b"", ascii_run.stderr
    text = ascii_run.stdout.decode("ascii")
    if output == "--json":
        utf8_run = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120,
                                  env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        def tokens(lines):  # what the steps chose and saw (not their timings)
            return [(step["token"], step["stages"]) for step in map(json.loads, lines)]

        assert tokens(text.splitlines()) == tokens(utf8_run.stdout.decode("utf-8").splitlines())
        assert "T\\u00fcr" in text
    else:
        assert "T\\xfcr" in text


def test_escaped_table_rows_keep_their_columns():
    """With a stdout that takes no UTF-8 the table's tokens were padded before the stream escaped
    them, so a row with ' Tür' ran three columns past the others; now they are escaped first."""
    from dataclasses import replace

    from lmscope.headless import table_row
    from lmscope.testing import make_session

    record = make_session("llama", steps=1).steps[0]
    rows = [table_row(replace(record, token=token), escaped=True) for token in (" Tür", " Tag")]
    assert "' T\\xfcr'" in rows[0] and rows[0].isascii()
    assert len(rows[0]) == len(rows[1]) and rows[0].index(record.chosen_by) == rows[1].index(record.chosen_by)
    assert table_row(replace(record, token=" Tür")).startswith(table_row(record)[:4] + "  ' Tür'")
