"""The logit lens equals transformers' own hidden states put through the final norm and the LM head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmscope.engine import models
from lmscope.engine.cache_stats import generation_cache
from lmscope.engine.lens import lens_logits
from lmscope.engine.errors import UserError
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPT = "the quick brown fox"
SETTINGS = GenerationSettings(max_new_tokens=6)


def run_steps(loaded, prompt=PROMPT, settings=SETTINGS):
    stepper = Stepper(loaded, prompt, settings)
    stepper.start()
    steps = []
    while not stepper.finished:
        steps.append(stepper.step())
    return stepper, steps


def reference(loaded, prompt=PROMPT, settings=SETTINGS):
    """generate()'s hidden states (last position) and raw logits per step."""
    ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids
    out = loaded.model.generate(ids, return_dict_in_generate=True, output_hidden_states=True, output_logits=True,
                                **settings.generate_kwargs(loaded.tokenizer))
    hidden = out.decoder_hidden_states if loaded.family == "t5" else out.hidden_states
    return [torch.stack([h[0, -1] for h in per_step]) for per_step in hidden], [l[0] for l in out.logits]


def test_lens_equals_hidden_states_through_norm_and_head(loaded):
    check_lens(loaded, PROMPT, SETTINGS)


@pytest.mark.integration
def test_lens_on_smollm2():
    from lmscope.engine import defaults

    folder = defaults.default_llama_dir()
    if not defaults.is_complete(folder):
        pytest.skip("the default Llama is not prepared: run `lmscope fetch` (make test does)")
    loaded = models.load(str(folder), "llama", "cpu", "float32")
    check_lens(loaded, "The capital of France is", GenerationSettings(max_new_tokens=3))


def check_lens(loaded, prompt, settings):
    """Every layer's lens, at every step, against generate()'s hidden states through norm and head."""
    stepper, steps = run_steps(loaded, prompt, settings)
    hidden, logits = reference(loaded, prompt, settings)
    layers = stepper.info.layers
    assert len(hidden) == len(steps)
    for step, record in enumerate(steps):
        lens = stepper.lens(step, top=5)
        assert [entry.layer for entry in lens] == list(range(layers))
        # hidden_states = (embeddings, layer 0 .. layer n-2 outputs, final-normed last layer)
        assert hidden[step].shape[0] == layers + 1
        expected = lens_logits(loaded.model, hidden[step][1:layers])  # layers 0 .. n-2
        expected = torch.cat([expected, logits[step][None].float()])  # the last layer: the logits themselves
        probs = torch.softmax(expected, dim=-1)
        for i, entry in enumerate(lens):
            top_p, top_i = probs[i].topk(5)
            assert [c.token_id for c in entry.top] == top_i.tolist()
            np.testing.assert_allclose([c.prob for c in entry.top], top_p.numpy(), atol=1e-4)
            np.testing.assert_allclose([c.score for c in entry.top], expected[i, top_i].numpy(), atol=1e-4)
            assert entry.chosen_prob == pytest.approx(float(probs[i, record.token_id]), abs=1e-4)
            assert entry.chosen_rank == int((probs[i] > probs[i, record.token_id]).sum())
            logp = torch.log_softmax(expected[i], -1)
            assert entry.entropy == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-4)
        # the last layer's lens is the logits stage
        last = lens[-1]
        assert [c.token_id for c in last.top] == [c.token_id for c in record.stages[0].top[:5]]
        assert record.chosen_by == "argmax" and last.chosen_rank == 0  # greedy: the lens top is the token


def test_residual_norms_match_hidden_states(loaded):
    stepper, steps = run_steps(loaded)
    hidden, _ = reference(loaded)
    layers = stepper.info.layers
    for step in range(len(steps)):
        norms = [entry.norm for entry in stepper.lens(step)]
        np.testing.assert_allclose(norms[:-1], hidden[step][1:layers].norm(dim=-1).numpy(), rtol=1e-5)


def test_lens_of_unknown_step_raises(loaded):
    stepper, _ = run_steps(loaded)
    with pytest.raises(UserError, match="step 99 has not been made"):
        stepper.lens(99)


def test_layer_tensors_match_hidden_states_and_cache(loaded):
    stepper, steps = run_steps(loaded)
    hidden, _ = reference(loaded)
    layers = stepper.info.layers
    last = len(steps) - 1
    cache = generation_cache(stepper._state.model_kwargs)
    self_cache = cache.self_attention_cache if loaded.family == "t5" else cache
    for layer in range(layers):
        tensors = {info.name: info for info in stepper.layer_tensors(last, layer)}
        expected = {"hidden_states", "q", "k", "v", "self_attn_output", "mlp_output", "layer_output"}
        if loaded.family == "t5":
            expected |= {"position_bias", "cross_q", "cross_k", "cross_v", "cross_attn_output"}
        assert set(tensors) == expected
        d_model = hidden[last].shape[-1]
        assert tensors["hidden_states"].shape == (1, 1, d_model)  # a decode step: one new position
        np.testing.assert_allclose(tensors["hidden_states"].preview, hidden[last][layer, :4].numpy(), rtol=1e-5)
        if layer < layers - 1:
            np.testing.assert_allclose(tensors["layer_output"].preview, hidden[last][layer + 1, :4].numpy(),
                                       rtol=1e-5)
        keys = self_cache.layers[layer].keys  # the cache holds k after RoPE: [batch, kv_heads, seq, head_dim]
        assert tensors["k"].shape == tuple(keys.shape)
        np.testing.assert_allclose(tensors["k"].preview, keys[0, 0, -1, :4].numpy(), rtol=1e-5)
        q = tensors["q"].shape
        assert q[0] == 1 and q[1] == stepper.info.query_heads and q[2] == 1 and \
            tensors["k"].shape[1] == stepper.info.kv_heads
        assert tensors["q"].dtype == "float32" and len(tensors["q"].preview) == 4


def test_capture_modes(loaded):
    """``residual`` gives the same lens as ``full`` with no tensors; ``off`` leaves no hooks and no lens."""
    from lmscope.engine.layers import decoder_layers

    full, full_steps = run_steps(loaded)
    lenses = {step.step: full.lens(step.step) for step in full_steps}
    residual = Stepper(loaded, PROMPT, SETTINGS, layer_capture="residual")
    residual.start()
    while not residual.finished:
        record = residual.step()
        for ours, theirs in zip(residual.lens(record.step), lenses[record.step], strict=True):
            assert lens_numbers(ours) == lens_numbers(theirs)
        assert residual.layer_tensors(record.step, 0) == ()
    assert {name for name, _ in lmscope_hooks(loaded.model)} == {
        name for name, module in loaded.model.named_modules() if module in list(decoder_layers(loaded.model))}

    off = Stepper(loaded, PROMPT, SETTINGS, layer_capture="off")
    off.start()
    record = off.step()
    assert lmscope_hooks(loaded.model) == []  # transformers' own output-capturing hooks may remain
    with pytest.raises(UserError, match="layer capture: off"):
        off.lens(record.step)


def lens_numbers(lens) -> tuple:
    return (lens.layer, [(c.token_id, c.score, c.prob) for c in lens.top], lens.chosen_prob, lens.chosen_rank,
            lens.entropy, lens.norm)


def lmscope_hooks(model) -> list[tuple[str, str]]:
    """(module name, hook) for every forward hook lmscope's layer capture left on ``model``."""
    return [(name, hook.__qualname__) for name, module in model.named_modules()
            for hook in (*module._forward_hooks.values(), *module._forward_pre_hooks.values())
            if hook.__module__ == "lmscope.engine.layers"]
