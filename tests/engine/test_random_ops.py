"""Regressions of the debugger's operations, found by seeded random sequences of them and minimised."""

from __future__ import annotations

from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from test_lens import lens_numbers  # tests/engine is on sys.path

PROMPT = "the quick brown fox"
GREEDY_SHORT = GenerationSettings(max_new_tokens=4)


def test_step_0_made_again_keeps_the_prefills_layers(loaded):
    """``c`` (a continue: its steps' layers wait for a replay), ``enter`` forcing a candidate at
    step 0, then the Layers pane on step 0: a decoder-only model chooses step 0 again from the
    prefill, without a forward pass, and the step took the newest layer capture the Stepper had
    made (a replay marker after a continue, another step's capture after ``n``) as its own. The
    lens then replayed step 0 as a decode step, feeding the prompt's last token over a cache that
    already held it, or showed another step's layers."""
    stepper = Stepper(loaded, PROMPT, GREEDY_SHORT)
    stepper.start()
    first = stepper.step()
    want = stepper.lens(0, top=5), [stepper.layer_tensors(0, layer) for layer in range(stepper.info.layers)]
    for calls in ({"rows_later": True, "record_later": True}, {}):  # c, and n with the Layers tab showing
        while not stepper.finished:
            stepper.step(**calls)
        stepper.complete_waiting()
        stepper.rewind(0)
        assert stepper.step(force=first.token_id).token_id == first.token_id
        got = stepper.lens(0, top=5), [stepper.layer_tensors(0, layer) for layer in range(stepper.info.layers)]
        assert [lens_numbers(entry) for entry in got[0]] == [lens_numbers(entry) for entry in want[0]]
        assert [[(t.name, t.shape, t.preview) for t in layer] for layer in got[1]] == \
            [[(t.name, t.shape, t.preview) for t in layer] for layer in want[1]]
