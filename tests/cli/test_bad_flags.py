"""Flags that once exited 1, were silently ignored or did harm: each is one `lmscope: error:` line, exit 2."""

from __future__ import annotations

import pytest

from lmscope import cli
from lmscope.cli import main
from lmscope.testing import make_session, write_trace


def fails(argv, capsys, *needles):
    """Run the CLI; it must exit 2 with exactly one stderr line, which holds every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_tui(monkeypatch):
    """The TUI must not open: a test that reaches it fails instead of taking the terminal."""
    def refuse(*args, **kwargs):
        raise AssertionError("the TUI was opened")

    monkeypatch.setattr(cli, "_run_app", refuse)
    monkeypatch.setattr("lmscope.tui.app.make_app", refuse)


@pytest.fixture
def trace(tmp_path):
    """A recorded 5-step session (no model)."""
    path = tmp_path / "t.lmscope"
    write_trace(path, make_session("llama", steps=5))
    return path


# D4, D5: text flags that are not valid UTF-8 (undecodable bytes reach Python as lone surrogates)

def test_bad_word_that_is_not_utf8(capsys):
    fails(["t5", "-p", "Hi", "--json", "--max-new-tokens", "2", "--bad-word", "\udcff"], capsys, "--bad-word", "UTF-8")


def test_stop_that_is_not_utf8(tiny_llama_dir, capsys):
    line = fails(["llama", "--model", str(tiny_llama_dir), "-p", "Hi", "--json", "--max-new-tokens", "2",
                  "--stop", "a\udcff"], capsys, "--stop", "UTF-8")
    assert "cannot be used with this model" not in line


def test_stop_that_no_token_can_end(tiny_llama_dir, capsys):
    """The tiny Llama's vocabulary has no line break: its vocabulary was said to be unreadable,
    though `--stop the` works with it."""
    argv = ["llama", "--model", str(tiny_llama_dir), "-p", "Hi", "--json", "--max-new-tokens", "2"]
    line = fails([*argv, "--stop", "\n"], capsys, "--stop '\\n': no token in this model's vocabulary can end it",
                 "could never produce it")
    assert "cannot read" not in line
    fails([*argv, "--stop", "\n", "--stop", "\t"], capsys, "'\\n', '\\t'", "can end any of them")
    fails(["t5", "--json", "--stop", "Tür"], capsys, "cannot read its tokenizer's vocabulary")  # word-level


# D6: a word outside a word-level vocabulary would have banned <unk>

def test_bad_word_outside_the_vocabulary(capsys):
    fails(["t5", "--json", "--max-new-tokens", "2", "--bad-word", "zzqxj"], capsys,
          "--bad-word 'zzqxj'", "vocabulary", "unknown token")
    fails(["t5", "--headless", "--max-new-tokens", "2", "--bad-word", "Frau", "--bad-word", "zzqxj"], capsys,
          "'zzqxj'", "vocabulary")
    assert main(["t5", "--json", "--max-new-tokens", "2", "--bad-word", "Frau"]) == 0  # a known word is banned


def test_bad_word_outside_the_vocabulary_in_the_tui(monkeypatch, capsys, terminal):
    """The TUI's load (headless here) ends with the same one line and exit 2."""
    from lmscope.tui.app import LmscopeApp

    async def give_up(pilot):  # should the load not fail, the test fails instead of waiting forever
        for _ in range(100):
            await pilot.pause(0.1)
            if pilot.app.return_code is not None:  # the app is ending by itself
                return
        pilot.app.exit()

    run = LmscopeApp.run
    monkeypatch.setattr(LmscopeApp, "run",
                        lambda self, **kwargs: run(self, headless=True, size=(100, 30), auto_pilot=give_up))
    fails(["t5", "--max-new-tokens", "2", "--bad-word", "zzqxj"], capsys, "'zzqxj'", "vocabulary")


# D9

def test_deeply_nested_break(capsys):
    line = fails(["t5", "--json", "--break", "(" * 5000 + "p<1" + ")" * 5000], capsys, "too deeply nested")
    assert len(line) < 300  # the expression is shortened in the message
    fails(["t5", "--json", "--break", "not " * 5000 + "flip"], capsys, "too deeply nested")


def test_break_on_margin_with_top_1(capsys, no_tui):
    """`margin` is best minus second-best, and --top 1 keeps no second-best: it read 0.152 where
    the margin was 0.0121, so `--break "margin < 0.05"` never stopped there."""
    fails(["t5", "--json", "--top", "1", "--break", "margin < 0.05"], capsys, "`margin` needs", "--top 2")
    fails(["t5", "--top", "1", "--break", "margin < 0.05"], capsys, "`margin` needs", "--top 2")  # the TUI's


def test_break_pattern_that_re_cannot_compile(capsys):
    """re raises OverflowError and RecursionError besides re.error: each was exit 1."""
    fails(["t5", "--json", "--break", "text ~ 'a{4294967296}'"], capsys, "bad pattern", "repetition number")
    fails(["t5", "--json", "--break", "text ~ '" + "(" * 3000 + "a" + ")" * 3000 + "'"], capsys,
          "bad pattern", "nested too deeply")


