"""Describe the tensors a forward pass saw, the way a debugger's Variables view lists them."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from lmscope.engine.records import TensorInfo

PREVIEW_MAX = 16
"""Integer tensors with at most this many elements show their values (ids, positions)."""


def describe(named: dict) -> tuple[TensorInfo, ...]:
    """TensorInfo for every tensor value of ``named``; other values are skipped."""
    return tuple(_info(name, value) for name, value in named.items() if isinstance(value, torch.Tensor))


def _info(name: str, tensor: torch.Tensor) -> TensorInfo:
    small_ints = not tensor.is_floating_point() and tensor.numel() <= PREVIEW_MAX
    return TensorInfo(
        name=name,
        shape=tuple(tensor.shape),
        dtype=str(tensor.dtype).removeprefix("torch."),
        preview=tuple(int(v) for v in tensor.flatten().tolist()) if small_ints else (),
    )


class ForwardInputs:
    """Records the keyword tensors the top-level model receives, via a forward pre-hook."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @contextmanager
    def watch(self):
        """Inside the block, ``seen.tensors`` holds the last forward call's tensor inputs."""
        seen = _Seen()
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


class _Seen:
    def __init__(self):
        self.tensors: tuple[TensorInfo, ...] = ()

    def hook(self, module, args, kwargs):
        named = dict(kwargs)
        if "encoder_outputs" in named and named["encoder_outputs"] is not None:
            named["encoder_hidden_states"] = named.pop("encoder_outputs").last_hidden_state
        self.tensors = describe(named)
