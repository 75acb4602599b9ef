"""What the Stepper records equals what transformers' own generate() computes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from lmscope.engine import models
from lmscope.engine.host_copy import HostCopy
from lmscope.engine.processors import NoDistributionError
from lmscope.engine.settings import GenerationSettings, bad_words_ids
from lmscope.engine.stepper import Stepper
from test_control import ImposeAt  # tests/engine is on sys.path (rootdir-less test modules)

PROMPT = "the quick brown fox"

DEVICE = os.environ.get("LMSCOPE_TEST_DEVICE", "cpu")
"""Where these checks run: cpu here and in CI; ``LMSCOPE_TEST_DEVICE=cuda`` on a GPU machine."""

SETTINGS = {
    "greedy": GenerationSettings(max_new_tokens=12),
    "greedy-penalties": GenerationSettings(max_new_tokens=12, repetition_penalty=1.4, no_repeat_ngram_size=2,
                                           min_new_tokens=6),
    "sample-warpers": GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.7, top_k=20, top_p=0.9,
                                         seed=11),
    "sample-everything": GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=40, top_p=0.95,
                                            repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=5, seed=5),
    "sample-min-p": GenerationSettings(max_new_tokens=10, do_sample=True, min_p=0.05, seed=2),
}


@pytest.fixture(scope="module", params=["llama", "t5"])
def loaded(request, tiny_llama_dir, tiny_t5_dir):
    folder = tiny_llama_dir if request.param == "llama" else tiny_t5_dir
    return models.load(str(folder), request.param, device=DEVICE, dtype="float32")


def run_stepper(loaded, settings, complete_every: int | None = None):
    """Step to the end; with ``complete_every`` the attention rows wait and are completed every
    so many steps, as a continue does (``Stepper.step(rows_later=True)``)."""
    stepper = Stepper(loaded, PROMPT, settings)
    prompt = stepper.start()
    steps = []
    while not stepper.finished:
        steps.append(stepper.step(rows_later=complete_every is not None))
        if complete_every is not None and len(steps) % complete_every == 0:
            stepper.complete_waiting()
    stepper.complete_waiting()
    return prompt, steps


def run_generate(loaded, settings, **extra):
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids.to(loaded.model.device)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    out = loaded.model.generate(
        ids, return_dict_in_generate=True, output_scores=True, output_logits=True,
        **user_generate_kwargs(settings, loaded.tokenizer), **extra,
    )
    start = 1 if loaded.family == "t5" else ids.shape[1]  # T5's sequences begin with <pad>
    return out, out.sequences[0, start:].tolist()


def eager_copy(loaded):
    """The same model loaded again with transformers' eager attention, whose weights
    ``output_attentions`` returns: the oracle for the captured rows."""
    model = type(loaded.model).from_pretrained(loaded.source, attn_implementation="eager").to(DEVICE).eval()
    return models.LoadedModel(model, loaded.tokenizer, loaded.family, loaded.source)


def user_generate_kwargs(settings: GenerationSettings, tokenizer) -> dict:
    """What a user of ``model.generate`` passes for these settings: the oracle's arguments."""
    kwargs = settings.config_kwargs()
    if settings.bad_words:
        kwargs["bad_words_ids"] = bad_words_ids(tokenizer, settings.bad_words)
    if settings.stop_strings:
        kwargs.update(stop_strings=list(settings.stop_strings), tokenizer=tokenizer)
    return kwargs


@pytest.mark.parametrize("name", list(SETTINGS))
def test_tokens_equal_generate(loaded, name):
    settings = SETTINGS[name]
    _, steps = run_stepper(loaded, settings)
    _, expected = run_generate(loaded, settings)
    assert [s.token_id for s in steps] == expected
    assert steps[-1].finished and all(not s.finished for s in steps[:-1])


@pytest.mark.parametrize("name", ["sample-warpers", "sample-everything"])
def test_sampled_tokens_equal_generate_on_the_device_path(loaded, name, monkeypatch):
    """On a GPU the draw reads a stand-in where the probabilities are no distribution (so that a
    sampling failure is no device-side assert): where they are one it draws generate's ids."""
    monkeypatch.setattr(HostCopy, "join_on_host", True)
    settings = SETTINGS[name]
    _, steps = run_stepper(loaded, settings)
    assert [s.token_id for s in steps] == run_generate(loaded, settings)[1]


def test_a_sampling_failure_leaves_the_device_usable(loaded):
    """Scores a processor leaves nan end the step with one line; on a GPU that is no
    device-side assert, so the same process starts and steps the session again."""
    stepper = Stepper(loaded, PROMPT, SETTINGS["sample-warpers"])
    stepper.start()
    stepper._state.processors.append(lambda input_ids, scores: scores * float("nan"))
    with pytest.raises(NoDistributionError, match="sampling failed at step 0: the processors left no valid"):
        stepper.step()
    _, steps = run_stepper(loaded, SETTINGS["sample-warpers"])
    assert [s.token_id for s in steps] == run_generate(loaded, SETTINGS["sample-warpers"])[1]


