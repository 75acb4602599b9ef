"""The Stepper and the recording used from Python the wrong way: one UserError that says what
to do, raised before anything changes, and the session goes on as if the call was never made."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmscope.engine.errors import UserError
from lmscope.engine.recording import ReplayEngine
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_session, write_trace

PROMPT = "the quick brown fox"
GREEDY = GenerationSettings(max_new_tokens=8, min_new_tokens=8)


def test_calls_out_of_order_say_what_comes_first(loaded):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    with pytest.raises(UserError, match=r"call start\(\) before step\(\)"):
        stepper.step()
    with pytest.raises(UserError, match=r"call start\(\) before rewind\(\)"):
        stepper.rewind(0)
    with pytest.raises(UserError, match="step 0 has not been made in the live session: no step is"):
        stepper.lens(0)
    stepper.start()
    while not stepper.finished:
        stepper.step()
    with pytest.raises(UserError, match=r"generation has finished: start\(\) begins again, rewind\(step\)"):
        stepper.step()


@pytest.mark.parametrize("force", [2.7, 3.0, np.float32(3.0), True, "a", torch.tensor(3.0), torch.tensor([3])])
def test_a_force_that_is_no_token_id_changes_nothing(loaded, force):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    first = stepper.step()
    with pytest.raises(UserError, match="force needs a token id"):
        stepper.step(force=force)
    again = stepper.step()  # step 1, as if the call had not been made
    assert again.step == 1 and stepper.encode_prompt().dtype == torch.long
    stepper.rewind(0)
    assert stepper.step().token_id == first.token_id


@pytest.mark.parametrize("force", [np.int64(5), torch.tensor(5), 5])
def test_integer_ids_of_numpy_and_torch_are_forced(loaded, force):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    assert stepper.step(force=force).token_id == 5


@pytest.mark.parametrize("step", [1.5, 2.0, "2", None, True])
def test_a_rewind_to_no_step_number_changes_nothing(loaded, step):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    made = [stepper.step() for _ in range(4)]
    with pytest.raises(UserError, match="rewind needs a step number"):
        stepper.rewind(step)
    stepper.rewind(2)
    assert [stepper.step().token_id for _ in range(2)] == [r.token_id for r in made[2:]]


def test_the_lens_of_a_step_a_rewind_took_away_is_refused_until_it_is_made_again(loaded):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    for _ in range(6):
        stepper.step()
    stepper.rewind(3)
    for step in (3, 5):
        with pytest.raises(UserError, match=f"step {step} has not been made in the live session: steps 0 to 2"):
            stepper.lens(step)
        with pytest.raises(UserError, match=f"step {step} has not been made"):
            stepper.layer_tensors(step, 0)
    forced = stepper.step(force=100)
    lens = stepper.lens(3)
    assert lens[-1].top[0].token_id == forced.stages[0].top[0].token_id  # the new step's own lens (its logits)


def test_layers_and_top_out_of_range_are_refused(loaded):
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    stepper.step()
    layers = stepper.info.layers
    assert stepper.layer_tensors(0, layers - 1)
    for layer in (layers, -1, 1.0, "0"):
        with pytest.raises(UserError, match="layer"):
            stepper.layer_tensors(0, layer)
    for top in (0, -1, 10**9):
        with pytest.raises(UserError, match="top must be 1 to"):
            stepper.lens(0, top=top)


def test_a_replay_and_a_closed_writer_refuse_in_one_line(tmp_path):
    path = tmp_path / "s.lmscope"
    session = write_trace(path, make_session("llama", steps=3))
    trace = Trace(path)
    for index in (3, -1, "0"):
        with pytest.raises(UserError, match="has no step"):
            trace.step(index)
        with pytest.raises(UserError, match="has no step"):
            trace.step_data(index)
    replay = ReplayEngine(trace)
    for call in (lambda: replay.lens(0), lambda: replay.layer_tensors(0, 0)):
        with pytest.raises(UserError, match="keeps no (logit lens for this step|layer tensors)"):
            call()
    writer = TraceWriter(tmp_path / "w.lmscope")
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    writer.close()
    with pytest.raises(UserError, match="is closed"):
        writer.step(session.steps[0])


@pytest.mark.parametrize("fields, needle", [
    (dict(family="bogus"), "family must be one of 'llama', 't5', not 'bogus'"),
    (dict(prompt=None), "prompt must be str"),
    (dict(top=1.5), "top must be int"),
    (dict(prefill_rows=None), "prefill_rows must be int"),
    (dict(settings=None), "settings must be GenerationSettings"),
    (dict(layer_capture="bogus"), "layer_capture must be one of 'off', 'residual', 'full'"),
    (dict(settings=GenerationSettings(bad_words="fox")), "bad_words is a tuple of texts, not one text"),
    (dict(settings=GenerationSettings(stop_strings="fox")), "stop_strings is a tuple of texts"),
    (dict(breakpoints="p < 1"), "breakpoints is a tuple of texts"),
    (dict(settings=GenerationSettings(max_new_tokens=2.5)), "settings.max_new_tokens must be int, not 2.5"),
    (dict(settings=GenerationSettings(do_sample=True, seed=2**70)), "--seed must be between"),
])
def test_session_options_made_in_python_are_checked_before_loading(fields, needle):
    from lmscope.engine.session import SessionOptions

    options = SessionOptions(**{"family": "t5", "prompt": "the king", **fields})
    with pytest.raises(UserError, match=needle):
        options.check()


def test_first_token_of_no_text_or_a_long_unknown_one_is_one_short_line():
    from lmscope.engine import defaults, models

    stepper = Stepper(models.load(str(defaults.default_t5_dir()), "t5", "cpu", "float32"), "the king", GREEDY)
    for text in (None, 5, b"king"):
        with pytest.raises(UserError, match="first_token needs a text"):
            stepper.first_token(text)
    with pytest.raises(UserError) as refused:
        stepper.first_token("zq" * 5000)
    assert len(str(refused.value)) < 200 and "is not in the model's vocabulary" in str(refused.value)
