"""A continue's decode steps capture no layers; the Stepper runs a step's forward pass again when
its layers are first asked for (``Stepper._replayed``). The replayed capture equals the capture
made in the step, value for value: each layer's residual stream, and every tensor's shape, dtype
and preview, through hand-overs, a rewind, a forced token and sampling; and a replay leaves the
live session as it was."""

from __future__ import annotations

import numpy as np
import pytest

from lmscope.engine.errors import UserError
from lmscope.engine.layers import REPLAY
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from test_lens import lmscope_hooks

PROMPT = "the quick brown fox"
STEPS = 12
SETTINGS = GenerationSettings(max_new_tokens=STEPS, min_new_tokens=STEPS)


def captures(stepper: Stepper, steps: range) -> list:
    """Each step's (residual, every layer's tensors) as the Stepper gives them."""
    layers = stepper.info.layers
    return [(stepper._captured(step)[0].residual.copy(),
             [stepper.layer_tensors(step, layer) for layer in range(layers)])
            for step in steps]


def made_in_each_step(loaded, forced: dict[int, int] | None = None, mode: str = "full",
                      settings: GenerationSettings = SETTINGS) -> list:
    stepper = Stepper(loaded, PROMPT, settings, layer_capture=mode)
    stepper.start()
    for index in range(settings.max_new_tokens):
        stepper.step(force=(forced or {}).get(index))
    return captures(stepper, range(settings.max_new_tokens))


def assert_same_captures(expected, got):
    """Equal, not close: the replay runs the same operations on the same inputs."""
    assert len(got) == len(expected)
    for (want_residual, want_layers), (residual, layers) in zip(expected, got):
        np.testing.assert_array_equal(residual, want_residual)
        assert len(layers) == len(want_layers)
        for want, have in zip(want_layers, layers):
            assert [(t.name, t.shape, t.dtype, t.preview) for t in have] == \
                [(t.name, t.shape, t.dtype, t.preview) for t in want]


def continued(loaded, steps: int = STEPS, mode: str = "full", settings: GenerationSettings = SETTINGS) -> Stepper:
    """A Stepper stepped as a continue steps it, with a hand-over every few steps."""
    stepper = Stepper(loaded, PROMPT, settings, layer_capture=mode)
    stepper.start()
    for index in range(steps):
        stepper.step(rows_later=True, record_later=True)
        if index in (2, 3, 8):
            stepper.complete_waiting()
    stepper.complete_waiting()
    return stepper


