"""``--break`` on the command line stops at the first step where the expression holds in a full run."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from lmscope.cli import main

ARGS = ["--prompt", "the quick brown fox", "--max-new-tokens", "16", "--do-sample", "--temperature", "1.6",
        "--top-p", "0.95", "--seed", "3"]


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture(scope="module")
def full_run(tiny_llama_dir):
    """The whole run's JSON lines and each step's fields, computed here from the JSON alone."""
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["llama", "--model", str(tiny_llama_dir), "--json", *ARGS]) == 0
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    values, text = [], ""
    for line in lines:
        text += line["token"]
        final, raw = line["stages"][-1], line["stages"][0]
        values.append({
            "step": line["step"], "id": line["token_id"], "token": line["token"], "text": text,
            "p": line["chosen"]["prob"], "margin": final["top"][0]["prob"] - final["top"][1]["prob"],
            "entropy": final["entropy"], "rank": line["chosen"]["raw_rank"],
            "flip": raw["top"][0]["id"] != line["token_id"], "kept": final["kept"],
        })
    return lines, values


def expressions(values):
    """One expression per field, with the Python predicate that says where it holds."""
    middle = values[len(values) // 2]
    p_mid = statistics.median(v["p"] for v in values)
    margin_mid = statistics.median(v["margin"] for v in values)
    entropy_mid = statistics.median(v["entropy"] for v in values)
    kept_mid = statistics.median(v["kept"] for v in values)
    word = next(v["token"] for v in values[3:] if re.fullmatch(r"[ \w]+", v["token"]))
    tail = middle["text"][-3:]
    return {
        "step": ("step == 5", lambda v: v["step"] == 5),
        "id": (f"id == {middle['id']}", lambda v: v["id"] == middle["id"]),
        "token": (f"token == '{word}'", lambda v: v["token"] == word),
        "text": (f"text ~ '{re.escape(tail)}'", lambda v: re.search(re.escape(tail), v["text"]) is not None),
        "p": (f"p < {p_mid}", lambda v: v["p"] < p_mid),
        "margin": (f"margin <= {margin_mid}", lambda v: v["margin"] <= margin_mid),
        "entropy": (f"entropy > {entropy_mid}", lambda v: v["entropy"] > entropy_mid),
        "rank": ("rank > 1", lambda v: v["rank"] > 1),
        "flip": ("flip", lambda v: v["flip"]),
        "kept": (f"kept < {kept_mid}", lambda v: v["kept"] < kept_mid),
    }


@pytest.mark.parametrize("field", ["step", "id", "token", "text", "p", "margin", "entropy", "rank", "flip",
                                   "kept"])
def test_break_stops_at_the_first_step_where_it_holds(field, full_run, tiny_llama_dir, capsys):
    lines, values = full_run
    expr, holds = expressions(values)[field]
    expected = next(i for i, v in enumerate(values) if holds(v))  # each expression holds somewhere
    out = run(["llama", "--model", str(tiny_llama_dir), "--json", *ARGS, "--break", expr], capsys)
    got = [json.loads(line) for line in out.splitlines()]
    assert len(got) == expected + 1
    assert [g["token_id"] for g in got] == [line["token_id"] for line in lines[: expected + 1]]
    assert all("breakpoint" not in g for g in got[:-1])
    hit = got[-1]["breakpoint"]
    assert hit["expr"] == expr and field in hit["values"]
    assert hit["values"][field] == values[expected][field] or field == "margin"  # margin recomputed in floats
    if field == "margin":
        assert hit["values"]["margin"] == pytest.approx(values[expected]["margin"])


def test_break_with_headless_says_which_breakpoint_held(tiny_llama_dir, capsys):
    out = run(["llama", "--model", str(tiny_llama_dir), "--headless", *ARGS, "--break", "step == 99",
               "--break", "step == 2"], capsys)
    assert out.splitlines()[-1] == "breakpoint 2 `step == 2`: step=2 at step 2"


def test_break_that_never_holds_runs_to_the_end(full_run, tiny_llama_dir, capsys):
    lines, _ = full_run
    out = run(["llama", "--model", str(tiny_llama_dir), "--json", *ARGS, "--break", "p > 2"], capsys)
    assert len(out.splitlines()) == len(lines)


def test_bad_break_expression_is_one_line_and_exit_2(tiny_llama_dir, capsys):
    code = main(["llama", "--model", str(tiny_llama_dir), "--json", "--break", "p < 0.3 and"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == "lmscope: error: bad breakpoint `p < 0.3 and`: expected a value at column 12\n"


ESC_BREAK = "step == 1 or token == '\x1b[31m'"
"""A breakpoint whose quoted string holds a terminal escape (bash: ``--break $'... \\e[31m ...'``)."""


def test_a_terminal_escape_in_a_headless_hit_line_is_escaped(tiny_llama_dir, tmp_path, capsys):
    """The hit line quotes the expression: its ESC is written as ``\\x1b``, live and replayed;
    ``--json`` keeps the expression itself (JSON escapes it)."""
    record = tmp_path / "esc.lmscope"
    argv = ["llama", "--model", str(tiny_llama_dir), *ARGS, "--break", ESC_BREAK]
    live = run([*argv, "--headless", "--record", str(record)], capsys)
    last = live.splitlines()[-1]
    assert "\x1b" not in live and last.startswith("breakpoint 1 `step == 1 or token == '\\x1b[31m'`: step=1, token=")
    replayed = run(["open", str(record), "--headless"], capsys)
    assert "\x1b" not in replayed and replayed.splitlines()[-1] == last
    hit = json.loads(run([*argv, "--json"], capsys).splitlines()[-1])["breakpoint"]
    assert hit["expr"] == ESC_BREAK
