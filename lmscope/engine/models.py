"""Load a model and tokenizer, detect its family, and place it on a device."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lmscope.engine.errors import UserError, first_line

FAMILIES = ("llama", "t5")
T5_MODEL_TYPES = ("t5", "mt5", "umt5", "byt5")
DTYPES = ("auto", "float32", "bfloat16", "float16")

_CUDA_INDEX = re.compile(r"cuda:(?:0|[1-9][0-9]*)")
"""``cuda:N`` as torch reads it: ASCII digits, no leading zero (``isdigit()`` also passes '01',
'\u0661' and '\u00b9', which torch refuses as an invalid device string once the model loads)."""


class ModelError(UserError):
    """The model cannot be loaded as asked; the message is one line meant for the user."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to step.

    Attributes:
        model: the transformers model, in eval mode, on ``device``.
        tokenizer: its tokenizer.
        family: ``"llama"`` (decoder-only) or ``"t5"`` (encoder-decoder).
        source: the id or path it came from.
    """

    model: object
    tokenizer: object
    family: str
    source: str


def resolve_device(device: str) -> str:
    """Turn ``auto|cpu|cuda|cuda:N`` into a torch device string, or raise ModelError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or _CUDA_INDEX.fullmatch(device):
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r} asked for, but no CUDA GPU is available here")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
        return device
    raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def resolve_dtype(dtype: str, device: str):
    """Turn a dtype name into a torch dtype; ``auto`` is float32 on CPU and bfloat16 on GPU."""
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


SUPPORTED = ("lmscope steps decoder-only causal LMs built like Llama (llama, mistral, qwen2, gemma, phi3 ...) "
             "and T5-family models (t5, mt5, byt5)")
"""What every refusal of an architecture says is supported (the README's Models section)."""


LLAMA_LIKE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"})
"""Types built like Llama, taken without building one on the meta device first: that check
imports the type's modeling code before the TUI opens (2.2 s for the default Llama on the 2-core
machine, where the app is otherwise up at once and loads the model in its worker). The loaded
model is checked all the same (:func:`check_steppable`)."""


def decoder_config(config):
    """The config that describes the model's text decoder: ``config`` itself, or a multimodal
    model's ``text_config`` (Gemma 3's larger checkpoints: the heads, layers and positions are there)."""
    return config.get_text_config(decoder=True)


def family_of(config) -> str:
    """``"t5"`` or ``"llama"`` from a config, or raise ModelError naming what is supported.

    ``config`` is a PretrainedConfig, a config.json dict, or anything with ``model_type`` (and
    ``is_encoder_decoder``). A causal LM counts as ``"llama"`` only if lmscope can step it (see
    :func:`unsupported_architecture`): transformers' causal-LM list also holds GPT-2, BERT and
    others whose layers lmscope's hooks do not know.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type, encoder_decoder = _config_field(config, "model_type", "?"), _config_field(config, "is_encoder_decoder")
    if model_type in T5_MODEL_TYPES:
        return "t5"
    if encoder_decoder or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"model type {model_type!r} is not supported: {SUPPORTED}")
    refusal = None if model_type in LLAMA_LIKE_TYPES else unsupported_architecture(config)
    if refusal:
        raise ModelError(refusal)
    return "llama"


def unsupported_architecture(config) -> str | None:
    """Why lmscope cannot step the causal LM ``config`` describes (one line), or None.

    Builds the model on the meta device (no weights, no memory; a few hundredths of a second)
    and looks for what :func:`check_steppable` needs. ``config`` as in :func:`family_of`; from a
    bare ``model_type`` the type's default config is used (the layers' kind depends on the type).
    None too when no model can be built from the config: loading then tells, and the loaded
    model is checked again.
    """
    model_type = _config_field(config, "model_type", "?")
    if model_type in T5_MODEL_TYPES:
        return None
    model = _empty_model(config)
    return None if model is None else _refusal(model, model_type)


def check_steppable(model, family: str) -> None:
    """Raise ModelError when lmscope's hooks cannot step this loaded ``"llama"``-family model."""
    if family == "llama":
        refusal = _refusal(model, getattr(model.config, "model_type", "?"))
        if refusal:
            raise ModelError(refusal)


def _refusal(model, model_type: str) -> str | None:
    """What ``engine/layers.py``, ``engine/lens.py`` and ``engine/attention.py`` need from a
    decoder-only model: ``get_decoder().layers``, each layer's ``self_attn`` and ``mlp``, and the
    decoder's final ``norm``. None when the model has them."""
    import torch

    try:
        decoder = model.get_decoder()
    except Exception:  # noqa: BLE001 - a model without one is what this reports
        decoder = None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        lacking = "it has no Llama-style decoder layers"
    elif not all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in layers):
        lacking = "its decoder layers have no self_attn and mlp as Llama's do"
    elif not hasattr(decoder, "norm"):
        lacking = "its decoder has no final norm as Llama's does"
    elif other_kinds := _layers_without_softmax_attention(model.config):
        lacking = (f"some of its layers are {' and '.join(other_kinds)} layers, which attend without a "
                   "softmax over the keys that lmscope could show")
    else:
        return None
    return f"model type {model_type!r} ({type(model).__name__}) is not supported: {lacking}; {SUPPORTED}"


