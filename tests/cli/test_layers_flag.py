"""``--json --layers``: one logit-lens object per decoder layer on every line."""

from __future__ import annotations

import json

import pytest

from lmscope.cli import main


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_json_layers(family, tiny_llama_dir, tiny_t5_dir, capsys):
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    code, out, _ = run([family, "--model", str(folder), "--prompt", "the quick", "--json", "--layers",
                        "--max-new-tokens", "3"], capsys)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    for line in lines:
        layers = line["layers"]
        assert [entry["layer"] for entry in layers] == [0, 1]  # both tiny models have 2 decoder layers
        for entry in layers:
            assert set(entry) == {"layer", "top", "chosen_prob", "chosen_rank", "entropy", "norm"}
            assert all(set(c) == {"id", "token", "prob"} for c in entry["top"])
            assert entry["top"][0]["prob"] >= entry["top"][-1]["prob"]
        # greedy: the last layer's lens is the logits, whose top token is the one chosen
        assert layers[-1]["top"][0]["id"] == line["token_id"] and layers[-1]["chosen_rank"] == 0
        assert layers[-1]["chosen_prob"] == pytest.approx(line["stages"][0]["top"][0]["prob"], abs=1e-5)


def test_json_without_layers_has_none(tiny_llama_dir, capsys):
    code, out, _ = run(["llama", "--model", str(tiny_llama_dir), "--json", "--max-new-tokens", "1"], capsys)
    assert code == 0 and "layers" not in json.loads(out.splitlines()[0])


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_open_json_layers_prints_what_the_live_run_printed(family, tiny_llama_dir, tiny_t5_dir, tmp_path, capsys):
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    path = str(tmp_path / "run.lmscope")
    argv = [family, "--model", str(folder), "--prompt", "the quick brown fox", "--max-new-tokens", "5",
            "--do-sample", "--seed", "3", "--break", "step == 3"]
    assert main([*argv, "--json", "--attention", "--layers", "--record", path]) == 0
    live = capsys.readouterr().out
    assert main(["open", path, "--json", "--attention", "--layers"]) == 0
    assert capsys.readouterr().out == live  # byte for byte: layers, then the breakpoint, as live
    lines = [json.loads(line) for line in live.splitlines()]
    assert len(lines) == 4 and all(len(line["layers"]) == 2 for line in lines)
    assert main(["open", path, "--json", "--layers"]) == 0
    without_rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        del line["attention"], line["cross_attention"]
    assert without_rows == lines
    assert main(["open", path, "--json"]) == 0  # not asked: not printed
    for line in lines:
        del line["layers"]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == lines


def test_open_json_layers_of_a_trace_without_a_lens_says_so_in_one_line(tiny_t5_dir, tmp_path, capsys):
    path = str(tmp_path / "run.lmscope")
    assert main(["t5", "--model", str(tiny_t5_dir), "--max-new-tokens", "2", "--json", "--record", path]) == 0
    capsys.readouterr()
    code, out, err = run(["open", path, "--json", "--layers"], capsys)
    assert code == 2 and out == ""
    assert err == (f"lmscope: error: {path!r} keeps no logit lens: record with --json --layers, or step into steps (s) "
                   "while the TUI records, to print layers from it\n")


def test_open_json_layers_of_a_trace_with_some_lenses_warns_and_prints_those(tmp_path, capsys):
    """A TUI recording keeps the lens of the steps the user stepped into, and only those."""
    from lmscope.testing import make_session, write_trace

    path = str(tmp_path / "tui.lmscope")
    write_trace(path, make_session("llama", steps=4), lens_steps=(1, 2))
    code, out, err = run(["open", path, "--json", "--layers"], capsys)
    assert code == 0
    assert [("layers" in json.loads(line)) for line in out.splitlines()] == [False, True, True, False]
    assert err == (f"lmscope: warning: {path!r}: the logit lens was recorded for 2 of 4 steps (those the TUI stepped "
                   "into): the other steps' lines have no \"layers\"\n")


