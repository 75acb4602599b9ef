"""Settings that overflow float32, and bad words that are special tokens: one line, exit 2.

A temperature or repetition penalty float32 cannot hold is refused up front; a combination whose
scores still overflow at run time (``torch.multinomial`` refuses the probabilities, in
``model.generate`` as in lmscope) ends the step with a ``UserError`` that names the flags.
"""

from __future__ import annotations

import pytest
import torch

from lmscope.cli import main
from lmscope.engine import defaults, models
from lmscope.engine.errors import UserError
from lmscope.engine.host_copy import HostCopy
from lmscope.engine.processors import NoDistributionError, sample
from lmscope.engine.settings import GenerationSettings, SettingsError, bad_words_ids, validate
from lmscope.engine.stepper import Stepper

OVERFLOWING = dict(do_sample=True, temperature=1e-30, repetition_penalty=1e-9, seed=1)
"""Each value passes its own check; together they overflow float32 on the demo T5's first step."""


@pytest.fixture(scope="module")
def demo_t5():
    return models.load(str(defaults.default_t5_dir()), "t5", "cpu", "float32")


def refused(**settings) -> str:
    with pytest.raises(SettingsError) as raised:
        validate(GenerationSettings(**settings))
    return str(raised.value)


@pytest.mark.parametrize("value", [float("inf"), 1e308, 3.41e38])
def test_temperature_float32_cannot_hold(value):
    message = refused(do_sample=True, temperature=value)
    assert message.startswith("--temperature must be in [1e-30, 3.4e+38]"), message


@pytest.mark.parametrize("value", [float("inf"), 1e308, 1e39, 1.1e30, 3e-39, 1e-31, 1e-300])
def test_repetition_penalty_float32_cannot_hold(value):
    message = refused(repetition_penalty=value)
    assert message.startswith("--repetition-penalty must be in [1e-30, 1e+30]"), message


def test_the_range_ends_are_accepted():
    for settings in (dict(do_sample=True, temperature=3.4e38), dict(do_sample=True, temperature=1e-30),
                     dict(repetition_penalty=1e-30), dict(repetition_penalty=1e30)):
        validate(GenerationSettings(**settings))


def test_nan_and_zero_keep_their_messages():
    """Neither falls to the range checks' lines (about float32's range); NaN is named as no number."""
    assert refused(do_sample=True, temperature=float("nan")) == "--temperature must be a number, not nan"
    assert refused(repetition_penalty=float("nan")) == "--repetition-penalty must be a number, not nan"
    assert refused(repetition_penalty=0.0) == "--repetition-penalty must be > 0"
    assert refused(do_sample=True, temperature=0.0) == "--temperature must be > 0"


def test_special_token_bad_words(demo_t5):
    """'</s>' is a token of the demo T5's word-level vocabulary: only ' </s>' (a lone space before
    it) encodes to <unk>. The word is not said to be missing from the vocabulary."""
    tokenizer = demo_t5.tokenizer
    assert bad_words_ids(tokenizer, ("<pad>",)) == [[tokenizer.pad_token_id]]  # not [<unk>, <pad>]
    with pytest.raises(SettingsError) as raised:
        bad_words_ids(tokenizer, ("</s>",))
    assert "end-of-sequence token" in str(raised.value) and "vocabulary" not in str(raised.value)
    with pytest.raises(SettingsError, match="not in the model's vocabulary"):
        bad_words_ids(tokenizer, ("zzqxj",))
    assert bad_words_ids(tokenizer, ("Frau", "<pad>")) == [tokenizer("Frau", add_special_tokens=False).input_ids,
                                                           [tokenizer.pad_token_id]]


def test_sample_names_the_flags_only_when_it_fails():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    ids = torch.tensor([[0]])
    probs = torch.softmax(logits, dim=-1)
    settings = GenerationSettings(**OVERFLOWING)
    torch.manual_seed(0)
    assert sample(probs, step=3, processors=[], input_ids=ids, logits=logits, settings=settings).shape == (1,)
    with pytest.raises(NoDistributionError) as raised:  # a processor left nan scores
        sample(torch.tensor([[float("nan"), 0.5, 0.5]]), step=3,
               processors=[lambda input_ids, scores: scores * float("inf")], input_ids=ids, logits=logits,
               settings=settings)
    message = str(raised.value)
    assert isinstance(raised.value, UserError) and "\n" not in message
    assert message.startswith("sampling failed at step 3: the processors left no valid distribution"), message
    assert "--temperature 1e-30 with --repetition-penalty 1e-09" in message
    with pytest.raises(NoDistributionError, match="model's own logits are inf or nan"):
        sample(torch.tensor([[float("nan"), 0.5, 0.5]]), step=0, processors=[], input_ids=ids,
               logits=torch.tensor([[float("nan"), 1.0, 1.0]]), settings=GenerationSettings(do_sample=True))
    with pytest.raises(RuntimeError) as other:  # any other failure stays what it was
        sample(torch.ones(1, 1, 3), step=0, processors=[], input_ids=ids, logits=logits, settings=settings)
    assert not isinstance(other.value, UserError)


