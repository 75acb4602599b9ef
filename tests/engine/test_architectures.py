"""Every architecture lmscope names as supported, stepped against transformers' own generate().

The README and the refusal line name Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Phi-3, mT5 and ByT5
besides Llama and T5, and lmscope takes UMT5 as T5; T5 v1.1 (FLAN-T5's architecture), Gemma 3
and 4 and gpt-oss are here too. Each is built tiny and random (no downloads), with what sets it
apart: sliding-window layers mixed with full ones (Gemma 2, 3 and 4, gpt-oss, Mistral and Qwen2
with ``layer_types``), soft-capped attention scores and logits (Gemma 2), attention sinks
(gpt-oss), q/k norms (Qwen3, Gemma 3), per-layer settings (Gemma 4), a text decoder inside a
vision-language model (Gemma 3's larger checkpoints), a fused qkv projection (Phi-3), gated GELU
and an unscaled decoder output (T5 v1.1, mT5), a position bias in every layer (UMT5), bytes for
tokens (ByT5). The prompt plus the steps run past every window, so the window's mask is in play.
Checked for each: the tokens and raw logits equal ``generate``'s, the attention rows equal eager
attention's weights (in the step and made later, as a continue makes them), the last layer's lens
is the logits stage (captured and replayed), a rewind past the window gives the steps an unbroken
run gave, and the tokens equal generate()'s in bfloat16 and float16 too.
``LMSCOPE_TEST_DEVICE=cuda`` runs them on a GPU (``benchmarks/gpu_check.sh``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmscope.engine import models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import REPLAY, Stepper

from test_fidelity import DEVICE, eager_copy, run_generate, run_stepper  # tests/engine is on sys.path
from tiny_models import build_llama, build_t5

WINDOW = 4
"""Every sliding window here: the fidelity tests' 4-token prompt and 12 steps run well past it."""

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
             pad_token_id=None, tie_word_embeddings=False)
MIXED = dict(sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"])

ARCHITECTURES = {
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=WINDOW)),
    "mistral-mixed": ("MistralConfig", "MistralForCausalLM", MIXED),
    "qwen2-mixed": ("Qwen2Config", "Qwen2ForCausalLM",
                    dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=16)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(head_dim=16)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(head_dim=16, query_pre_attn_scalar=16, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                    **MIXED)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(head_dim=16, **MIXED)),
    # Gemma 4: per-layer settings (the full-attention layers' own head size), per-layer inputs
    "gemma4": ("Gemma4TextConfig", "Gemma4ForCausalLM",
               dict(head_dim=16, global_head_dim=32, hidden_size_per_layer_input=8, **MIXED)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt-oss": ("GptOssConfig", "GptOssForCausalLM",  # attention sinks, mixture of experts
                dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, **MIXED)),
    # Gemma 3's larger checkpoints: a text decoder inside a vision-language model, its heads,
    # layers and positions in the config's text_config.
    "gemma3-multimodal": ("Gemma3Config", "Gemma3ForConditionalGeneration", {}),
}


def build_causal(folder, name: str, tokenizer_from):
    """A tiny ``name`` model (see ARCHITECTURES) with the tiny Llama's tokenizer."""
    import transformers

    config_name, model_name, extra = ARCHITECTURES[name]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    if name == "gemma3-multimodal":
        text = {**SMALL, "vocab_size": len(tokenizer), "head_dim": 16, "pad_token_id": 0, **MIXED}
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      image_size=28, patch_size=14)
        config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                           image_token_index=5, boi_token_index=6, eoi_token_index=7)
    elif name == "gemma4":
        config = transformers.Gemma4TextConfig(vocab_size=len(tokenizer), vocab_size_per_layer_input=len(tokenizer),
                                               **{**SMALL, **extra})
    else:
        config = getattr(transformers, config_name)(vocab_size=len(tokenizer), **{**SMALL, **extra})
    model = getattr(transformers, model_name)(config)
    with torch.no_grad():  # sharper logits than the default init, as the tiny Llama's
        model.lm_head.weight.mul_(30)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


