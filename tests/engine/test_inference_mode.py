"""The Stepper runs its torch work under ``torch.inference_mode`` (engine/stepper.py ``_INFERENCE``).

Inference tensors refuse in-place changes outside inference mode, so every method that touches
the cache or the captures must run under it; these tests go through each of them from plain
code (no mode of the caller's) and check that the cache was made in inference mode.
"""

from __future__ import annotations

import pytest
import torch

from lmscope.engine import models
from lmscope.engine.cache_stats import generation_cache
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper


def _self_keys(stepper: Stepper) -> list[torch.Tensor]:
    cache = generation_cache(stepper._state.model_kwargs)
    cache = getattr(cache, "self_attention_cache", cache)
    return [layer.keys for layer in cache.layers]


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_every_engine_call_runs_in_inference_mode(family, tiny_llama_dir, tiny_t5_dir):
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    loaded = models.load(str(folder), family, device="cpu", dtype="float32")
    settings = GenerationSettings(max_new_tokens=12, do_sample=True, top_k=20, seed=0)
    stepper = Stepper(loaded, "the quick brown fox", settings)
    assert not torch.is_inference_mode_enabled()
    stepper.start()
    first = [stepper.step(rows_later=True).token_id for _ in range(4)]
    stepper.complete_waiting()
    assert all(keys.is_inference() for keys in _self_keys(stepper)), "the cache was made outside inference mode"
    stepper.rewind(1)  # crops the cache's inference tensors
    again = [stepper.step().token_id for _ in range(3)]
    assert again == first[1:], "rewinding and stepping again chose other tokens"
    forced = stepper.step(force=first[0])
    assert forced.token_id == first[0] and forced.chosen_by == "forced"
    assert len(stepper.lens(forced.step)) == stepper.info.layers
    assert stepper.layer_tensors(forced.step, 0)
    assert not torch.is_inference_mode_enabled(), "a method left inference mode on for its caller"
