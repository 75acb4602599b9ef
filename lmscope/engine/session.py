"""Options of one lmscope session, and the factory that turns them into a running Stepper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lmscope.engine.checks import check_settings, is_text
from lmscope.engine.errors import UserError
from lmscope.engine.row_writes import direct_writes_wanted
from lmscope.engine.settings import GenerationSettings, validate

DEFAULT_PROMPTS = {
    "llama": "What is the capital of France?",
    "t5": "translate English to German: the woman laughs because the man opens the door",
}


@dataclass(frozen=True)
class SessionOptions:
    """Everything the CLI collects; the TUI and the headless printer share it.

    Attributes:
        family: ``"llama"`` or ``"t5"``: the subcommand.
        prompt: the text to generate from.
        model: hub id or local folder; None means the offline default of the family.
        settings: generation settings.
        device, dtype: where and how to load the weights.
        top: candidates kept per stage.
        chat: apply the tokenizer's chat template.
        capture_attention: record attention rows.
        prefill_rows: prompt rows of attention kept at prefill.
        breakpoints: ``--break`` expressions (see ``engine.breakpoints``).
        layer_capture: ``off``, ``residual`` or ``full`` (``engine.layers.CAPTURE_MODES``).
        device_map, max_memory, offload_folder: accelerate's device map (``engine.placement``).
    """

    family: str
    prompt: str
    model: str | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    device: str = "auto"
    dtype: str = "auto"
    top: int = 10
    chat: bool = False
    capture_attention: bool = True
    prefill_rows: int = 64
    breakpoints: tuple[str, ...] = ()
    layer_capture: str = "full"
    device_map: str | None = None
    max_memory: str | None = None
    offload_folder: str | None = None

    def check(self) -> None:
        """Reject bad options before any model is loaded (one-line UserError)."""
        self._check_types()
        if not self.prompt:  # a prompt of spaces or a line break is text to generate from
            raise UserError("the prompt is empty: pass --prompt TEXT")
        if self.model is not None and not self.model.strip():
            raise UserError("--model is empty: name a hub id or a model folder, or leave --model out for the default")
        if self.top < 1:
            raise UserError("--top must be at least 1")
        if self.prefill_rows < 1:
            raise UserError("--prefill-rows must be at least 1")
        validate(self.settings)
        check_settings(self.settings)  # the seed's range and min against max, as the CLI checks them
        if not is_text(*self.breakpoints):  # a recording stores them as UTF-8
            raise UserError("--break is not valid UTF-8 text: check the terminal's encoding")
        self.parsed_breakpoints()
        self.placement()
        direct_writes_wanted()  # the environment's $LMSCOPE_ROW_WRITES, read by every row store

    def _check_types(self) -> None:
        """What the CLI's parsing guarantees, checked for options made in Python: a wrong type
        would fail deep inside a tokenizer or a processor, or only after the weights load."""
        from lmscope.engine.layers import CAPTURE_MODES

        if self.family not in DEFAULT_PROMPTS:
            raise UserError(f"family must be one of {', '.join(map(repr, DEFAULT_PROMPTS))}, not {self.family!r}")
        for name, value, kind in (("prompt", self.prompt, str), ("top", self.top, int),
                                  ("prefill_rows", self.prefill_rows, int),
                                  ("settings", self.settings, GenerationSettings)):
            if not isinstance(value, kind) or isinstance(value, bool):
                raise UserError(f"{name} must be {kind.__name__}, not {value!r}")
        if self.layer_capture not in CAPTURE_MODES:
            raise UserError(f"layer_capture must be one of {', '.join(map(repr, CAPTURE_MODES))}, "
                            f"not {self.layer_capture!r}")
        for name in ("max_new_tokens", "min_new_tokens", "top_k", "no_repeat_ngram_size", "seed"):
            value = getattr(self.settings, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise UserError(f"settings.{name} must be int, not {value!r}")
        texts = {"bad_words": self.settings.bad_words, "stop_strings": self.settings.stop_strings,
                 "breakpoints": self.breakpoints}
        for name, value in texts.items():
            if isinstance(value, str):  # each of its characters would be one
                raise UserError(f"{name} is a tuple of texts, not one text: write ({value!r},)")

    def placement(self):
        """Device map or tensor parallel (``engine.placement.Placement``); PlacementError for bad flags."""
        from lmscope.engine.placement import placement_of

        return placement_of(self)

    def parsed_breakpoints(self) -> list:
        """The ``--break`` expressions, parsed (BreakpointError, a UserError, for a bad one)."""
        from lmscope.engine.breakpoints import parse

        return [parse(expr, top=self.top) for expr in self.breakpoints]


def model_source(options: SessionOptions, progress: Callable[[str], None] | None = None) -> str:
    """The id or folder to load: ``--model``, or the family's offline default."""
    if options.model:
        return options.model
    from lmscope.engine import defaults

    if options.family == "t5":
        return str(defaults.default_t5_dir())
    return str(defaults.ensure_default_llama(progress))


