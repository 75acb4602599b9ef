"""The prompt is encoded once a session: the fit check and every start read the same ids."""

from __future__ import annotations

from lmscope.engine import models
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper


def test_the_prompt_is_encoded_once_for_the_check_and_every_start(tiny_llama_dir):
    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    calls = []
    tokenizer = loaded.tokenizer
    original = type(tokenizer)

    class Counting(original):
        def __call__(self, *args, **kwargs):
            calls.append(args[0] if args else kwargs.get("text"))
            return original.__call__(self, *args, **kwargs)

    tokenizer.__class__ = Counting
    try:
        stepper = Stepper(loaded, "the quick brown fox", GenerationSettings(max_new_tokens=2))
        ids = stepper.encode_prompt()
        ids[0, 0] = -1  # the caller's copy: the next start still reads the prompt
        first = stepper.start()
        stepper.step()
        again = stepper.start()
    finally:
        tokenizer.__class__ = original
    assert calls.count("the quick brown fox") == 1
    assert first.input_ids == again.input_ids and -1 not in first.input_ids
