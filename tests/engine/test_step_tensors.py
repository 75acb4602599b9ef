"""The tensors a step records (the Variables pane) are what the model received in generate()."""

from __future__ import annotations

import pytest
import torch

from lmscope.engine import models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper
from lmscope.engine.tensors import describe

PROMPT = "the quick brown fox"
SETTINGS = GenerationSettings(max_new_tokens=6, min_new_tokens=6)


@pytest.fixture(scope="module", params=["llama", "t5"])
def loaded(request, tiny_llama_dir, tiny_t5_dir):
    folder = tiny_llama_dir if request.param == "llama" else tiny_t5_dir
    return models.load(str(folder), request.param, device="cpu", dtype="float32")


def received_in_generate(loaded) -> list[tuple]:
    """What the top-level model received at each of generate()'s forward calls (one a token),
    described as a step's record describes it (T5's encoder output as its hidden states)."""
    calls = []

    def hook(module, args, kwargs):
        named = dict(kwargs)
        if named.get("encoder_outputs") is not None:
            named["encoder_hidden_states"] = named.pop("encoder_outputs").last_hidden_state
        calls.append(described(describe(named)))

    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    handle = loaded.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            loaded.model.generate(ids, **SETTINGS.config_kwargs())
    finally:
        handle.remove()
    return calls


def described(infos) -> list[tuple]:
    return [(info.name, info.shape, info.dtype, info.preview) for info in infos]


@pytest.mark.parametrize("as_continue", [False, True])
def test_each_steps_tensors_are_what_the_model_received(loaded, as_continue):
    """Step 0 (a decoder-only model's prefill, T5's first decoder pass) and every decode step,
    made one by one or as a continue makes them (records completed at the hand-over)."""
    expected = received_in_generate(loaded)
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    records = []
    while not stepper.finished:
        if as_continue:
            stepper.step(rows_later=True, record_later=True)
        else:
            records.append(stepper.step())
    records += stepper.complete_waiting()
    assert len(records) == len(expected) == SETTINGS.max_new_tokens
    for record, inputs in zip(records, expected, strict=True):
        got = described(record.tensors)
        assert got[-1][0] == "logits" and got[-1][1][-1] == stepper.info_vocab
        assert got[:-1] == inputs
    assert any(info.preview for info in records[-1].tensors)  # positions or ids show their values