def test_sample_on_the_device_path_checks_with_the_step_copy(monkeypatch):
    """The device's path draws without checking (no device-side assert) and the step's copy
    raises the CPU's error; where the probabilities are a distribution it draws the CPU's id."""
    monkeypatch.setattr(HostCopy, "join_on_host", True)
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    ids = torch.tensor([[0]])
    probs = torch.softmax(logits, dim=-1)
    settings = GenerationSettings(**OVERFLOWING)
    drawn = []
    for host_copy in (None, HostCopy()):
        torch.manual_seed(7)
        drawn.append([sample(probs, step=3, processors=[], input_ids=ids, logits=logits, settings=settings,
                             host_copy=host_copy).item() for _ in range(20)])
        if host_copy is not None:
            host_copy.copy()  # every draw was a distribution: nothing raised
    assert drawn[0] == drawn[1] and len(set(drawn[0])) > 1
    for bad in (float("nan"), float("-inf")):  # softmax of a nan, or of scores all -inf
        host_copy = HostCopy()
        nan_probs = torch.softmax(torch.tensor([[bad, bad, bad, bad]]), dim=-1)
        token = sample(nan_probs, step=0, processors=[], input_ids=ids, logits=torch.tensor([[bad] * 4]),
                       settings=settings, host_copy=host_copy)
        assert token.shape == (1,)  # drawn from the stand-in: nothing checked yet
        with pytest.raises(NoDistributionError, match="at step 0: the model's own logits are inf or nan"):
            host_copy.copy()


@pytest.mark.parametrize("join_on_host", [False, True], ids=["host path", "device path"])
def test_stepper_fails_where_generate_fails(demo_t5, join_on_host, monkeypatch):
    monkeypatch.setattr(HostCopy, "join_on_host", join_on_host)
    settings = GenerationSettings(max_new_tokens=2, **OVERFLOWING)
    validate(settings)
    prompt_ids = demo_t5.tokenizer("the man opens the door", return_tensors="pt").input_ids
    with pytest.raises(RuntimeError, match="probability tensor"):  # fidelity: generate fails too
        torch.manual_seed(1)
        with torch.no_grad():
            demo_t5.model.generate(prompt_ids, **settings.generate_kwargs(demo_t5.tokenizer))
    stepper = Stepper(demo_t5, "the man opens the door", settings)
    stepper.start()
    with pytest.raises(NoDistributionError, match="at step 0: .*--temperature 1e-30 with --repetition-penalty"):
        stepper.step()


def one_error_line(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmscope: error: "), err
    return lines[0]


@pytest.mark.parametrize("output", ["--json", "--headless"])
def test_cli_overflow_at_run_time(output, capsys):
    line = one_error_line(["t5", output, "--max-new-tokens", "2", "--do-sample", "--temperature", "1e-30",
                           "--repetition-penalty", "1e-9", "--seed", "1"], capsys)
    assert "sampling failed at step 0" in line and "--temperature 1e-30" in line, line
    assert "--repetition-penalty 1e-09" in line and "RuntimeError" not in line, line


def test_cli_infinite_temperature(capsys):
    line = one_error_line(["t5", "--json", "--max-new-tokens", "2", "--do-sample", "--temperature", "inf",
                           "--no-repeat-ngram-size", "1"], capsys)
    assert "--temperature must be in [1e-30, 3.4e+38]" in line, line
    line = one_error_line(["t5", "--headless", "--max-new-tokens", "2", "--do-sample",
                           "--repetition-penalty", "1e-39", "--seed", "1"], capsys)
    assert "--repetition-penalty must be in [1e-30, 1e+30]" in line, line


def test_cli_eos_bad_word(capsys):
    line = one_error_line(["t5", "--json", "--max-new-tokens", "2", "--bad-word", "</s>"], capsys)
    assert "end-of-sequence token" in line and "vocabulary" not in line, line


def test_cli_tiny_penalty_greedy(capsys):
    """Greedy has no sampling to fail: a penalty of 3e-39 made a seen token's score infinite, and
    argmax chose it with a nan probability (exit 0, NaN in the JSON)."""
    line = one_error_line(["t5", "--json", "--max-new-tokens", "3", "--repetition-penalty", "3e-39"], capsys)
    assert "--repetition-penalty must be in [1e-30, 1e+30]" in line, line


@pytest.mark.integration
def test_the_default_llamas_end_of_turn_is_refused_as_a_bad_word():
    """SmolLM2's end-of-sequence token is <|im_end|>; its spaced variant is [space, eos], which
    hid it from the check that refuses T5's </s>."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(defaults.default_llama_dir())
    assert tokenizer.eos_token == "<|im_end|>"
    with pytest.raises(SettingsError, match="is the end-of-sequence token"):
        bad_words_ids(tokenizer, ("<|im_end|>",))
    assert bad_words_ids(tokenizer, ("Paris",))  # a word is banned as before


@pytest.mark.parametrize("join_on_host", [False, True], ids=["host path", "device path"])
def test_a_failed_sampling_step_rewinds_to_the_same_tokens(demo_t5, join_on_host, monkeypatch):
    """After a sampling failure (at once on the CPU, with the step's copy on a GPU) the session
    goes on: rewinding to the failed step draws what an unbroken run draws."""
    monkeypatch.setattr(HostCopy, "join_on_host", join_on_host)
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, seed=3)
    unbroken = Stepper(demo_t5, "the man opens the door", settings)
    unbroken.start()
    expected = [unbroken.step().token_id for _ in range(6)]
    stepper = Stepper(demo_t5, "the man opens the door", settings)
    stepper.start()
    tokens = [stepper.step().token_id for _ in range(3)]
    nan_scores = lambda input_ids, scores: scores * float("nan")  # noqa: E731
    stepper._state.processors.append(nan_scores)
    with pytest.raises(NoDistributionError, match="sampling failed at step 3"):
        stepper.step()
    stepper._state.processors.remove(nan_scores)
    stepper.rewind(3)
    assert tokens + [stepper.step().token_id for _ in range(3)] == expected
