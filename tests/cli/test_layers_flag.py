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