def test_a_continue_captures_no_layers_in_its_decode_steps(loaded):
    """Only the step that ran the model's first pass captured its layers; no hook runs meanwhile."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(3):
        stepper.step(rows_later=True, record_later=True)
    assert lmscope_hooks(loaded.model) == []
    # Step 0 comes from the model's first pass (Llama: the prefill in start(); T5: the decoder's
    # first pass, through _prefill), captured as it runs.
    assert [stepper._residuals[step][0] is REPLAY for step in range(3)] == [False, True, True]
    stepper.step()  # a step of its own captures in the step again
    assert stepper._residuals[3][0] is not REPLAY
    assert lmscope_hooks(loaded.model)


def test_a_step_whose_rows_wait_captures_its_layers_in_the_step_when_asked(loaded):
    """``layers_later=False`` (the TUI's ``n`` with the Layers tab showing): the rows and record
    still wait, but the layers are captured as the step runs, equal to a step made in place, and
    the lens asks for no replay."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(STEPS):
        stepper.step(rows_later=True, record_later=True, layers_later=False)
        stepper.complete_waiting()
    assert all(stepper._residuals[step][0] is not REPLAY for step in range(STEPS))
    replays = []
    stepper._replayed = lambda step: replays.append(step)
    assert_same_captures(made_in_each_step(loaded), captures(stepper, range(STEPS)))
    assert replays == []


def test_a_step_made_in_place_may_leave_its_layers_to_a_replay(loaded):
    """``layers_later=True`` on a step whose rows are made in the step: no hook runs, and the
    replayed capture equals the one made in place."""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    stepper.step()
    for _ in range(STEPS - 1):
        stepper.step(layers_later=True)
    assert [stepper._residuals[step][0] is REPLAY for step in range(1, STEPS)] == [True] * (STEPS - 1)
    assert_same_captures(made_in_each_step(loaded), captures(stepper, range(STEPS)))


def test_replayed_captures_equal_captures_made_in_the_step(loaded):
    stepper = continued(loaded)
    got = captures(stepper, range(STEPS))
    assert all(stepper._residuals[step][0] is not REPLAY for step in range(STEPS))  # kept once made
    assert_same_captures(made_in_each_step(loaded), got)
    names = {tensor.name for tensor in got[1][1][0]}
    assert {"q", "k", "v", "layer_output", "mlp_output"} <= names
    if loaded.family == "t5":
        assert {"position_bias", "cross_k", "cross_v"} <= names


def test_a_replay_leaves_the_live_session_as_it_was(loaded):
    """Replaying steps in the middle of a continue changes nothing the continue goes on from:
    the cache keeps its tensors, and the next tokens and rows are those of an unread run."""
    def run(read_between: bool):
        stepper = Stepper(loaded, PROMPT, SETTINGS)
        stepper.start()
        made = []
        for index in range(STEPS):
            stepper.step(rows_later=True, record_later=True)
            if index == 5:
                made += stepper.complete_waiting()
                if read_between:
                    cache = stepper._state.model_kwargs
                    layers = _self_attention_layers(stepper)
                    before = [(id(layer.keys), layer.keys.shape, id(layer.values)) for layer in layers]
                    captures(stepper, range(6))
                    assert [(id(layer.keys), layer.keys.shape, id(layer.values)) for layer in layers] == before
                    assert stepper._state.model_kwargs is cache
        made += stepper.complete_waiting()
        return made

    plain, read = run(False), run(True)
    assert [r.token_id for r in read] == [r.token_id for r in plain]
    for want, have in zip(plain, read):
        np.testing.assert_array_equal(have.attention.probs, want.attention.probs)


def test_a_sampled_continue_replays_exactly_and_keeps_its_draws(loaded):
    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    stepper = Stepper(loaded, PROMPT, settings)
    stepper.start()
    made = []
    for index in range(8):
        stepper.step(rows_later=True, record_later=True)
        if index == 3:
            made += stepper.complete_waiting()
            captures(stepper, range(4))  # replays between draws
    made += stepper.complete_waiting()
    in_step = Stepper(loaded, PROMPT, settings)
    in_step.start()
    want = [in_step.step() for _ in range(8)]
    assert [r.token_id for r in made] == [r.token_id for r in want]
    assert_same_captures(captures(in_step, range(8)), captures(stepper, range(8)))


def test_a_rewind_or_a_forced_token_replays_the_steps_they_keep(loaded):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(6):
        stepper.step(rows_later=True)
    stepper.rewind(4)  # steps 0-3 still replay from the cropped cache
    first = captures(stepper, range(4))
    with pytest.raises(UserError, match="step 4 has not been made in the live session: steps 0 to 3 are"):
        stepper.lens(4)  # the old step 4 is another branch's now, and no step 4 was made again yet
    stepper.step(rows_later=True)
    forced_id = stepper.step(rows_later=True).token_id
    stepper.rewind(5)
    stepper.step(force=forced_id)  # not rows_later: captured in the step
    for _ in range(STEPS - 6):
        stepper.step(rows_later=True)
    stepper.complete_waiting()
    expected = made_in_each_step(loaded, forced={5: forced_id})
    assert_same_captures(expected[:4], first)
    assert_same_captures(expected, captures(stepper, range(STEPS)))


def test_a_residual_capture_replays_too(loaded):
    stepper = continued(loaded, mode="residual")
    got = [(stepper._captured(step)[0].residual.copy(), [()] * stepper.info.layers) for step in range(STEPS)]
    expected = [(residual, [()] * len(layers)) for residual, layers in made_in_each_step(loaded, mode="residual")]
    assert_same_captures(expected, got)


def _self_attention_layers(stepper: Stepper) -> list:
    from lmscope.engine.cache_stats import generation_cache

    cache = generation_cache(stepper._state.model_kwargs)
    return list(getattr(cache, "self_attention_cache", cache).layers)