DEFAULT_LABELS = {"llama": "SmolLM2-135M-Instruct (default)", "t5": "lmscope demo T5 (default)"}
"""How the status bar names a default model, rather than by its cache path."""


def uses_chat(options: SessionOptions, tokenizer) -> bool:
    """Whether to apply the chat template: ``--chat``, or the default prompt on a chat model.

    The default prompt is a question; an instruct model (the default SmolLM2 is one) given it as
    plain text answers with its end-of-turn token at once, so the default run wraps it the way the
    model was trained to read questions. A prompt of the user's own is taken as it is.
    """
    if options.chat:
        return True
    return options.prompt == DEFAULT_PROMPTS[options.family] and bool(getattr(tokenizer, "chat_template", None))


def open_session(options: SessionOptions, progress: Callable[[str], None] | None = None):
    """Load the model and build a Stepper (slow: call from a worker thread in a UI).

    Quiet as the command is: no "Loading weights" bar or transformers warning on stderr while
    it loads; the program's own settings are back after (:func:`~lmscope.engine.quiet.quiet_loading`).
    """
    from lmscope.engine.quiet import quiet_loading

    with quiet_loading():
        return _open_session(options, progress)


def _open_session(options: SessionOptions, progress: Callable[[str], None] | None):
    """:func:`open_session`'s work: check the options, load the model, build the Stepper."""
    from dataclasses import replace

    from lmscope.engine import models
    from lmscope.engine.stepper import Stepper

    options.check()
    placement = options.placement()
    loaded = models.load(model_source(options, progress), options.family, options.device, options.dtype,
                         placement=placement if placement.spread else None)
    if not options.model:
        loaded = replace(loaded, source=DEFAULT_LABELS[options.family])
    stepper = Stepper(
        loaded, options.prompt, options.settings, top=options.top, chat=uses_chat(options, loaded.tokenizer),
        capture_attention=options.capture_attention, prefill_rows=options.prefill_rows,
        layer_capture=options.layer_capture,
    )
    # The ids the model will read: with the chat template, when the run uses it, not the bare text.
    check_fits(loaded, stepper.encode_prompt().shape[-1], options.settings.max_new_tokens)
    if placement.spread:
        from lmscope.engine import distributed
        from lmscope.engine.placement import describe, input_device

        stepper.info = replace(stepper.info, device=str(input_device(loaded.model)),
                               placement=describe(loaded.model, placement))
        return distributed.attach(stepper, placement.ranks)
    return stepper


def check_fits(loaded, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a prompt that leaves no room in the model's positions (transformers would only
    warn, then compute garbage or fail mid-run). T5's relative positions have no such limit."""
    from lmscope.engine.models import decoder_config

    limit = getattr(decoder_config(loaded.model.config), "max_position_embeddings", None)
    if loaded.family != "llama" or not limit:
        return
    if prompt_tokens + max_new_tokens > limit:
        raise UserError(
            f"the prompt is {prompt_tokens} token{'' if prompt_tokens == 1 else 's'} and --max-new-tokens "
            f"{max_new_tokens}, but the model reads at "
            f"most {limit} positions: shorten the prompt or lower --max-new-tokens"
        )
