"""``lmscope open FILE``: what the command does before the app takes over."""

from __future__ import annotations

import gc
import inspect

import pytest
import typer

from lmscope import cli
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_session, write_trace


def test_open_runs_the_app_with_automatic_collection_on(tmp_path, monkeypatch):
    """Collection is off only while the app's modules are imported; what they made is frozen (kept
    out of later collections: it all lives as long as the app)."""
    session = make_session("llama", steps=2)
    writer = TraceWriter(tmp_path / "s.lmscope")
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    writer.close()
    seen = []
    monkeypatch.setattr(cli, "_run_app", lambda tui: seen.append((type(tui).__name__, gc.isenabled(),
                                                                  gc.get_freeze_count())))
    gc.unfreeze()
    try:
        assert gc.isenabled() and cli.main(["open", str(tmp_path / "s.lmscope")]) == 0
    finally:
        gc.unfreeze()
    assert [(name, enabled) for name, enabled, _ in seen] == [("LmscopeApp", True)] and seen[0][2] > 0
    assert gc.isenabled()


@pytest.mark.parametrize("output", [[], ["--json"], ["--headless"]])
def test_open_called_in_a_process_leaves_no_object_frozen(tmp_path, monkeypatch, output):
    """``main(["open", ...])`` from Python (a test, a script) hands back a process whose garbage
    is collected as before: what the command froze for its run is unfrozen when it returns."""
    write_trace(tmp_path / "s.lmscope", make_session("llama", steps=2))
    monkeypatch.setattr(cli, "_run_app", lambda tui: None)
    gc.unfreeze()
    assert cli.main(["open", str(tmp_path / "s.lmscope"), *output]) == 0
    assert gc.get_freeze_count() == 0


def typer_params(argv):
    """What typer would call ``open_trace`` with (its click context), or the error it raises."""
    command = typer.main.get_command(cli.app).commands["open"]
    try:
        return command.make_context("open", list(argv[1:])).params
    except (typer.Exit, Exception) as error:  # noqa: BLE001 - usage errors, --help
        return type(error).__name__


def test_the_open_flags_are_typers():
    """Every option of ``open`` is read by the fast path, with typer's parameter and kind."""
    command = typer.main.get_command(cli.app).commands["open"]
    options = {opt: (param.name, param.is_flag) for param in command.params if not param.name == "file"
               for opt in param.opts}
    assert options == {flag: (name, kind is bool) for flag, (name, kind) in cli._OPEN_OPTIONS.items()}


@pytest.mark.parametrize("argv", [
    ["open", "s.lmscope"], ["open", "s.lmscope", "--json", "--attention"], ["open", "--headless", "s.lmscope"],
    ["open", "s.lmscope", "--svg", "o.svg", "--step", "3", "--tab", "kv", "--size", "80x24"],
    ["open", "s.lmscope", "--svg=o.svg", "--step=12", "--tab=cross"], ["open", "s.lmscope", "--step=-2"],
    ["open", "my file.lmscope", "--svg="],
])
def test_plain_arguments_are_read_as_typer_reads_them(argv):
    expected = {name: param.default for name, param in inspect.signature(cli.open_trace).parameters.items()}
    assert {**expected, **cli._open_arguments(argv)} == typer_params(argv)


@pytest.mark.parametrize("argv", [
    ["open"], ["open", "--help"], ["open", "-h"], ["open", "s.lmscope", "--help"], ["open", "a", "b"],
    ["open", "s.lmscope", "--json", "--json"], ["open", "s.lmscope", "--json=yes"], ["open", "s.lmscope", "--step"],
    ["open", "s.lmscope", "--step", "three"], ["open", "s.lmscope", "--step", "-2"], ["open", "s.lmscope", "--tab"],
    ["open", "s.lmscope", "--step", "\u0663"], ["open", "s.lmscope", "--step=\uff13"],  # digits typer refuses
    ["open", "s.lmscope", "--svg", "--json"], ["open", "s.lmscope", "--nope"], ["open", "--", "s.lmscope"],
    ["llama", "--max-new-tokens", "3"], [],
])
def test_anything_else_goes_to_typer(argv):
    assert cli._open_arguments(argv) is None


def test_a_bad_open_flag_is_still_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["open", str(tmp_path / "s.lmscope"), "--step", "three"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmscope: error: ") and len(err.strip().splitlines()) == 1 and "--step" in err
