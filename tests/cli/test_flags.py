"""Every generation flag the README names, run through the command line and checked against
``model.generate`` given the same setting under its GenerationConfig name."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lmscope.cli import main
from lmscope.engine import models

PROMPT = "the quick brown fox"

# flag arguments -> generate keyword arguments (the oracle), seed for sampling runs
FLAG_CASES = {
    "min-new-tokens": (["--min-new-tokens", "6"], {"min_new_tokens": 6}, None),
    "repetition-penalty": (["--repetition-penalty", "1.5"], {"repetition_penalty": 1.5}, None),
    "no-repeat-ngram-size": (["--no-repeat-ngram-size", "2"], {"no_repeat_ngram_size": 2}, None),
    "temperature-top-k-top-p": (["--do-sample", "--temperature", "0.8", "--top-k", "30", "--top-p", "0.9"],
                                {"do_sample": True, "temperature": 0.8, "top_k": 30, "top_p": 0.9}, 4),
    "min-p": (["--do-sample", "--min-p", "0.1"], {"do_sample": True, "min_p": 0.1}, 3),
    "typical-p": (["--do-sample", "--typical-p", "0.7"], {"do_sample": True, "typical_p": 0.7}, 7),
}


def run_json(argv, capsys) -> list[dict]:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines()]


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_dir):
    return models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_generation_flag_matches_generate(case, tiny_llama, tiny_llama_dir, capsys):
    flags, oracle_kwargs, seed = FLAG_CASES[case]
    seed_flags = ["--seed", str(seed)] if seed is not None else []
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json",
                      "--max-new-tokens", "10", *flags, *seed_flags], capsys)
    ids = tiny_llama.tokenizer(PROMPT, return_tensors="pt").input_ids
    if seed is not None:
        torch.manual_seed(seed)
    out = tiny_llama.model.generate(ids, max_new_tokens=10, **oracle_kwargs)
    assert [line["token_id"] for line in lines] == out[0, ids.shape[1]:].tolist()
    names = [stage["name"] for stage in lines[0]["stages"]]
    assert len(names) > 1, "the flag must add its processor"


def test_top_sets_candidates_per_stage(tiny_llama_dir, capsys):
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json",
                      "--max-new-tokens", "2", "--top", "3"], capsys)
    assert all(len(stage["top"]) == 3 for line in lines for stage in line["stages"])


def test_prefill_rows_bounds_the_prompt_rows(tiny_llama_dir):
    from lmscope.engine.session import SessionOptions, open_session

    options = SessionOptions(family="llama", prompt=PROMPT, model=str(tiny_llama_dir), device="cpu",
                             prefill_rows=2)
    prompt = open_session(options).start()
    assert prompt.attention.probs.shape[2] == 2
    assert prompt.attention.query_start == len(prompt.input_ids) - 2


def test_prefill_rows_flag_runs(tiny_llama_dir, capsys):
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json", "--attention",
                      "--max-new-tokens", "2", "--prefill-rows", "1"], capsys)
    assert len(lines) == 2 and lines[1]["attention"]["shape"][2] == 1


@pytest.mark.integration
def test_chat_flag_applies_the_chat_template(capsys):
    """``--chat`` on the default SmolLM2: the answer to the default question names Paris."""
    lines = run_json(["llama", "--chat", "--json", "--max-new-tokens", "12"], capsys)
    assert "Paris" in "".join(line["token"] for line in lines)


@pytest.mark.parametrize("device, dtype, loaded", [
    ("cpu", "float32", "float32"), ("cpu", "bfloat16", "bfloat16"), ("cpu", "float16", "float16"),
    ("auto", "auto", "float32"),  # auto: CUDA when there is one, float32 on the CPU
])
def test_device_and_dtype_flags_load_as_asked(device, dtype, loaded, tiny_llama_dir, capsys):
    if device == "auto" and torch.cuda.is_available():
        loaded = "bfloat16"
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json",
                      "--max-new-tokens", "2", "--device", device, "--dtype", dtype], capsys)
    assert len(lines) == 2
    assert {layer["dtype"] for layer in lines[0]["cache"]["layers"]} == {loaded}
    on = {layer["device"] for layer in lines[0]["cache"]["layers"]}
    assert on == ({"cuda:0"} if device == "auto" and torch.cuda.is_available() else {"cpu"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="--device cuda needs a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_flag_loads_on_the_gpu_in_bfloat16(device, tiny_llama_dir, capsys):
    """``--device cuda`` (or ``cuda:N``), with ``--dtype auto``: bfloat16 on the GPU."""
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json",
                      "--max-new-tokens", "2", "--device", device], capsys)
    assert {(layer["device"], layer["dtype"]) for layer in lines[0]["cache"]["layers"]} == {("cuda:0", "bfloat16")}


def test_row_writes_setting_runs_either_way_with_the_same_output(tiny_llama_dir, monkeypatch, capsys, direct_fds):
    """``LMSCOPE_ROW_WRITES``: a long prompt's rows (409,600 bytes a layer) go straight to the
    disk by default, and through the page cache with ``buffered``; the output is the same (the
    steps' times aside)."""
    import os

    from lmscope.engine import row_store

    probe = row_store.RowStore(direct=True)
    probe.reserve((1,))
    if not probe.writes_directly:
        pytest.skip("the temporary directory's file system refuses O_DIRECT")
    direct_writes, pwrite = [], os.pwrite

    def pwrite_recorded(fd, data, offset):
        if fd in direct_fds:
            direct_writes.append(offset)
        return pwrite(fd, data, offset)

    monkeypatch.setattr(row_store.os, "pwrite", pwrite_recorded)
    argv = ["llama", "--model", str(tiny_llama_dir), "--prompt", " ".join([PROMPT] * 40), "--json",
            "--attention", "--max-new-tokens", "3", "--prefill-rows", "200"]
    outputs = {}
    for setting in ("buffered", "direct"):
        monkeypatch.setenv("LMSCOPE_ROW_WRITES", setting)
        direct_fds.clear()
        direct_writes.clear()
        outputs[setting] = [{key: value for key, value in line.items() if key != "elapsed_s"}
                            for line in run_json(argv, capsys)]
        assert (len(direct_writes) > 1) is (setting == "direct")  # more than each chunk's probe
    assert outputs["direct"] == outputs["buffered"] and len(outputs["direct"]) == 3


def test_short_prompt_flag_is_the_prompt(tiny_llama_dir, capsys):
    """``-p`` is ``--prompt``: the same prompt tokens and the same run, another prompt another run."""

    def run(*prompt_flags):
        code = main(["llama", "--model", str(tiny_llama_dir), "--headless", "--max-new-tokens", "3", *prompt_flags])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.out.splitlines()

    short = run("-p", PROMPT)
    assert short == run("--prompt", PROMPT)
    assert short[0] == "prompt (5 tokens): '<s>' 'the' ' quick' ' brown' ' fox'"
    assert run("-p", "the lazy dog")[0] != short[0]


CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant:{% endif %}")


@pytest.fixture(scope="module")
def tiny_chat_llama_dir(tiny_llama_dir, tmp_path_factory):
    """The tiny Llama with a chat template of its own (the tiny tokenizer has none)."""
    import shutil

    folder = tmp_path_factory.mktemp("tiny-chat-llama") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder


def test_chat_flag_wraps_the_prompt_in_the_chat_template(tiny_chat_llama_dir, capsys):
    """``--chat`` on a prompt of one's own: the prompt is the template's, and the tokens are what
    ``generate`` makes from the template's ids; without it the prompt is used as it is."""
    argv = ["llama", "--model", str(tiny_chat_llama_dir), "--prompt", PROMPT, "--max-new-tokens", "6"]
    lines = run_json([*argv, "--json", "--chat"], capsys)
    loaded = models.load(str(tiny_chat_llama_dir), "llama", device="cpu", dtype="float32")
    ids = loaded.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)["input_ids"]
    out = loaded.model.generate(ids, max_new_tokens=6, do_sample=False)
    assert [line["token_id"] for line in lines] == out[0, ids.shape[1]:].tolist()

    def prompt_line(*flags):
        assert main([*argv, "--headless", *flags]) == 0
        return capsys.readouterr().out.splitlines()[0]

    tokens = " ".join(repr(token.replace("Ġ", " ")) for token in loaded.tokenizer.convert_ids_to_tokens(ids[0]))
    assert prompt_line("--chat") == f"prompt ({ids.shape[1]} tokens): {tokens}"
    assert prompt_line() == "prompt (5 tokens): '<s>' 'the' ' quick' ' brown' ' fox'"