# D11, D12, D13, D17: `open --svg`'s path and size, checked before anything is rendered

def test_svg_path_that_is_a_folder_or_in_no_folder(trace, tmp_path, no_tui, capsys):
    fails(["open", str(trace), "--svg", str(tmp_path)], capsys, "--svg", "is a folder")
    fails(["open", str(trace), "--svg", str(tmp_path / "nodir" / "out.svg")], capsys, "--svg", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.lmscope"]


def test_svg_onto_the_recording_itself(trace, no_tui, capsys):
    before = trace.read_bytes()
    fails(["open", str(trace), "--svg", str(trace)], capsys, "--svg", "recording being opened")
    assert trace.read_bytes() == before


def test_svg_size_has_an_upper_bound(trace, tmp_path, no_tui, capsys):
    fails(["open", str(trace), "--svg", str(tmp_path / "o.svg"), "--size", "100000x100000"], capsys,
          "--size", "500x200")
    assert not (tmp_path / "o.svg").exists()


@pytest.mark.parametrize("size", ["\uff11\uff12\uff10x40", "120x\u0664\u0660", "\u00b9\u00b2\u2070x40"])
def test_svg_size_takes_ascii_digits_only(size, trace, tmp_path, no_tui, capsys):
    """As --step does: full-width (１２０x40) and Arabic-Indic digits were read as 120 and 40, and
    superscript ones (¹²⁰, which isdigit() passes and int() refuses) ended in a ValueError, exit 1."""
    for svg in (str(tmp_path / "o.svg"), "-"):
        fails(["open", str(trace), "--svg", svg, "--size", size], capsys, f"--size {size!r}", "COLUMNSxROWS")
    assert not (tmp_path / "o.svg").exists()


def test_empty_svg(trace, tmp_path, monkeypatch, no_tui, capsys):
    monkeypatch.chdir(tmp_path)
    fails(["open", str(trace), "--svg", ""], capsys, "--svg needs a file name")
    fails(["open", str(trace), "--svg="], capsys, "--svg needs a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.lmscope"]


# D14: --layers is a --json flag

def test_layers_without_json(no_tui, capsys):
    fails(["t5", "--layers"], capsys, "--layers", "pass --json too")
    fails(["t5", "--headless", "--layers", "--max-new-tokens", "2"], capsys, "--layers", "pass --json too")


# D15: `open`'s flags that its output would ignore

@pytest.mark.parametrize("flags, needles", [
    (["--attention"], ["--attention", "--json"]),
    (["--headless", "--attention"], ["--attention", "--json"]),
    (["--step", "2", "--json"], ["--step", "--svg"]),
    (["--tab", "kv"], ["--tab", "--svg"]),
    (["--size", "80x24", "--headless"], ["--size", "--svg"]),
    (["--size=120x40"], ["--size", "--svg"]),  # given explicitly, even at its default
])
def test_open_flags_without_their_output(trace, flags, needles, no_tui, monkeypatch, capsys):
    fails(["open", str(trace), *flags], capsys, *needles)
    # the same through typer, which reads what the fast path does not
    monkeypatch.setattr(cli, "_open_arguments", lambda args: None)
    fails(["open", str(trace), *flags], capsys, *needles)


def test_open_svg_still_renders(trace, tmp_path, capsys):
    assert main(["open", str(trace), "--svg", str(tmp_path / "o.svg"), "--step", "1", "--size", "80x24"]) == 0
    assert (tmp_path / "o.svg").read_text().startswith("<svg")


def test_open_svg_step_of_a_recording_without_steps(tmp_path, capsys):
    """A recording of the prompt alone (the TUI quit before any step) said "steps 0 to -1"."""
    path = tmp_path / "prompt-only.lmscope"
    write_trace(path, make_session("t5", steps=0))
    line = fails(["open", str(path), "--svg", str(tmp_path / "o.svg"), "--step", "0"], capsys,
                 "--step 0", "no steps", "leave --step out")
    assert "-1" not in line and not (tmp_path / "o.svg").exists()
    assert main(["open", str(path), "--svg", str(tmp_path / "o.svg")]) == 0  # the prompt alone renders


def test_open_svg_tab_cross_of_a_session_without_cross_attention(trace, tmp_path, capsys):
    """On a llama recording the app notified that cross-attention is T5's, and the SVG showed the
    attention tab under that notification, exit code 0."""
    for svg in (str(tmp_path / "o.svg"), "-"):
        fails(["open", str(trace), "--svg", svg, "--tab", "cross"], capsys, "--tab cross",
              "this is a llama session", "choose attention, kv, variables or layers")
    assert not (tmp_path / "o.svg").exists()


# `open`'s fast path read `--step=--1` as a number (its sign stripped more than once), and int() failed: exit 1

@pytest.mark.parametrize("step", ["--1", "---1", "--0"])
def test_open_step_with_more_than_one_minus(step, trace, no_tui, capsys):
    fails(["open", str(trace), "--json", f"--step={step}"], capsys, "Invalid value for '--step'")
    fails(["open", str(trace), "--svg", "-", f"--step={step}"], capsys, "Invalid value for '--step'")


# D16

def test_empty_record(tmp_path, monkeypatch, no_tui, capsys):
    """Refused with the flags (``check_record_flags``), before the run and any model."""
    def no_run(*args, **kwargs):
        raise AssertionError("the session ran")

    monkeypatch.setattr(cli, "_run", no_run)
    monkeypatch.chdir(tmp_path)
    fails(["t5", "--json", "--max-new-tokens", "2", "--record", ""], capsys, "--record needs a file name")
    fails(["t5", "--max-new-tokens", "2", "--record", ""], capsys, "--record needs a file name")
    assert list(tmp_path.iterdir()) == []


# D18

def test_no_arguments_prints_the_help(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    for command in ("llama", "t5", "open", "fetch"):
        assert command in captured.out


# D19: a file where a folder belongs

def test_model_that_is_a_file(tmp_path, capsys):
    model = tmp_path / "notamodel.bin"
    model.write_bytes(b"weights?")
    fails(["llama", "--json", "--model", str(model)], capsys, "is a file, not a model folder")


def test_cache_that_is_a_file(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("LMSCOPE_CACHE", str(cache))
    fails(["llama", "--json"], capsys, "is a file, not a folder", "LMSCOPE_CACHE")
    fails(["fetch"], capsys, "is a file, not a folder", "LMSCOPE_CACHE")
    assert cache.read_text() == "not a folder"


# click's usage errors say what to do, as click's own "Try 'lmscope t5 -h' for help." line did

@pytest.mark.parametrize("argv, wrong, command", [
    (["t5", "--bogus"], "No such option: --bogus", "lmscope t5"),
    (["t5", "--tmperature", "1"], "(Possible options: --temperature)", "lmscope t5"),
    (["open"], "Missing argument 'FILE'", "lmscope open"),
    (["t5", "--max-new-tokens", "abc"], "Invalid value for '--max-new-tokens'", "lmscope t5"),
    (["open", "x.lmscope", "--step", "abc"], "Invalid value for '--step'", "lmscope open"),
    (["t5", "--max-new-tokens"], "Option '--max-new-tokens' requires an argument", "lmscope t5"),  # no context
    (["llama", "--json=1"], "Option '--json' does not take a value", "lmscope llama"),
    (["fetch", "extra"], "Got unexpected extra argument(s) (extra)", "lmscope fetch"),
    (["bogus"], "No such command 'bogus'", "lmscope"),
    (["--bogus"], "No such option: --bogus", "lmscope"),
])
def test_a_usage_error_says_where_the_help_is(argv, wrong, command, no_tui, capsys):
    line = fails(argv, capsys, wrong)
    assert line.endswith(f"; try '{command} --help' for help"), line
    assert main([*command.split()[1:], "--help"]) == 0  # the help it names is there
    assert capsys.readouterr().err == ""


# an --offload-folder whose name the OS cannot look up ended with exit 1 (Path.exists raised)

def test_an_offload_folder_the_os_cannot_look_up(tmp_path, capsys):
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    argv = ["t5", "--json", "--max-new-tokens", "1", "--device-map", "auto", "--offload-folder"]
    fails([*argv, str(tmp_path / ("y" * 300))], capsys, "--offload-folder", "File name too long")
    fails([*argv, str(tmp_path / ("y" * 300) / "offload")], capsys, "File name too long")
    fails([*argv, "y" * 5000], capsys, "File name too long")
    fails([*argv, str(tmp_path / "loop1")], capsys, "--offload-folder", "symbolic links")
    fails([*argv, str(tmp_path / "loop1" / "offload")], capsys, "--offload-folder", "symbolic links")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop1", "loop2"]


# --max-memory cpu=0 or cpu=20 ran: a number without a unit was read as bytes, so every layer went
# to disk without a word (accelerate itself refuses such a string)

@pytest.mark.parametrize("budget, size", [("cpu=0", "0"), ("cpu=20", "20"), ("cpu=8GiB,disk=1.5", "1.5")])
def test_a_max_memory_size_without_a_unit_names_the_form(budget, size, capsys):
    argv = ["t5", "--json", "--max-new-tokens", "1", "--device-map", "auto", "--max-memory", budget]
    fails(argv, capsys, f"bad size {size!r} in --max-memory", "e.g. cpu=8GiB")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("budget, wrong", [("cpu=\u0663GiB", "bad size '\u0663GiB'"), ("cpu=\uff18GiB", "bad size"),
                                           ("\u0661=1GiB", "unknown device '\u0661'"),
                                           ("cuda:\u0661=1GiB", "unknown device 'cuda:\u0661'")])
def test_a_max_memory_number_takes_ascii_digits_only(budget, wrong, capsys):
    """As every other number lmscope reads: `cpu=\u0663GiB` was read as 3 GiB, `\u0661=1GiB` as cuda:1."""
    argv = ["t5", "--json", "--max-new-tokens", "1", "--device-map", "auto", "--max-memory", budget]
    fails(argv, capsys, wrong, "--max-memory")
    assert capsys.readouterr().out == ""
