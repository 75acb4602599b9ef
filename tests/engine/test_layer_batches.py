"""Layer captures completed later (``Stepper.step(rows_later=True)``, as a continue steps) equal
the captures made in the step: each layer's residual stream, and every tensor's shape, dtype and
preview values, through batches, a rewind, a forced token and the byte budget."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPT = "the quick brown fox"
STEPS = 12
SETTINGS = GenerationSettings(max_new_tokens=STEPS, min_new_tokens=STEPS)


def captures(stepper: Stepper, steps: range) -> list:
    """Each step's (residual, every layer's tensors) as the Stepper gives them."""
    layers = stepper.info.layers
    return [(stepper._captured(step)[0].residual.copy(), [stepper.layer_tensors(step, layer) for layer in range(layers)])
            for step in steps]


def made_in_each_step(loaded, forced: dict[int, int] | None = None, mode: str = "full") -> list:
    stepper = Stepper(loaded, PROMPT, SETTINGS, layer_capture=mode)
    stepper.start()
    for index in range(STEPS):
        stepper.step(force=(forced or {}).get(index))
    return captures(stepper, range(STEPS))


def assert_same_captures(expected, got):
    assert len(got) == len(expected)
    for (want_residual, want_layers), (residual, layers) in zip(expected, got):
        np.testing.assert_allclose(residual, want_residual, atol=1e-6)
        assert len(layers) == len(want_layers)
        for want, have in zip(want_layers, layers):
            assert [(t.name, t.shape, t.dtype) for t in have] == [(t.name, t.shape, t.dtype) for t in want]
            for want_tensor, have_tensor in zip(want, have):
                np.testing.assert_allclose(have_tensor.preview, want_tensor.preview, atol=1e-6)


def test_captures_made_later_equal_captures_made_in_the_step(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for index in range(STEPS):
        stepper.step(rows_later=True)
        if index in (2, 3, 8):  # batches of 3, 1 and 5 steps, then the last 3
            stepper.complete_waiting()
    assert len(stepper._layers.waiting) == 3
    stepper.complete_waiting()
    assert stepper._layers.waiting == [] and stepper._layers.newest == {}
    got = captures(stepper, range(STEPS))
    expected = made_in_each_step(loaded)
    assert_same_captures(expected, got)
    names = {tensor.name for tensor in got[0][1][0]}
    assert {"q", "k", "v", "layer_output", "mlp_output"} <= names
    if loaded.family == "t5":
        assert {"position_bias", "cross_k", "cross_v"} <= names


def test_reading_a_waiting_step_completes_it(loaded):
    """The layers view or the logit lens asks for a step whose capture still waits: it is made then."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(4):
        stepper.step(rows_later=True)
    assert stepper._layers.waiting
    got = captures(stepper, range(2, 4))
    assert stepper._layers.waiting == []
    assert_same_captures(made_in_each_step(loaded)[2:4], got)
    assert len(stepper.lens(3)) == stepper.info.layers


def test_a_rewind_or_a_forced_token_completes_the_waiting_captures_first(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(6):
        stepper.step(rows_later=True)
    stepper.rewind(4)  # the crop must not change what steps 0-5 saw
    assert stepper._layers.waiting == []
    first = captures(stepper, range(6))
    stepper.step(rows_later=True)
    forced_id = stepper.step(rows_later=True).token_id
    stepper.rewind(5)
    stepper.step(force=forced_id)  # not rows_later: nothing waits before it
    for _ in range(STEPS - 6):
        stepper.step(rows_later=True)
    stepper.complete_waiting()
    expected = made_in_each_step(loaded, forced={5: forced_id})
    assert_same_captures(expected[:4], first[:4])
    assert_same_captures(expected, captures(stepper, range(STEPS)))


def test_a_residual_capture_waits_too(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS, layer_capture="residual")
    stepper.start()
    for _ in range(STEPS):
        stepper.step(rows_later=True)
    stepper.complete_waiting()
    got = [(stepper._captured(step)[0].residual.copy(), [()] * stepper.info.layers) for step in range(STEPS)]
    expected = [(residual, [()] * len(layers)) for residual, layers in made_in_each_step(loaded, mode="residual")]
    assert_same_captures(expected, got)


def test_completed_captures_let_the_cache_go(loaded):
    """A completed capture keeps no tensor: once the cache moves on, the keys it was read from are freed."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(4):
        stepper.step(rows_later=True)
    keys = weakref.ref(stepper._layers.newest[(0, "k")])
    stepper.complete_waiting()
    for _ in range(2):
        stepper.step()
    gc.collect()
    assert keys() is None