@pytest.mark.parametrize("device_path", [False, True])
def test_a_forced_token_in_a_sampled_session_samples_on_as_generate_with_it_imposed(loaded, device_path,
                                                                                    monkeypatch):
    """``u`` then a forced token while sampling: the forced step draws and sets the draw aside, so
    the steps after it sample what ``generate()`` samples with that token imposed by a processor
    (on a GPU the draw is the device's own generator: ``benchmarks/gpu_check.sh`` runs this there)."""
    monkeypatch.setattr(HostCopy, "join_on_host", device_path)
    settings, at = SETTINGS["sample-everything"], 3
    stepper = Stepper(loaded, PROMPT, settings)
    stepper.start()
    free = [stepper.step() for _ in range(at + 2)]
    forced_id = next(candidate.token_id for candidate in free[at].stages[0].top[4:]  # a raw choice from the fifth on
                     if candidate.token_id != free[at].token_id)
    stepper.rewind(at)
    forced = stepper.step(force=forced_id)
    rest = []
    while not stepper.finished:
        rest.append(stepper.step())
    tokens = [s.token_id for s in free[:at]] + [forced.token_id] + [s.token_id for s in rest]
    assert forced.chosen_by == "forced"

    start_len = 1 if loaded.family == "t5" else loaded.tokenizer(PROMPT, return_tensors="pt").input_ids.shape[1]
    imposed = LogitsProcessorList([ImposeAt(start_len, at, forced_id)])
    _, expected = run_generate(loaded, settings, logits_processor=imposed)
    assert tokens == expected


@pytest.mark.parametrize("name", ["greedy-penalties", "sample-everything"])
def test_stage_scores_equal_generate_logits_and_scores(loaded, name):
    settings = SETTINGS[name]
    _, steps = run_stepper(loaded, settings)
    out, _ = run_generate(loaded, settings)
    assert len(steps) == len(out.logits) == len(out.scores)
    for step, logits, scores in zip(steps, out.logits, out.scores):
        raw, last = step.stages[0], step.stages[-1]
        logits, scores = logits.cpu(), scores.cpu()
        np.testing.assert_allclose([c.score for c in raw.top], logits[0, [c.token_id for c in raw.top]], rtol=1e-5)
        np.testing.assert_allclose([c.score for c in last.top], scores[0, [c.token_id for c in last.top]], rtol=1e-5)
        # The raw stage's top is the true top-k of generate's logits.
        assert [c.token_id for c in raw.top] == torch.topk(logits[0], len(raw.top)).indices.tolist()


def test_stages_follow_transformers_processor_order(loaded):
    _, steps = run_stepper(loaded, SETTINGS["sample-everything"])
    names = [stage.name for stage in steps[0].stages]
    assert names == [
        "logits", "RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor",
        "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor",
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
    ]
    assert steps[0].chosen_by == "sample"


@pytest.mark.parametrize("complete_every", [None, 4], ids=["in-the-step", "rows-later"])
def test_captured_attention_equals_eager(loaded, complete_every):
    settings = GenerationSettings(max_new_tokens=6)
    prompt, steps = run_stepper(loaded, settings, complete_every)
    out, tokens = run_generate(eager_copy(loaded), settings, output_attentions=True)
    assert [s.token_id for s in steps] == tokens
    if loaded.family == "t5":
        check_t5_attention(prompt, steps, out)
    else:
        check_llama_attention(prompt, steps, out)


def stack(per_layer) -> np.ndarray:
    """Eager attentions, a tuple over layers of ``[1, head, query, key]`` -> ``[layer, head, query, key]``."""
    return torch.cat(per_layer).cpu().numpy()


def check_llama_attention(prompt, steps, out):
    np.testing.assert_allclose(prompt.attention.probs, stack(out.attentions[0]), atol=1e-4)
    assert prompt.attention.query_start == 0
    # Step 0's token came from the prompt's last query; later steps from the new token's query.
    np.testing.assert_allclose(steps[0].attention.probs, stack(out.attentions[0])[:, :, -1:], atol=1e-4)
    for step, attentions in zip(steps[1:], out.attentions[1:]):
        np.testing.assert_allclose(step.attention.probs, stack(attentions), atol=1e-4)
        assert step.attention.query_start == len(prompt.input_ids) + step.step - 1


def check_t5_attention(prompt, steps, out):
    np.testing.assert_allclose(prompt.attention.probs, stack(out.encoder_attentions), atol=1e-4)
    for step, self_rows, cross_rows in zip(steps, out.decoder_attentions, out.cross_attentions):
        np.testing.assert_allclose(step.attention.probs, stack(self_rows), atol=1e-4)
        np.testing.assert_allclose(step.cross_attention.probs, stack(cross_rows), atol=1e-4)
        assert step.cross_attention.probs.shape[-1] == len(prompt.input_ids)


def test_stop_string_ends_generation_where_generate_does(loaded):
    """``--stop``: a stop string taken from the middle of a greedy run stops both loops there."""
    _, free_run = run_stepper(loaded, GenerationSettings(max_new_tokens=12))
    text = "".join(step.token for step in free_run[:6])
    stop = text[len(text) // 2 :].strip()[:3] or text[-1]
    settings = GenerationSettings(max_new_tokens=12, stop_strings=(stop,))
    _, steps = run_stepper(loaded, settings)
    _, expected = run_generate(loaded, settings)
    assert [s.token_id for s in steps] == expected
    assert len(steps) < len(free_run)
    assert steps[-1].finish_reason == "stop_string"
    assert stop in "".join(step.token for step in steps)


def test_bad_word_is_never_chosen_as_in_generate(loaded):
    """``--bad-word``: the greedy run's second token banned; both loops pick the same others."""
    _, free_run = run_stepper(loaded, GenerationSettings(max_new_tokens=8))
    banned = free_run[1].token.strip()
    settings = GenerationSettings(max_new_tokens=8, bad_words=(banned,))
    _, steps = run_stepper(loaded, settings)
    _, expected = run_generate(loaded, settings)
    assert [s.token_id for s in steps] == expected
    banned_ids = {ids[0] for ids in bad_words_ids(loaded.tokenizer, (banned,)) if len(ids) == 1}
    assert free_run[1].token_id in banned_ids
    assert banned_ids.isdisjoint(s.token_id for s in steps)
    assert "NoBadWordsLogitsProcessor" in [stage.name for stage in steps[0].stages]
