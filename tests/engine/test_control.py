"""Rewind and force on the live cache, against transformers' own generate() as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lmscope.engine.cache_stats import generation_cache
from lmscope.engine.errors import UserError
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPT = "the quick brown fox"
SAMPLING = GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=40, seed=7)
GREEDY = GenerationSettings(max_new_tokens=10)


def run(stepper: Stepper, n: int | None = None, **step_kwargs) -> list:
    steps = []
    while not stepper.finished and (n is None or len(steps) < n):
        steps.append(stepper.step(**step_kwargs))
    return steps


def stage_scores(record) -> list[list[float]]:
    return [[c.score for c in stage.top] for stage in record.stages]


@pytest.mark.parametrize("k", [0, 3, 7])
def test_rewind_then_run_again_reproduces_sampled_tokens_and_stages(loaded, k):
    stepper = Stepper(loaded, PROMPT, SAMPLING)
    stepper.start()
    first = run(stepper)
    stepper.rewind(k)
    again = run(stepper)
    assert [s.step for s in again] == list(range(k, len(first)))
    assert [s.token_id for s in again] == [s.token_id for s in first[k:]]
    for old, new in zip(first[k:], again):
        np.testing.assert_array_equal(stage_scores(old), stage_scores(new))
        assert old.chosen_prob == new.chosen_prob and old.raw_rank == new.raw_rank


class ImposeAt(LogitsProcessor):
    """generate's own loop forced to ``token`` at generated step ``step``: the oracle for force."""

    def __init__(self, start_len: int, step: int, token: int):
        self.at, self.token = start_len + step, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.at:
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.token] = 0.0
            return forced
        return scores


@pytest.mark.parametrize("k", [0, 4])
def test_forced_token_continuation_equals_generate_forced_there(loaded, k):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    free = run(stepper)
    forced_id = free[k].stages[0].top[3].token_id  # the raw logits' fourth choice
    stepper.rewind(k)
    forced = stepper.step(force=forced_id)
    rest = run(stepper)
    assert forced.chosen_by == "forced" and forced.token_id == forced_id and forced.raw_rank == 4
    assert [s.name for s in forced.stages] == [s.name for s in free[k].stages]  # processors still ran

    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    start_len = 1 if loaded.family == "t5" else ids.shape[1]  # T5's decoder ids start with <pad>
    out = loaded.model.generate(ids, max_new_tokens=10,
                                logits_processor=LogitsProcessorList([ImposeAt(start_len, k, forced_id)]))
    expected = out[0, start_len:].tolist()
    assert [s.token_id for s in free[:k]] + [forced.token_id] + [s.token_id for s in rest] == expected


def cache_tensors(stepper: Stepper) -> list[torch.Tensor]:
    cache = generation_cache(stepper._state.model_kwargs)
    cache = getattr(cache, "self_attention_cache", cache)
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


@pytest.mark.parametrize("k", [1, 5])
def test_rewound_cache_is_a_fresh_run_of_k_steps(loaded, k):
    """After rewind(k): the ids are prompt + k tokens, and the cache equals a fresh session's after k steps."""
    rewound = Stepper(loaded, PROMPT, GREEDY)
    rewound.start()
    run(rewound)
    rewound.rewind(k)
    fresh = Stepper(loaded, PROMPT, GREEDY)
    fresh.start()
    run(fresh, k)
    assert torch.equal(rewound._state.input_ids, fresh._state.input_ids)
    prompt_len = 1 if loaded.family == "t5" else len(loaded.tokenizer(PROMPT).input_ids)
    assert rewound._state.input_ids.shape[1] == prompt_len + k
    expected_positions = k if loaded.family == "t5" else prompt_len + k - 1  # the k-th id is fed next
    cache = generation_cache(rewound._state.model_kwargs)
    assert cache.get_seq_length() == expected_positions
    for old, new in zip(cache_tensors(rewound), cache_tensors(fresh), strict=True):
        assert torch.equal(old, new)


def test_rewind_bounds_and_force_range(loaded):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    run(stepper, 3)
    with pytest.raises(UserError, match="cannot rewind to step 4"):
        stepper.rewind(4)
    with pytest.raises(UserError, match="cannot force token id"):
        stepper.step(force=10**9)
    stepper.rewind(3)  # a no-op: already before step 3
    assert stepper.step().step == 3


def test_first_token_names_the_forced_token(loaded):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    token_id, text = stepper.first_token(" the dog")
    assert token_id == loaded.tokenizer(" the dog", add_special_tokens=False).input_ids[0]
    assert text.strip() and text in " the dog"
    with pytest.raises(UserError):
        stepper.first_token("")


def test_a_word_outside_a_word_level_vocabulary_is_not_forced_as_unk():
    """The demo T5's vocabulary holds words: an unknown one would force ``<unk>`` in its place."""
    from lmscope.engine import defaults, models

    stepper = Stepper(models.load(str(defaults.default_t5_dir()), "t5", "cpu", "float32"), "the king", GREEDY)
    with pytest.raises(UserError, match="'zzqx' is not in the model's vocabulary: its first token is <unk>"):
        stepper.first_token("zzqx")
    assert stepper.first_token("<unk>")[0] == stepper.tokenizer.unk_token_id  # asked for by name
    assert stepper.first_token("Frau")[0] != stepper.tokenizer.unk_token_id
