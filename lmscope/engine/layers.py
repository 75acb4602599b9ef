"""Each decoder layer at the last position, captured per step with hooks on transformers' own modules.

Two things per layer, both gathered on the model's device and copied once per step into the
:class:`RowStore` (off the Python heap), with no per-layer synchronisation or transfer:

* the layer's output at the last position, ``[d_model]``: the residual stream the logit lens
  (``engine/lens.py``) reads. Every captured output is *before* the final norm, the last
  layer's included, so the lens applies the final norm to all layers alike;
* "stepping into" the layer: the shapes and dtypes of the tensors it saw (its input hidden
  states, q/k/v after RoPE as the attention function receives them, T5's position bias, the
  attention and MLP outputs), and ``PREVIEW`` values of each, taken at ``[0, ..., -1, :PREVIEW]``
  (batch 0, first head, last position). Shapes are the same in every layer, so one tuple of
  :class:`TensorInfo` per step describes them; the values are a ``[layers, tensors, PREVIEW]`` array.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from lmscope.engine.attention import label_modules, tapping
from lmscope.engine.records import TensorInfo
from lmscope.engine.row_store import RowStore

PREVIEW = 4
"""Values kept per tensor for the step-into view."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's layer modules, in order (Llama-like: ``layers``; T5: ``block``)."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    return layers if layers is not None else decoder.block


def _mlp(layer) -> torch.nn.Module:
    """Llama-like: ``layer.mlp``; T5: the feed-forward sublayer's ``DenseReluDense``."""
    mlp = getattr(layer, "mlp", None)
    return mlp if mlp is not None else layer.layer[-1].DenseReluDense


@dataclass(frozen=True)
class LayerCaptureResult:
    """One step's capture.

    Attributes:
        residual: ``[layers, d_model]`` float32, each layer's output at the last position (read-only).
        specs: name, shape and dtype of each tensor a layer saw (the same in every layer).
        previews: ``[layers, len(specs), PREVIEW]`` float32 values (NaN where a tensor has fewer).
    """

    residual: np.ndarray
    specs: tuple[TensorInfo, ...] = ()
    previews: np.ndarray | None = None

    def tensors(self, layer: int) -> tuple[TensorInfo, ...]:
        """The tensors layer ``layer`` saw, with their preview values."""
        if self.previews is None:
            return ()
        values = self.previews[layer]
        return tuple(
            TensorInfo(spec.name, spec.shape, spec.dtype, tuple(float(v) for v in row if not np.isnan(v)))
            for spec, row in zip(self.specs, values)
        )


class LayerCapture:
    """Hooks every decoder layer for one forward pass; ``last`` is the most recent capture."""

    def __init__(self, model):
        self.layers = decoder_layers(model)
        self._index = {id(layer): i for i, layer in enumerate(self.layers)}
        self._attention = {key: value for key, value in label_modules(model).items() if value[0] != "encoder"}
        self.last: LayerCaptureResult | None = None

    @contextmanager
    def capture(self, store: RowStore):
        """Capture the layers of the forward pass inside the block, then store it in ``store``."""
        step = _StepCapture(len(self.layers))
        with ExitStack() as hooks:
            for i, layer in enumerate(self.layers):
                hooks.callback(layer.register_forward_pre_hook(step.input_hook(i), with_kwargs=True).remove)
                hooks.callback(layer.register_forward_hook(step.output_hook(i)).remove)
                hooks.callback(_mlp(layer).register_forward_hook(step.tensor_hook(i, "mlp_output")).remove)
            for module in _attention_modules(self.layers, self._attention):
                kind, i = self._attention[id(module)]
                hooks.callback(module.register_forward_hook(step.tensor_hook(i, f"{kind}_attn_output")).remove)
            hooks.enter_context(tapping(step.attention_tap(self._attention)))
            yield self
        if len(step.residual) == len(self.layers):
            self.last = step.finish(store)


def _attention_modules(layers, labels):
    return [module for layer in layers for module in layer.modules() if id(module) in labels]


class _StepCapture:
    """The slices of one forward pass, on the model's device until ``finish``.

    Slices are copied at once (a few values each, on the device, no synchronisation): a view
    would keep the whole tensor alive until the end of the pass, hundreds of MB at a long prefill.
    """

    def __init__(self, layers: int):
        self.residual: list[torch.Tensor] = []
        self.named: list[dict[str, tuple]] = [{} for _ in range(layers)]

    def keep(self, i: int, name: str, tensor: torch.Tensor) -> None:
        """Shape, dtype and the preview values of ``tensor`` as layer ``i``'s ``name``."""
        self.named[i][name] = (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), _preview(tensor))

    def input_hook(self, i: int):
        def hook(_module, args, kwargs):
            self.keep(i, "hidden_states", args[0] if args else kwargs["hidden_states"])
        return hook

    def output_hook(self, i: int):
        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output  # T5 blocks return a tuple
            self.residual.append(hidden[0, -1].detach().clone())  # [d_model], stays on the device
            self.keep(i, "layer_output", hidden)
        return hook

    def tensor_hook(self, i: int, name: str):
        def hook(_module, _args, output):
            self.keep(i, name, output[0] if isinstance(output, tuple) else output)
        return hook

    def attention_tap(self, labels):
        def tap(module, query, key, value, kwargs):
            label = labels.get(id(module))
            if label is None:
                return
            kind, i = label
            prefix = "" if kind == "self" else "cross_"
            for name, tensor in (("q", query), ("k", key), ("v", value)):
                self.keep(i, prefix + name, tensor)
            bias = kwargs.get("position_bias")
            if bias is not None and kind == "self":
                self.keep(i, "position_bias", bias)
        return tap

    def finish(self, store: RowStore) -> LayerCaptureResult:
        """Stack the residual slices and the preview slices; one copy each into ``store``."""
        residual = store.put(torch.stack(self.residual))
        names = list(self.named[0])
        if not names or any(list(named) != names for named in self.named):
            return LayerCaptureResult(residual)
        first = self.named[0]
        specs = tuple(TensorInfo(name, *first[name][:2], ()) for name in _ordered(names))
        previews = torch.stack([torch.stack([named[spec.name][2] for spec in specs]) for named in self.named])
        return LayerCaptureResult(residual, specs, store.put(previews))


_ORDER = ("hidden_states", "q", "k", "v", "position_bias", "self_attn_output", "cross_q", "cross_k", "cross_v",
          "cross_attn_output", "mlp_output", "layer_output")


def _ordered(names):
    return sorted(names, key=lambda name: _ORDER.index(name) if name in _ORDER else len(_ORDER))


def _preview(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor[0, ..., -1, :PREVIEW]`` as float32, NaN-padded to PREVIEW values."""
    values = tensor.detach()[(0,) * (tensor.dim() - 2) + (-1, slice(0, PREVIEW))].to(torch.float32, copy=True)
    if values.shape[0] < PREVIEW:
        values = torch.nn.functional.pad(values, (0, PREVIEW - values.shape[0]), value=float("nan"))
    return values
