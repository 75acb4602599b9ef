"""Every generation flag the README names, run through the command line and checked against
``model.generate`` given the same setting under its GenerationConfig name."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_device_and_dtype_flags_load_as_asked(dtype, tiny_llama_dir, capsys):
    lines = run_json(["llama", "--model", str(tiny_llama_dir), "--prompt", PROMPT, "--json",
                      "--max-new-tokens", "2", "--device", "cpu", "--dtype", dtype], capsys)
    assert len(lines) == 2
    assert {layer["dtype"] for layer in lines[0]["cache"]["layers"]} == {dtype}


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
