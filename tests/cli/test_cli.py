"""The command line: headless output, JSON Lines schema, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmscope.cli import main


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_lines_schema(tiny_llama_dir, capsys):
    code, out, _ = run(["llama", "--model", str(tiny_llama_dir), "--prompt", "the quick", "--json",
                        "--max-new-tokens", "4", "--do-sample", "--top-k", "5", "--seed", "1"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 4
    first = lines[0]
    assert [s["name"] for s in first["stages"]] == ["logits", "TopKLogitsWarper"]
    assert set(first["stages"][0]["top"][0]) == {"id", "token", "score", "prob"}
    assert first["chosen"]["by"] == "sample" and first["chosen"]["id"] == first["token_id"]
    assert first["cache"]["total_bytes"] == sum(layer["bytes"] for layer in first["cache"]["layers"])
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    assert lines[-1]["finished"] and lines[-1]["finish_reason"] == "max_new_tokens"
    assert "attention" not in first


def test_json_attention_rows_for_t5(tiny_t5_dir, capsys):
    code, out, _ = run(["t5", "--model", str(tiny_t5_dir), "--prompt", "the dog", "--json", "--attention",
                        "--max-new-tokens", "2"], capsys)
    first = json.loads(out.splitlines()[0])
    assert code == 0
    assert first["cross_attention"]["kind"] == "cross"
    layers, heads, rows, keys = first["cross_attention"]["shape"]
    assert (layers, heads, rows) == (2, 4, 1) and keys == len(first["cross_attention"]["probs"][0][0][0])


def test_headless_table(tiny_t5_dir, capsys):
    code, out, _ = run(["t5", "--model", str(tiny_t5_dir), "--prompt", "the dog", "--headless",
                        "--max-new-tokens", "3"], capsys)
    assert code == 0
    assert "decoder starts from '<pad>' (id 0)" in out
    assert out.strip().endswith("[max_new_tokens]")


def test_headless_prob_is_the_chosen_tokens_exact_probability_outside_the_top(capsys):
    """The table's prob column printed `-` for a token sampled or forced outside the last stage's
    --top candidates, where --json prints its exact probability (and `p` reads it)."""
    flags = ["t5", "--prompt", "the woman laughs", "--do-sample", "--temperature", "3", "--seed", "1",
             "--top", "1", "--max-new-tokens", "6"]
    code, out, _ = run([*flags, "--json"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and any(line["token_id"] != line["stages"][-1]["top"][0]["id"] for line in lines)
    code, out, _ = run([*flags, "--headless"], capsys)
    rows = [row for row in out.splitlines() if row[:4].strip().isdigit()]
    assert code == 0 and len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert f" {line['chosen']['prob']:6.3f} {line['chosen']['by']:<6} " in row, row


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "the prompt is empty"),
    (["--do-sample", "--temperature", "0"], "--temperature must be > 0"),
    (["--do-sample", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-k", "5"], "--top-k only applies when sampling"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dtype", "int8"], "unknown dtype 'int8'"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "x"], "Invalid value for '--max-new-tokens'"),
    (["--bogus"], "No such option: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_llama_dir, capsys, args, message):
    code, out, err = run(["llama", "--model", str(tiny_llama_dir), "--json", *args], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("lmscope: error: ") and message in err


@pytest.mark.parametrize("prompt", [" ", "\n"])
def test_a_prompt_of_whitespace_is_text_to_generate_from(tiny_llama_dir, capsys, prompt):
    """A space or a line break is a prompt (as generate() takes it), not an empty one."""
    code, out, err = run(["llama", "--model", str(tiny_llama_dir), "--json", "--prompt", prompt,
                          "--max-new-tokens", "2"], capsys)
    assert code == 0 and err == "" and len(out.splitlines()) == 2


def test_a_prompt_that_encodes_to_no_token_is_one_line(tiny_llama_dir, tmp_path):
    """With a tokenizer that adds no token of its own (no start token) and a normalizer that
    strips spaces, a prompt of spaces reaches the model as nothing: refused, not a crash."""
    import shutil

    from tokenizers import Tokenizer, normalizers

    from lmscope.engine import models
    from lmscope.engine.errors import UserError
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper

    folder = tmp_path / "no-start-token"
    shutil.copytree(tiny_llama_dir, folder)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    raw.post_processor, raw.normalizer = None, normalizers.Strip()
    raw.save(str(folder / "tokenizer.json"))
    loaded = models.load(str(folder), "llama", device="cpu", dtype="float32")
    assert loaded.tokenizer("   ").input_ids == []
    stepper = Stepper(loaded, "   ", GenerationSettings(max_new_tokens=2))
    with pytest.raises(UserError, match="encodes to no token"):
        stepper.start()


def test_missing_model_and_wrong_family(tiny_llama_dir, tmp_path, capsys):
    code, _, err = run(["llama", "--model", str(tmp_path / "nothing"), "--json"], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run(["t5", "--model", str(tiny_llama_dir), "--json"], capsys)
    assert code == 2 and "run `lmscope llama`" in err


def test_unsupported_family(tmp_path, capsys):
    from transformers import BartConfig

    BartConfig(vocab_size=10, d_model=8, encoder_layers=1, decoder_layers=1).save_pretrained(tmp_path)
    code, _, err = run(["llama", "--model", str(tmp_path), "--json"], capsys)
    assert code == 2 and "model type 'bart' is not supported" in err and err.count("\n") == 1


def test_console_script_exit_code(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lmscope", "llama", "--model", str(tmp_path / "x"), "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_stop_flag_ends_the_run_at_the_stop_string(tiny_llama_dir, capsys):
    argv = ["llama", "--model", str(tiny_llama_dir), "--prompt", "the quick", "--json", "--max-new-tokens", "12"]
    _, free, _ = run(argv, capsys)
    text = "".join(json.loads(line)["token"] for line in free.splitlines())
    stop = text[len(text) // 2 :].strip()[:2]
    code, out, err = run(argv + ["--stop", stop], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert len(lines) < len(free.splitlines())
    assert lines[-1]["finish_reason"] == "stop_string"
    assert stop in "".join(line["token"] for line in lines)


def test_a_whitespace_stop_string_is_taken_as_it_is(tiny_llama_dir, capsys):
    """README: `--stop ' '` is not refused like `--stop ""` (a line break is the usual stop
    string, and it is whitespace too): generation ends at the first token that holds a space."""
    argv = ["llama", "--model", str(tiny_llama_dir), "--prompt", "the quick", "--json", "--max-new-tokens", "12"]
    _, free, _ = run(argv, capsys)
    tokens = [json.loads(line)["token"] for line in free.splitlines()]
    first = next(index for index, token in enumerate(tokens) if " " in token)
    code, out, err = run(argv + ["--stop", " "], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == "", err
    assert [line["token"] for line in lines] == tokens[:first + 1] and lines[-1]["finish_reason"] == "stop_string"


def test_bad_word_flag_bans_the_word_on_the_demo_t5(capsys):
    argv = ["t5", "--prompt", "the dog sleeps", "--json"]
    _, free, _ = run(argv, capsys)
    code, out, err = run(argv + ["--bad-word", "das", "--bad-word", "der"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert {" das", " der"}.isdisjoint(line["token"] for line in lines)
    assert "NoBadWordsLogitsProcessor" in [stage["name"] for stage in lines[0]["stages"]]
    assert json.loads(free.splitlines()[0])["token"] == " der"  # what the ban changed


@pytest.mark.parametrize("flag", ["--bad-word", "--stop"])
def test_an_empty_bad_word_or_stop_is_one_line_and_exit_2(flag, capsys):
    code, out, err = run(["t5", "--prompt", "the dog sleeps", flag, "", "--json"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == \
        f"lmscope: error: {flag} needs {'a word' if flag == '--bad-word' else 'text'}: it was given empty"


def test_stop_flag_on_a_word_level_tokenizer_is_one_line_and_exit_2(capsys):
    code, out, err = run(["t5", "--prompt", "the dog sleeps because the man opens the door", "--stop", "Tür",
                          "--json"], capsys)
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("lmscope: error: --stop cannot be used with this model") and err.count("lmscope:") == 1