@pytest.mark.parametrize("flags", [["--layers"], ["--headless", "--layers"], ["--svg", "x.svg", "--layers"]])
def test_open_layers_without_json_is_refused_as_the_live_command_refuses_it(flags, tmp_path, capsys):
    from lmscope.testing import make_session, write_trace

    path = str(tmp_path / "s.lmscope")
    write_trace(path, make_session("llama", steps=2), lens_steps=(0, 1))
    code, out, err = run(["open", path, *flags], capsys)
    assert code == 2 and out == ""
    assert err == "lmscope: error: --layers adds each layer's logit lens to --json output: pass --json too\n"


NO_STEP = "it holds the prompt and no step (the session ended before its first step): no step to print"


@pytest.mark.parametrize("flags", [["--json"], ["--json", "--layers"], ["--json", "--attention"], ["--headless"]])
def test_open_a_trace_of_the_prompt_alone_says_it_has_no_step(flags, tmp_path, capsys):
    """A TUI session quit before its first step records its prompt alone. ``--json`` prints a line
    per step, so none, ``--layers`` too (no step lacks its lens); that it printed nothing and said
    nothing, exit code 0, read as a file that failed to open."""
    from lmscope.testing import make_session, write_trace

    path = str(tmp_path / "prompt.lmscope")
    write_trace(path, make_session("t5", steps=0))
    code, out, err = run(["open", path, *flags], capsys)
    assert code == 0
    assert out.startswith("prompt (") if "--headless" in flags else out == ""
    assert err == f"lmscope: warning: {path!r}: {NO_STEP}\n"


def test_a_trace_cut_short_after_its_prompt_says_so_once(tmp_path, capsys):
    """The tail's warning already says why no step follows: one line, not two."""
    from lmscope.testing import make_session, write_trace

    path = tmp_path / "cut.lmscope"
    write_trace(path, make_session("t5", steps=1))
    path.write_bytes(path.read_bytes()[:-10])  # the one step cut short
    code, out, err = run(["open", str(path), "--json", "--layers"], capsys)
    assert code == 0 and out == ""
    assert err.count("\n") == 1 and "cut short" in err and NO_STEP not in err


def test_a_trace_with_steps_prints_no_such_warning(tmp_path, capsys):
    from lmscope.testing import make_session, write_trace

    path = str(tmp_path / "steps.lmscope")
    write_trace(path, make_session("t5", steps=2), lens_steps=(0, 1))
    code, out, err = run(["open", path, "--json", "--layers"], capsys)
    assert code == 0 and len(out.splitlines()) == 2 and err == ""


def svg_text(path) -> str:
    """The screen's text in an SVG Textual saved (one ``<text>`` element per run of a style)."""
    import html
    import re

    return html.unescape(" ".join(re.findall(r">([^<]*)</text>", path.read_text()))).replace("\xa0", " ")


def test_open_svg_tab_layers_shows_the_recorded_lens(tmp_path, capsys):
    """``--tab layers`` brings the Layers tab to the front, as key 5 does: the lens recorded with
    the selected step once its worker has read it, or the pane's word that none was recorded."""
    from lmscope.testing import make_session, write_trace

    path = tmp_path / "tui.lmscope"
    session = write_trace(path, make_session("llama", steps=4), lens_steps=(1,))
    with_lens, without = tmp_path / "lens.svg", tmp_path / "none.svg"
    assert main(["open", str(path), "--svg", str(with_lens), "--tab", "layers", "--step", "1"]) == 0
    assert main(["open", str(path), "--svg", str(without), "--tab", "layers", "--step", "2"]) == 0
    assert capsys.readouterr().err == ""
    shown = svg_text(with_lens)
    last = session.info.layers - 1
    assert f"step 2 · chose {session.steps[1].token!r} · layer 0/{last}" in shown and "the recorded lens" in shown
    assert "keeps no logit lens for this step" in svg_text(without)
