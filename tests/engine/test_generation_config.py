"""Settings left out take the model's generation config, as generate() takes it; --do-sample is
the one exception (lmscope steps greedily unless asked to sample, whatever the config says)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmscope.engine import models
from lmscope.engine.settings import GenerationSettings

from test_fidelity import run_generate, run_stepper  # tests/engine is on sys.path
from tiny_models import build_llama

SAMPLING_CONFIG = {"do_sample": True, "temperature": 0.5, "top_k": 7, "top_p": 0.8, "repetition_penalty": 1.3}
"""A generation config that samples, as Llama 3's and Qwen2.5's instruct checkpoints do."""


@pytest.fixture(scope="module")
def sampling_model(tmp_path_factory):
    folder = build_llama(tmp_path_factory.mktemp("sampling-config"))
    config_file = folder / "generation_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **SAMPLING_CONFIG}))
    loaded = models.load(str(folder), "llama", device="cpu", dtype="float32")
    assert loaded.model.generation_config.top_k == 7
    return loaded


def stage_names(step) -> list[str]:
    return [stage.name for stage in step.stages]


def test_do_sample_alone_takes_the_configs_temperature_top_k_top_p_and_penalty(sampling_model):
    settings = GenerationSettings(max_new_tokens=10, do_sample=True, seed=4)
    _, steps = run_stepper(sampling_model, settings)
    out, tokens = run_generate(sampling_model, settings)
    assert [step.token_id for step in steps] == tokens
    assert stage_names(steps[0]) == ["logits", "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper",
                                     "TopKLogitsWarper", "TopPLogitsWarper"]
    assert steps[0].stages[3].kept <= 7  # the config's top-k
    for step, scores in zip(steps, out.scores):  # the last stage is what generate() sampled from
        top = [candidate.token_id for candidate in step.stages[-1].top if candidate.score > -np.inf]
        np.testing.assert_allclose([c.score for c in step.stages[-1].top[:len(top)]], scores[0, top].numpy(),
                                   atol=1e-4)


def test_a_flag_given_overrides_the_config(sampling_model):
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, top_k=3, seed=4)
    _, steps = run_stepper(sampling_model, settings)
    _, tokens = run_generate(sampling_model, settings)
    assert [step.token_id for step in steps] == tokens
    assert all(step.stages[3].kept <= 3 for step in steps)


def test_without_do_sample_the_steps_are_greedy_whatever_the_config(sampling_model):
    """generate() itself would sample here; lmscope's session is the greedy one, generate()'s
    with do_sample=False: the config's repetition penalty still applies, its warpers do not."""
    settings = GenerationSettings(max_new_tokens=10)
    _, steps = run_stepper(sampling_model, settings)
    _, tokens = run_generate(sampling_model, settings)  # settings pass do_sample=False
    assert [step.token_id for step in steps] == tokens
    assert stage_names(steps[0]) == ["logits", "RepetitionPenaltyLogitsProcessor"]
    assert all(step.chosen_by == "argmax" for step in steps)