T5_LIKE = {
    "mt5": ("MT5Config", "MT5ForConditionalGeneration", {}),
    "umt5": ("UMT5Config", "UMT5ForConditionalGeneration", {}),  # a relative position bias in every layer
    # T5 v1.1 and FLAN-T5: gated GELU, and a checkpoint saved with tie_word_embeddings=False,
    # which tells transformers not to scale the decoder's output before the head.
    "t5-v1.1": ("T5Config", "T5ForConditionalGeneration",
                dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "byt5": ("T5Config", "T5ForConditionalGeneration",  # T5 v1.1 on bytes: ByT5's tokenizer
             dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
}


def build_t5_like(folder, name: str, tokenizer_from):
    """A tiny ``name`` model (see T5_LIKE) with the tiny T5's tokenizer."""
    import transformers

    config_name, model_name, extra = T5_LIKE[name]
    if name == "byt5":
        tokenizer = transformers.ByT5Tokenizer()  # no vocabulary file: its tokens are the bytes
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **extra)
    model = getattr(transformers, model_name)(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=[*ARCHITECTURES, *T5_LIKE])
def loaded(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    if request.param in T5_LIKE:
        build_t5_like(folder, request.param, build_t5(tmp_path_factory.mktemp("t5-tokenizer")))
        return models.load(str(folder), "t5", device=DEVICE, dtype="float32")
    build_causal(folder, request.param, build_llama(tmp_path_factory.mktemp("llama-tokenizer")))
    return models.load(str(folder), "llama", device=DEVICE, dtype="float32")


GREEDY = GenerationSettings(max_new_tokens=12)
SAMPLED = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=40, top_p=0.95,
                             repetition_penalty=1.2, seed=5)


@pytest.mark.parametrize("settings", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_tokens_and_logits_equal_generate(loaded, settings):
    _, steps = run_stepper(loaded, settings)
    out, tokens = run_generate(loaded, settings)
    assert [step.token_id for step in steps] == tokens
    for step, logits in zip(steps, out.logits):
        top = [candidate.token_id for candidate in step.stages[0].top]
        np.testing.assert_allclose([c.score for c in step.stages[0].top], logits[0, top].cpu().numpy(), atol=1e-4)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_tokens_equal_generate_in_half_precision(loaded, dtype):
    half = models.load(loaded.source, loaded.family, device=DEVICE, dtype=dtype)
    assert half.model.dtype == getattr(torch, dtype)
    for settings in (GREEDY, SAMPLED):
        _, steps = run_stepper(half, settings)
        _, tokens = run_generate(half, settings)
        assert [step.token_id for step in steps] == tokens


@pytest.mark.parametrize("complete_every", [None, 4], ids=["in-the-step", "rows-later"])
def test_attention_rows_equal_eager_weights(loaded, complete_every):
    """Each layer's rows against eager's weights for the keys that layer attends: a sliding
    layer's eager weights cover the window's keys only (its cache keeps no more), and lmscope's
    rows, over every key position, hold exactly zero before the window."""
    prompt, steps = run_stepper(loaded, GREEDY, complete_every)
    out, tokens = run_generate(eager_copy(loaded), GREEDY, output_attentions=True)
    assert [step.token_id for step in steps] == tokens
    if loaded.family == "t5":
        pairs = [(step.attention.probs, rows) for step, rows in zip(steps, out.decoder_attentions)]
        pairs += [(step.cross_attention.probs, rows) for step, rows in zip(steps, out.cross_attentions)]
    else:
        pairs = [(step.attention.probs, rows) for step, rows in zip(steps[1:], out.attentions[1:])]
    windowed = 0
    for probs, per_layer in pairs:
        probs = np.asarray(probs)
        for layer, weights in enumerate(per_layer):
            keys = weights.shape[-1]
            np.testing.assert_allclose(probs[layer][..., -keys:], weights[0].cpu().numpy(), atol=1e-5)
            assert not probs[layer][..., :-keys].any()
            windowed += keys < probs.shape[-1]
    config = loaded.model.config.get_text_config(decoder=True)
    sliding = getattr(config, "sliding_window", None) is not None and "sliding_attention" in (
        getattr(config, "layer_types", None) or {"sliding_attention"})  # no layer types: every layer slides
    assert bool(windowed) == sliding, "the steps run past the window exactly when there is one"


@pytest.mark.parametrize("later", [False, True], ids=["captured-in-the-step", "replayed"])
def test_the_last_layers_lens_is_the_logits_stage(loaded, later):
    """``later``: the steps are a continue's, whose layers are not captured in the step: the lens
    runs the step's forward pass again on the keys it saw (``Stepper._replayed``)."""
    stepper = Stepper(loaded, "the quick brown fox", GREEDY)
    stepper.start()
    steps = [stepper.step(rows_later=later) for _ in range(8)]
    stepper.complete_waiting()
    assert (stepper._residuals[steps[-1].step][0] is REPLAY) == later
    for record in (steps[0], steps[-1]):
        last = stepper.lens(record.step, top=5)[-1]
        stage = record.stages[0].top[:5]
        assert [c.token_id for c in last.top] == [c.token_id for c in stage]
        np.testing.assert_allclose([c.score for c in last.top], [c.score for c in stage], atol=1e-4)


def test_a_rewind_past_the_window_steps_again_as_before(loaded):
    """The cache keeps every key, so cropping it back past a sliding window restores the state
    the window had then: the steps after the rewind are the unbroken run's."""
    stepper = Stepper(loaded, "the quick brown fox", SAMPLED)
    stepper.start()
    first = [stepper.step() for _ in range(10)]
    stepper.rewind(3)
    again = [stepper.step() for _ in range(7)]
    assert [s.token_id for s in again] == [s.token_id for s in first[3:]]
    np.testing.assert_allclose(np.asarray(again[-1].attention.probs), np.asarray(first[-1].attention.probs),
                               atol=1e-6)


@pytest.mark.parametrize("implementation", ["static", "hybrid"])
def test_a_generation_config_asking_for_a_static_cache_steps_on_a_full_one(implementation, tmp_path):
    """Gemma checkpoints' generation configs ask for a hybrid cache (static, for compiled
    generation), which crops for no rewind; handing generate() a cache of lmscope's own as well
    was refused ("Passing both `cache_implementation` ... and `cache`"). lmscope's session takes
    its full cache in place of it: the tokens are still generate()'s, made with its static cache."""
    import json

    folder = build_causal(tmp_path / "gemma3", "gemma3", build_llama(tmp_path / "tokenizer"))
    config_file = folder / "generation_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "cache_implementation": implementation}))
    loaded = models.load(str(folder), "llama", device=DEVICE, dtype="float32")
    assert loaded.model.generation_config.cache_implementation == implementation
    _, steps = run_stepper(loaded, GREEDY)
    _, tokens = run_generate(loaded, GREEDY)
    assert [step.token_id for step in steps] == tokens
    stepper = Stepper(loaded, "the quick brown fox", GREEDY)
    stepper.start()
    first = [stepper.step() for _ in range(8)]
    stepper.rewind(2)
    assert [stepper.step().token_id for _ in range(6)] == [step.token_id for step in first[2:]]


def test_the_kv_cache_says_which_layers_slide(loaded):
    """A sliding layer's entry names its window (its cache holds every key all the same, so a
    rewind can go back past it); a layer that sees every key has none. The window survives a
    recording's JSON."""
    from lmscope.engine.trace import step_from_dict, step_to_dict

    _, steps = run_stepper(loaded, GenerationSettings(max_new_tokens=8, min_new_tokens=8))
    entries = [entry for entry in steps[-1].cache.layers if entry.kind == "self"]
    config = loaded.model.config.get_text_config(decoder=True)
    kinds = getattr(config, "layer_types", None)
    expected = [None] * len(entries)
    if getattr(config, "sliding_window", None) is not None and loaded.family == "llama":
        expected = [WINDOW if kinds is None or kinds[entry.layer] == "sliding_attention" else None for entry in entries]
    assert [entry.window for entry in entries] == expected
    assert all(entry.key_shape[2] == entries[0].key_shape[2] for entry in entries), "every layer keeps every key"
    again = step_from_dict(step_to_dict(steps[-1], True))
    assert [entry.window for entry in again.cache.layers if entry.kind == "self"] == expected
