"""The fidelity checks, on the offline default models (integration: needs `lmscope fetch`)."""

from __future__ import annotations

import pytest
import torch

from lmscope.engine import defaults, models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

pytestmark = pytest.mark.integration

CASES = {
    "llama": ("What is the capital of France?", True),
    "t5": (None, False),
}
SAMPLING = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.9, top_k=40, top_p=0.9,
                              repetition_penalty=1.1, seed=7)


def default_dir(family: str):
    if family == "t5":
        return defaults.default_t5_dir()
    folder = defaults.default_llama_dir()
    if not defaults.is_complete(folder):
        pytest.skip("the default Llama is not prepared: run `lmscope fetch` (make test does)")
    return folder


@pytest.fixture(scope="module", params=list(CASES))
def default(request):
    from lmscope.engine.session import DEFAULT_PROMPTS

    loaded = models.load(str(default_dir(request.param)), request.param, "cpu", "float32")
    prompt, chat = CASES[request.param]
    return loaded, prompt or DEFAULT_PROMPTS["t5"], chat


def prompt_ids(loaded, prompt, chat):
    if not chat:
        return loaded.tokenizer(prompt, return_tensors="pt").input_ids
    messages = [{"role": "user", "content": prompt}]
    return loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]


@pytest.mark.parametrize("settings", [GenerationSettings(max_new_tokens=12), SAMPLING], ids=["greedy", "sampling"])
def test_default_model_tokens_equal_generate(default, settings):
    loaded, prompt, chat = default
    stepper = Stepper(loaded, prompt, settings, chat=chat)
    stepper.start()
    tokens = []
    while not stepper.finished:
        tokens.append(stepper.step().token_id)
    ids = prompt_ids(loaded, prompt, chat)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    expected = loaded.model.generate(ids, **settings.generate_kwargs(loaded.tokenizer))
    start = 1 if loaded.family == "t5" else ids.shape[1]
    assert tokens == expected[0, start:].tolist()


def test_default_llama_answers_paris_in_the_tui_engine(default):
    loaded, prompt, chat = default
    if loaded.family != "llama":
        pytest.skip("llama only")
    stepper = Stepper(loaded, prompt, GenerationSettings(max_new_tokens=16), chat=True)
    stepper.start()
    text = ""
    while not stepper.finished:
        text += stepper.step().token
    assert "Paris" in text


def test_demo_t5_cross_attention_rows_follow_the_alignment():
    """The rows the TUI's cross-attention pane shows peak on the aligned source word."""
    import json

    loaded = models.load(str(defaults.default_t5_dir()), "t5", "cpu", "float32")
    rows = [json.loads(line) for line in (defaults.default_t5_dir() / "heldout.jsonl").open()][:40]
    hits = total = exact = 0
    for row in rows:
        stepper = Stepper(loaded, row["en"], GenerationSettings(max_new_tokens=48))
        stepper.start()
        steps = []
        while not stepper.finished:
            steps.append(stepper.step())
        if [step.token_id for step in steps] != loaded.tokenizer(row["de"]).input_ids:  # both end in </s>
            continue
        exact += 1
        for step, source in zip(steps, row["align"]):
            if source is None:
                continue
            peaks = step.cross_attention.probs.mean(axis=1)[:, 0].argmax(axis=-1)  # [layer]
            hits += int(source in peaks.tolist())
            total += 1
    assert exact >= 0.9 * len(rows)
    assert total > 100 and hits / total >= 0.70
