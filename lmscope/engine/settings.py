"""Generation settings under transformers' GenerationConfig names, and their validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lmscope.engine.checks import is_text
from lmscope.engine.errors import UserError, first_line


class SettingsError(UserError):
    """A setting the user gave is invalid; the message is one line meant for them."""


@dataclass(frozen=True)
class GenerationSettings:
    """What ``model.generate`` would receive, under the same names.

    ``None`` means "not given": transformers then uses the model's generation config or its
    own default, exactly as ``generate`` would.
    """

    max_new_tokens: int = 32
    min_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    bad_words: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None

    def config_kwargs(self) -> dict:
        """The settings that are GenerationConfig fields as they are (no tokenizer needed)."""
        kwargs = {k: v for k, v in asdict(self).items() if v is not None}
        for local_only in ("bad_words", "stop_strings", "seed"):
            kwargs.pop(local_only, None)
        return kwargs

    def generate_kwargs(self, tokenizer) -> dict:
        """Keyword arguments for lmscope's own call of ``model.generate`` (see ``generation.prepare``).

        ``bad_words`` become ``bad_words_ids``. Stop strings become transformers' own
        ``StopStringCriteria`` passed as ``stopping_criteria``: ``generate`` drops ``tokenizer=``
        when ``custom_generate`` is a callable (it keeps only that callable's own extra keyword
        arguments), so ``stop_strings=`` alone would fail. ``generate`` merges the criterion with
        the ones it builds itself, exactly as it would with ``stop_strings=`` and ``tokenizer=``.

        Args:
            tokenizer: the model's tokenizer.
        """
        kwargs = self.config_kwargs()
        if self.bad_words:
            kwargs["bad_words_ids"] = bad_words_ids(tokenizer, self.bad_words)
        if self.stop_strings:
            kwargs["stopping_criteria"] = stop_string_criteria(tokenizer, self.stop_strings)
        return kwargs

    def changed(self) -> tuple[tuple[str, str], ...]:
        """The settings given explicitly, as (name, text) pairs for display."""
        pairs = []
        for name, value in asdict(self).items():
            if value not in (None, (), False):
                pairs.append((name, ",".join(value) if isinstance(value, tuple) else str(value)))
        return tuple(pairs)


def bad_words_ids(tokenizer, words: tuple[str, ...]) -> list[list[int]]:
    """Token id sequences for each banned word, as transformers' docs build them.

    A word is banned both at the start of a text and after a space, since BPE tokenizers
    give the two different ids. A variant that encodes to the tokenizer's unknown token (where
    the word does not hold it) is left out: the ban would fall on ``<unk>`` instead of the word.
    In the demo T5's word-level vocabulary the spaced variant of a special token does that (the
    space alone is a ``▁`` the vocabulary does not hold: ``' </s>'`` is ``[<unk>, </s>]``), and
    ``'</s>'`` itself is a token.

    Raises:
        SettingsError: no variant of a word encodes without the unknown token (the word is
            not in a word-level vocabulary), or the word is only the end-of-sequence token,
            which ``generate``'s ``bad_words_ids`` never bans (it drops that sequence).
    """
    sequences = []
    unknown = getattr(tokenizer, "unk_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    for word in words:
        kept, to_unknown, plain = [], False, None
        for variant in sorted({word, " " + word}):
            ids = tokenizer(variant, add_special_tokens=False).input_ids
            if variant == word:
                plain = ids
            if unknown is not None and unknown in ids and tokenizer.unk_token not in variant:
                to_unknown = True
                continue
            if ids and ids not in kept:
                kept.append(ids)
        if not kept and to_unknown:
            # A word-level vocabulary (the demo T5's) maps an unknown word to <unk>.
            raise SettingsError(f"--bad-word {word!r} is not in the model's vocabulary: it encodes to the "
                                f"unknown token {tokenizer.unk_token}, so it cannot be banned")
        if not kept:
            raise SettingsError(f"--bad-word {word!r} encodes to no token, so it cannot be banned")
        # The word is the end-of-sequence token itself (`</s>`, SmolLM2's `<|im_end|>`): generate
        # drops that ban, and the spaced variant would ban it only after a space.
        if eos is not None and (kept == [[eos]] or plain == [eos]):
            raise SettingsError(f"--bad-word {word!r} is the end-of-sequence token, which model.generate's "
                                "bad_words_ids never bans (it drops it): --min-new-tokens N delays it instead")
        sequences.extend(ids for ids in kept if ids not in sequences)
    return sequences


def stop_string_criteria(tokenizer, stop_strings: tuple[str, ...]):
    """transformers' ``StopStringCriteria`` for ``stop_strings``, in a ``StoppingCriteriaList``.

    Raises:
        SettingsError: the criterion cannot read this tokenizer's vocabulary, or no token can
            end any of the stop strings (:func:`_stop_refused`); ``model.generate(stop_strings=...)``
            fails the same way.
    """
    from transformers import StoppingCriteriaList, StopStringCriteria

    try:
        return StoppingCriteriaList([StopStringCriteria(tokenizer, list(stop_strings))])
    except ValueError as error:
        raise SettingsError(_stop_refused(stop_strings, error)) from None


def _stop_refused(stop_strings: tuple[str, ...], error: ValueError) -> str:
    """Why ``StopStringCriteria`` refused, in one line. It maps every token to its text by
    decoding it after a fixed prefix, which a word-level vocabulary (the demo T5's) turns into
    ``<unk>`` ("substring not found"). With a readable vocabulary it refuses only when no token
    can end any of the stop strings ("unable to identify tokens"): most often a character the
    vocabulary lacks, such as a line break, which is no unreadable vocabulary."""
    if "unable to identify tokens" not in str(error):
        return ("--stop cannot be used with this model: transformers' stop strings cannot read its "
                "tokenizer's vocabulary (model.generate(stop_strings=...) fails on it too)")
    shown = ", ".join(repr(text) for text in stop_strings)
    which, found = ("it", "it") if len(stop_strings) == 1 else ("any of them", "one")
    return (f"--stop {shown}: no token in this model's vocabulary can end {which} (most often a character "
            f"the vocabulary lacks), so generation could never produce {found}: stop on other text")


def validate(settings: GenerationSettings) -> None:
    """Reject settings ``generate`` would reject or silently misuse, with one line each.

    transformers' own checks run too: ``GenerationConfig.validate(strict=True)`` here, and each
    processor's constructor when the processor list is built. These checks come first so the
    user reads the setting's flag name rather than a processor's internals.
    """
    _refuse_nan(settings)
    checks = (
        (settings.max_new_tokens < 1, "--max-new-tokens must be at least 1"),
        (settings.min_new_tokens is not None and settings.min_new_tokens < 0, "--min-new-tokens must be >= 0"),
        (_positive_or_none(settings.temperature), "--temperature must be > 0"),
        (settings.temperature is not None and 0 < settings.temperature < MIN_TEMPERATURE,
         f"--temperature must be at least {MIN_TEMPERATURE:g}: the scores divided by a smaller one overflow "
         "float32 and sampling fails; for the likeliest token drop --do-sample"),
        (settings.temperature is not None and settings.temperature > FLOAT32_LIMIT,
         f"--temperature must be in [{MIN_TEMPERATURE:g}, {FLOAT32_LIMIT:g}]: a larger one is infinite in "
         "float32, and the -inf score of a removed token divided by it is nan"),
        (settings.top_k is not None and settings.top_k < 0, "--top-k must be >= 0"),
        (settings.top_p is not None and not 0 < settings.top_p <= 1, "--top-p must be in (0, 1]"),
        (settings.min_p is not None and not 0 <= settings.min_p <= 1, "--min-p must be in [0, 1]"),
        (settings.typical_p is not None and not 0 < settings.typical_p <= 1, "--typical-p must be in (0, 1]"),
        (_positive_or_none(settings.repetition_penalty), "--repetition-penalty must be > 0"),
        (settings.repetition_penalty is not None
         and not MIN_REPETITION_PENALTY <= settings.repetition_penalty <= MAX_REPETITION_PENALTY,
         f"--repetition-penalty must be in [{MIN_REPETITION_PENALTY:g}, {MAX_REPETITION_PENALTY:g}]: a seen "
         "token's score is multiplied or divided by it, and beyond that range the score leaves float32's range "
         "(greedy picks an infinite score, sampling fails)"),
        (settings.no_repeat_ngram_size is not None and settings.no_repeat_ngram_size < 0,
         "--no-repeat-ngram-size must be >= 0"),
        # An empty stop string is found in any text (generation would end at the first token),
        # and an empty bad word would ban only its spaced variant: the space itself.
        ("" in settings.bad_words, "--bad-word needs a word: it was given empty"),
        ("" in settings.stop_strings, "--stop needs text: it was given empty"),
        (not is_text(*settings.bad_words), "--bad-word is not valid UTF-8 text: check the terminal's encoding"),
        (not is_text(*settings.stop_strings), "--stop is not valid UTF-8 text: check the terminal's encoding"),
    )
    for failed, message in checks:
        if failed:
            raise SettingsError(message)
    given = [flag for flag, value in _SAMPLING_ONLY if getattr(settings, value) is not None]
    if given and not settings.do_sample:
        verb = "applies" if len(given) == 1 else "apply"
        raise SettingsError(f"{', '.join(given)} only {verb} when sampling: add --do-sample")
    _validate_with_transformers(settings)


def _refuse_nan(settings: GenerationSettings) -> None:
    """A NaN setting (``--temperature nan``: Python's float reads it) in words of its own: the
    range checks refuse it too, since NaN compares false, but "must be > 0" for a value that is
    no number at all leaves the user looking for a sign they never typed."""
    for name, value in asdict(settings).items():
        if isinstance(value, float) and math.isnan(value):
            raise SettingsError(f"--{name.replace('_', '-')} must be a number, not nan")


MIN_TEMPERATURE = 1e-30
"""Below this, ``scores / temperature`` leaves float32's range (3.4e38) for scores of magnitude
3.4e8 or less, far beyond a model's logits: the probabilities become nan and ``torch.multinomial``
fails, in ``generate()`` as here (a temperature of 1e-45 did, on the demo T5)."""

FLOAT32_LIMIT = 3.4e38
"""The largest --temperature and --repetition-penalty: float32's largest finite number is
3.4028e38, above it a processor's float32 arithmetic makes the value infinite (scores divided
by an infinite temperature are 0, or nan where a processor had set -inf)."""

MIN_REPETITION_PENALTY = 1e-30
"""The smallest --repetition-penalty, and its reciprocal the largest: the penalty divides a seen
token's positive score and multiplies a negative one, which stays in float32's range (3.4e38) for
scores of magnitude 3.4e8 or less, as with :data:`MIN_TEMPERATURE`. A penalty of 3e-39 (whose own
reciprocal is finite) made a score of 10 infinite: greedy chose that token, its probability nan."""

MAX_REPETITION_PENALTY = 1e30
"""The largest --repetition-penalty (:data:`MIN_REPETITION_PENALTY`'s reciprocal, written out:
``1 / 1e-30`` is a hair above ``1e30`` in floating point)."""

_SAMPLING_ONLY = (("--temperature", "temperature"), ("--top-k", "top_k"), ("--top-p", "top_p"),
                  ("--min-p", "min_p"), ("--typical-p", "typical_p"), ("--seed", "seed"))


def _positive_or_none(value: float | None) -> bool:
    return value is not None and not value > 0


def _validate_with_transformers(settings: GenerationSettings) -> None:
    from transformers import GenerationConfig

    try:
        GenerationConfig(**settings.config_kwargs()).validate()
    except ValueError as error:
        raise SettingsError(first_line(error)) from None