@pytest.mark.parametrize("command, shown", [
    ([], ["llama", "t5", "open", "fetch"]),
    (["llama"], ["Run", "Model and device", "Generation (GenerationConfig names)", "Debugger", "Output",
                 "Example: lmscope llama --chat -p"]),
    (["t5"], ["Generation (GenerationConfig names)", "Debugger", "Example: lmscope t5 -p"]),
    (["open"], ["--svg", "--tab", "Example: lmscope open run.lmscope --json --attention"]),
    (["fetch"], ["Prepare the offline default Llama"]),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_flag_prints_the_grouped_flags_and_an_example(command, shown, flag, monkeypatch, capsys):
    """``--help`` (or ``-h``): exit 0, the commands or the flags in their groups, and the example."""
    monkeypatch.setenv("COLUMNS", "100")  # rich wraps the help to the terminal's width
    code = main([*command, flag])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    for text in shown:
        assert text in captured.out, text


@pytest.mark.parametrize("command", [[], ["llama"], ["open"]])
@pytest.mark.parametrize("columns, drawn", [("0", 50), ("3", 50), ("5", 50), ("49", 50), ("51", 51), ("100", 100)])
def test_help_is_drawn_at_least_50_columns_wide(command, columns, drawn, monkeypatch, capsys):
    """COLUMNS=0 to 5 drew the help one character per line; a wider terminal keeps its width."""
    monkeypatch.setenv("COLUMNS", columns)
    assert main([*command, "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) == drawn
    assert any("--help" in line for line in lines) and any("Usage: lmscope" in line for line in lines)
    assert os.environ["COLUMNS"] == columns  # raised while the help is drawn only


def tui_driver(keys: tuple[str, ...], seen: dict):
    """A stand-in for ``cli._run_app``: runs the app the command built without a terminal, presses
    ``keys`` (each after the engine's work is done), keeps what the app shows in ``seen``, quits."""
    import asyncio

    async def drive(tui) -> None:
        async with tui.run_test(size=(120, 40)) as pilot:
            await tui.workers.wait_for_complete()
            await pilot.pause()
            for key in keys:
                await pilot.press(key)
                await tui.workers.wait_for_complete()
                await pilot.pause()
            seen.update(steps=len(tui.view.steps), state=tui.view.state, notice=tui.view.notice,
                        breakpoints=[entry.breakpoint.expr for entry in tui.breakpoint_entries],
                        notes=[note.message for note in tui._notifications])
            await pilot.press("q")
            await pilot.pause()

    return lambda tui: asyncio.run(drive(tui))


def test_record_flag_records_what_the_tui_runs(tiny_t5_dir, tmp_path, monkeypatch):
    """``lmscope t5 --record FILE`` without ``--json``: the TUI runs, and every step it made is in
    the file; ``w`` says where the recording already is."""
    from lmscope import cli
    from lmscope.engine.trace_reader import Trace

    seen: dict = {}
    monkeypatch.setenv("TQDM_DISABLE", "1")  # the command sets it for the app's sake
    monkeypatch.setattr(cli, "_run_app", tui_driver(("c", "w"), seen))
    path = tmp_path / "tui.lmscope"
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--max-new-tokens", "5",
                 "--min-new-tokens", "5", "--record", str(path)]) == 0
    assert seen["steps"] == 5 and seen["state"] == "finished"
    assert f"the session is being recorded to {str(path)!r} as it runs" in seen["notes"]
    trace = Trace(path)
    assert len(trace) == 5 and trace.step(4).finish_reason == "max_new_tokens"
    assert trace.step(0).cross_attention is not None


def test_break_flag_sets_the_tuis_breakpoints(tiny_t5_dir, monkeypatch):
    """README, Debugger control: "``--break`` sets them from the command line": ``c`` in the TUI
    stops after the first step where the expression holds, as ``b`` would have made it."""
    from lmscope import cli

    seen: dict = {}
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(cli, "_run_app", tui_driver(("c",), seen))
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", PROMPT, "--max-new-tokens", "6",
                 "--min-new-tokens", "6", "--break", "step == 2"]) == 0
    assert seen["breakpoints"] == ["step == 2"]
    assert seen["steps"] == 3 and seen["notice"].startswith("breakpoint 1 `step == 2`")


def test_a_one_token_prompt_is_one_token():
    from lmscope.headless import describe_prompt
    from lmscope.testing import make_prompt

    from dataclasses import replace

    prompt = make_prompt("llama")
    one = replace(prompt, input_ids=prompt.input_ids[:1], input_tokens=prompt.input_tokens[:1])
    assert describe_prompt(one).startswith("prompt (1 token): '<s>'\n")
    assert describe_prompt(prompt).startswith(f"prompt ({len(prompt.input_ids)} tokens): '<s>'")
