"""Describe the tensors a forward pass saw, the way a debugger's Variables view lists them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from lmscope.engine.records import TensorInfo

PREVIEW_MAX = 16
"""Integer tensors with at most this many elements show their values (ids, positions)."""


def describe(named: dict) -> tuple[TensorInfo, ...]:
    """TensorInfo for every tensor value of ``named``; other values are skipped."""
    return tuple(_info(name, value) for name, value in named.items() if isinstance(value, torch.Tensor))


def describe_later(named: dict, host_copy) -> Callable[[], tuple[TensorInfo, ...]]:
    """Like :func:`describe`, without reading the device: the small integer tensors' values join
    ``host_copy`` (one snapshot of all of them), and the returned function, called after the
    copy, builds the TensorInfos."""
    tensors = {name: value for name, value in named.items() if isinstance(value, torch.Tensor)}
    small = [name for name, tensor in tensors.items() if _small_ints(tensor)]
    part = host_copy.add(torch.cat([tensors[name].reshape(-1).long() for name in small])) if small else None
    specs = [(name, tuple(tensor.shape), _dtype(tensor), tensor.numel() if name in small else 0)
             for name, tensor in tensors.items()]

    def infos() -> tuple[TensorInfo, ...]:
        values = part.array.tolist() if part is not None else []
        result, at = [], 0
        for name, shape, dtype, count in specs:
            result.append(TensorInfo(name=name, shape=shape, dtype=dtype, preview=tuple(values[at : at + count])))
            at += count
        return tuple(result)

    return infos


def _small_ints(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() and tensor.numel() <= PREVIEW_MAX


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _info(name: str, tensor: torch.Tensor) -> TensorInfo:
    return TensorInfo(
        name=name,
        shape=tuple(tensor.shape),
        dtype=_dtype(tensor),
        preview=tuple(int(v) for v in tensor.flatten().tolist()) if _small_ints(tensor) else (),
    )


class ForwardInputs:
    """Records the keyword tensors the top-level model receives."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @contextmanager
    def watch(self, seen: "Seen"):
        """Inside the block, a forward pre-hook shows ``seen`` what the model receives: for a call
        lmscope does not make itself (transformers' ``_prefill``). A call lmscope makes shows its
        own keywords (:meth:`Seen.see`), and the model runs without a hook."""
        handle = self.model.register_forward_pre_hook(seen.hook, with_kwargs=True)
        try:
            yield seen
        finally:
            handle.remove()

    @staticmethod
    def encoder_tensors(model_kwargs: dict) -> tuple[TensorInfo, ...]:
        """T5: the encoder's output that every decoder step cross-attends to."""
        encoder_outputs = model_kwargs.get("encoder_outputs")
        if encoder_outputs is None:
            return ()
        return describe({"encoder_hidden_states": encoder_outputs.last_hidden_state})


class Seen:
    """The keyword tensors of the last forward call shown to it; ``tensors()`` describes them
    (call it after ``host_copy`` is made)."""

    def __init__(self, host_copy):
        self.host_copy = host_copy
        self.tensors: Callable[[], tuple[TensorInfo, ...]] = tuple

    def see(self, kwargs: dict) -> None:
        """The model is called with ``kwargs``."""
        named = dict(kwargs)
        if "encoder_outputs" in named and named["encoder_outputs"] is not None:
            named["encoder_hidden_states"] = named.pop("encoder_outputs").last_hidden_state
        self.tensors = describe_later(named, self.host_copy)

    def hook(self, module, args, kwargs):
        self.see(kwargs)