SOFTMAX_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention", "hybrid"})
"""Layer types (a config's ``layer_types``) whose attention is a softmax over keys, all or a
window of them: what lmscope's rows show (a ``hybrid`` layer keeps a linear-attention state beside
its softmax over every key, as ZAYA's do: the rows are that softmax's, as eager attention's
weights are). Linear attention, convolutions and state-space layers (MiniMax's) have none."""


def _layers_without_softmax_attention(config) -> list[str]:
    """The layer types of ``config``'s decoder that are not :data:`SOFTMAX_LAYER_TYPES`."""
    kinds = getattr(decoder_config(config), "layer_types", None) or ()
    return sorted(set(kinds) - SOFTMAX_LAYER_TYPES)


def _config_field(config, name: str, default=False):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def _empty_model(config):
    """The causal LM ``config`` describes, on the meta device; None when it cannot be built."""
    import copy
    import warnings

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a config's warnings are the loader's to give, not this check's
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(config, PretrainedConfig):
                config = copy.deepcopy(config)
            elif isinstance(config, dict):
                config = AutoConfig.for_model(**config)
            else:
                config = AutoConfig.for_model(_config_field(config, "model_type", "?"))
            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - an odd config, a missing optional package: loading will say
        return None
    finally:
        hf_logging.set_verbosity(verbosity)


def load(source: str, expected_family: str, device: str = "auto", dtype: str = "auto", placement=None) -> LoadedModel:
    """Load ``source`` (a hub id or a local folder) for stepping.

    Args:
        source: hub id or local path.
        expected_family: the subcommand's family; another family is an error.
        device: ``auto|cpu|cuda|cuda:N``.
        dtype: ``auto|float32|bfloat16|float16``.
        placement: a device map or tensor parallel (``engine.placement.Placement``); transformers
            then places the weights and the model is not moved.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    config = _load_config(source)
    family = family_of(config)
    if family != expected_family:
        raise ModelError(f"{source!r} is a {family} model: run `lmscope {family}` instead of `lmscope {expected_family}`")
    if placement is not None:
        placement.check_heads(decoder_config(config))
    extra = placement.load_kwargs() if placement is not None else {}
    model, tokenizer = _load_weights(source, family, torch_dtype, extra)
    check_steppable(model, family)  # what the config could not tell (it may not build on meta)
    if not extra:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, source=source)


def _local_only(source: str) -> bool:
    return Path(source).is_dir() or _offline()


def _load_config(source: str):
    from transformers import AutoConfig

    if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ModelError(f"model folder {source!r} does not exist")
    try:
        return AutoConfig.from_pretrained(source, local_files_only=_local_only(source))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load model {source!r}: {first_line(error)}{_not_here(source)}") from None


def _not_here(source: str) -> str:
    """What to add when a hub id could not be had: offline, only the hub's cache can give it,
    and an id like ``models/t5`` may have been meant as a folder, which is not there."""
    if Path(source).expanduser().exists():
        return ""
    if _offline():
        hint = " (HF_HUB_OFFLINE is set: only models already in the Hugging Face cache load)"
    else:  # the hub's retries took ~25 s to fail without a network
        hint = " (without a network, HF_HUB_OFFLINE=1 loads from the Hugging Face cache only, at once)"
    return f"{hint}; there is no folder {source!r} here either"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def _load_weights(source: str, family: str, torch_dtype, extra: dict | None = None):
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from lmscope.engine.attention import ATTENTION_NAME, register

    register()
    auto_class = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    local = _local_only(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as error:  # no, or damaged, tokenizer files
        raise ModelError(_tokenizer_problem(source, error)) from None
    try:
        model = auto_class.from_pretrained(
            source, dtype=torch_dtype, attn_implementation=ATTENTION_NAME, local_files_only=local,
            **(extra or {}),
        )
    except (OSError, ValueError, SafetensorError) as error:  # missing, truncated or damaged files
        raise ModelError(f"cannot load model {source!r}: {first_line(error)}") from None
    return model, tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
"""Files one of which a tokenizer is built from (with ``tokenizer_config.json`` next to them)."""


def _tokenizer_problem(source: str, error: BaseException) -> str:
    """One line for a tokenizer that would not load: which files a model folder needs."""
    folder = Path(source).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        detail = "none of " + ", ".join(TOKENIZER_FILES) + " is there"
    else:
        detail = first_line(error).rstrip(" :")
    return (f"cannot load model {source!r}: it has no usable tokenizer ({detail}); a model folder needs "
            "tokenizer.json (or tokenizer.model) and tokenizer_config.json")
