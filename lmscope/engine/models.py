"""Load a model and tokenizer, detect its family, and place it on a device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lmscope.engine.errors import UserError, first_line

FAMILIES = ("llama", "t5")
T5_MODEL_TYPES = ("t5", "mt5", "umt5", "byt5")
DTYPES = ("auto", "float32", "bfloat16", "float16")


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
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
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


def family_of(config) -> str:
    """``"t5"`` or ``"llama"`` from a config, or raise ModelError naming what is supported."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", "?")
    if model_type in T5_MODEL_TYPES:
        return "t5"
    if not getattr(config, "is_encoder_decoder", False) and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "llama"
    raise ModelError(
        f"model type {model_type!r} is not supported: lmscope steps decoder-only causal LMs "
        "(llama, mistral, qwen2 ...) and T5-family models (t5, mt5, byt5)"
    )


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
        raise ModelError(f"{source} is a {family} model: run `lmscope {family}` instead of `lmscope {expected_family}`")
    if placement is not None:
        placement.check_heads(config)
    extra = placement.load_kwargs() if placement is not None else {}
    model, tokenizer = _load_weights(source, family, torch_dtype, extra)
    if not extra:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, source=source)


def _local_only(source: str) -> bool:
    return Path(source).is_dir() or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")


def _load_config(source: str):
    from transformers import AutoConfig

    if source.startswith((".", "/", "~")) and not Path(source).expanduser().is_dir():
        raise ModelError(f"model folder {source!r} does not exist")
    try:
        return AutoConfig.from_pretrained(source, local_files_only=_local_only(source))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load model {source!r}: {first_line(error)}") from None


def _load_weights(source: str, family: str, torch_dtype, extra: dict | None = None):
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from lmscope.engine.attention import ATTENTION_NAME, register

    register()
    auto_class = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    local = _local_only(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = auto_class.from_pretrained(
            source, dtype=torch_dtype, attn_implementation=ATTENTION_NAME, local_files_only=local,
            **(extra or {}),
        )
    except (OSError, ValueError, SafetensorError) as error:  # missing, truncated or damaged files
        raise ModelError(f"cannot load model {source!r}: {first_line(error)}") from None
    return model, tokenizer
