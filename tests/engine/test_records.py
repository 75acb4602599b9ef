"""Settings validation, JSON round trips, cache stats and the attention row store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmscope.engine.cache_stats import cache_stats
from lmscope.engine.row_store import RowStore
from lmscope.engine.settings import GenerationSettings, SettingsError, validate
from lmscope.engine.trace import prompt_from_dict, prompt_to_dict, step_from_dict, step_to_dict


@pytest.mark.parametrize("settings, message", [
    (GenerationSettings(do_sample=True, temperature=-1.0), "--temperature must be > 0"),
    (GenerationSettings(do_sample=True, top_p=0.0), "--top-p must be in (0, 1]"),
    (GenerationSettings(do_sample=True, min_p=2.0), "--min-p must be in [0, 1]"),
    (GenerationSettings(repetition_penalty=0.0), "--repetition-penalty must be > 0"),
    (GenerationSettings(top_k=4, top_p=0.5), "--top-k, --top-p only apply when sampling"),
    (GenerationSettings(min_new_tokens=-1), "--min-new-tokens must be >= 0"),
    (GenerationSettings(bad_words=("das", "")), "--bad-word needs a word: it was given empty"),
    (GenerationSettings(stop_strings=("",)), "--stop needs text: it was given empty"),
])
def test_invalid_settings_name_the_flag(settings, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(settings)


def test_valid_settings_pass_and_become_generate_kwargs():
    settings = GenerationSettings(max_new_tokens=5, do_sample=True, temperature=0.5, seed=3)
    validate(settings)
    assert settings.config_kwargs() == {"max_new_tokens": 5, "do_sample": True, "temperature": 0.5}
    assert ("seed", "3") in settings.changed()


@pytest.fixture(scope="module")
def t5_session(tiny_t5_dir):
    from lmscope.engine import models
    from lmscope.engine.stepper import Stepper

    stepper = Stepper(models.load(str(tiny_t5_dir), "t5", "cpu", "float32"), "the dog",
                      GenerationSettings(max_new_tokens=3, do_sample=True, top_k=5, seed=0))
    prompt = stepper.start()
    return prompt, [stepper.step() for _ in range(3)]


def test_step_json_round_trip_keeps_everything(t5_session):
    _, steps = t5_session
    data = json.loads(json.dumps(step_to_dict(steps[1], attention=True)))
    again = step_from_dict(data)
    assert step_to_dict(again, attention=True) == data
    np.testing.assert_allclose(again.cross_attention.probs, steps[1].cross_attention.probs, atol=1e-6)


def test_removed_scores_are_null_in_json(t5_session):
    _, steps = t5_session
    top_k_stage = step_to_dict(steps[0])["stages"][-1]
    assert top_k_stage["name"] == "TopKLogitsWarper"
    assert [c["score"] for c in top_k_stage["top"]][5:] == [None] * 5


def test_prompt_json_round_trip(t5_session):
    prompt, _ = t5_session
    data = prompt_to_dict(prompt, attention=True)
    assert prompt_to_dict(prompt_from_dict(json.loads(json.dumps(data))), attention=True) == data
    assert prompt.decoder_start_token == "<pad>" and prompt.input_tokens[-1] == "</s>"


def test_t5_cache_has_growing_self_and_fixed_cross_entries(t5_session):
    prompt, steps = t5_session
    source_len = len(prompt.input_ids)
    for step in steps:
        self_entries = [e for e in step.cache.layers if e.kind == "self"]
        cross_entries = [e for e in step.cache.layers if e.kind == "cross"]
        assert [e.key_shape[2] for e in self_entries] == [step.step + 1] * 2
        assert [e.key_shape[2] for e in cross_entries] == [source_len] * 2
    assert steps[-1].cache.bytes_of("cross") == steps[0].cache.bytes_of("cross")
    assert steps[-1].cache.cache_class == "EncoderDecoderCache"


def test_gqa_is_visible_in_cache_stats():
    from transformers import DynamicCache, LlamaConfig

    config = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32)
    cache = DynamicCache(config=config)
    for layer in range(2):
        cache.update(torch.zeros(1, 2, 7, 8), torch.zeros(1, 2, 7, 8), layer)
    stats = cache_stats(cache, query_heads=4, kv_heads=2)
    assert [e.key_shape for e in stats.layers] == [(1, 2, 7, 8)] * 2
    assert stats.total_bytes == 2 * 2 * (2 * 7 * 8 * 4) and stats.kv_heads < stats.query_heads


def test_row_store_round_trips_and_is_read_only():
    store = RowStore(chunk_bytes=4096)
    rows = [torch.rand(2, 3, 1, 40) for _ in range(20)]  # several chunks
    views = [store.put(r) for r in rows]
    for view, original in zip(views, rows):
        assert np.array_equal(view, original.numpy()) and not view.flags.writeable
    slot = store.reserve((2, 3, 4))
    store.write(slot, torch.ones(3, 4), index=1)
    assert store.view(slot)[1].sum() == 12 and store.view(slot)[0].sum() == 0
