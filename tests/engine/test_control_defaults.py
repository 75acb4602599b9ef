"""Rewind and force on the default SmolLM2, against generate()."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from lmscope.engine import defaults, models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from test_control import ImposeAt, stage_scores  # tests/engine is on sys.path (rootdir-less test modules)

pytestmark = pytest.mark.integration
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def smollm():
    folder = defaults.default_llama_dir()
    if not defaults.is_complete(folder):
        pytest.skip("the default Llama is not prepared: run `lmscope fetch` (make test does)")
    return models.load(str(folder), "llama", "cpu", "float32")


def test_rewind_sampling_then_force_greedy(smollm):
    sampling = GenerationSettings(max_new_tokens=8, do_sample=True, top_k=40, seed=3)
    stepper = Stepper(smollm, PROMPT, sampling)
    stepper.start()
    first = [stepper.step() for _ in range(8)]
    stepper.rewind(2)
    again = [stepper.step() for _ in range(6)]
    assert [r.token_id for r in again] == [r.token_id for r in first[2:]]
    assert [stage_scores(r) for r in again] == [stage_scores(r) for r in first[2:]]

    greedy = GenerationSettings(max_new_tokens=8)
    stepper = Stepper(smollm, PROMPT, greedy)
    prompt = stepper.start()
    base = [stepper.step() for _ in range(8)]
    token = base[3].stages[0].top[2].token_id
    stepper.rewind(3)
    rest = [stepper.step(force=token)] + [stepper.step() for _ in range(4)]
    ids = torch.tensor([prompt.input_ids])
    out = smollm.model.generate(ids, logits_processor=LogitsProcessorList([ImposeAt(ids.shape[1], 3, token)]),
                                **greedy.config_kwargs())
    assert [r.token_id for r in base[:3] + rest] == out[0, ids.shape[1]:].tolist()
