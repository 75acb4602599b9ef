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

import weakref
from contextlib import contextmanager
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


CAPTURE_MODES = ("off", "residual", "full")
"""What :class:`LayerCapture` takes per step: nothing; each layer's residual stream (the logit
lens); or that and the tensors every layer saw (stepping into a layer, the TUI's Layers view)."""


REPLAY = "replay"
"""``LayerCapture.last`` after a pass made :meth:`LayerCapture.skipped`: the step's capture is made
when it is asked for, by running its forward pass again (``Stepper._replayed``)."""


class LayerCapture:
    """Captures every decoder layer of a forward pass; ``last`` is the most recent capture.

    The hooks are registered once per model (:class:`_ModelHooks`) and do nothing outside
    :meth:`capture`: registering and removing 120 hooks around every step cost more than the
    capture itself. Only the hooks the mode needs are registered.
    """

    def __init__(self, model, mode: str = "full"):
        if mode not in CAPTURE_MODES:
            raise ValueError(f"layer capture mode {mode!r}: expected one of {CAPTURE_MODES}")
        self.layers = decoder_layers(model)
        self.mode = mode
        self._attention = {key: value for key, value in label_modules(model).items() if value[0] != "encoder"}
        self._hooks = _ModelHooks.of(model, self.layers, self._attention)
        self.last: LayerCaptureResult | str | None = None
        """The newest pass's result, :data:`REPLAY` after a pass made :meth:`skipped`, or None."""

    @contextmanager
    def skipped(self):
        """A forward pass whose layers are not captured: ``last`` becomes :data:`REPLAY`."""
        self._hooks.use("off")
        self.last = REPLAY
        yield self

    @contextmanager
    def capture(self, store: RowStore, copy: bool = True):
        """Capture the layers of the forward pass inside the block, then store it in ``store``.

        Args:
            copy: copy each slice as it is taken (a prefill: a view would keep a layer's whole
                ``[batch, seq, d_model]`` alive until the pass ends). A decode step's tensors are
                one position long, or the cache itself, so views cost nothing there and are
                copied together in :meth:`_StepCapture.finish`.
        """
        self._hooks.use(self.mode)
        if self.mode == "off":
            self.last = None
            yield self
            return
        details = self.mode == "full"
        step = _StepCapture(len(self.layers), copy, details)
        with self._hooks.active(step), tapping(step.attention_tap(self._attention) if details else None):
            yield self
        if step.outputs == len(self.layers):
            self.last = step.finish(store)


class _ModelHooks:
    """One set of forward hooks per model, shared by its Steppers, feeding the active capture.

    The layers' output hooks serve both capture modes; the others (layer 0's input, each MLP and
    attention module) only ``full``, so a ``residual`` capture does not pay for their calls.
    """

    _by_model: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, layers, attention):
        self.step: _StepCapture | None = None
        self._layers, self._attention = layers, attention
        self._residual: list = []
        self._details: list = []

    @classmethod
    def of(cls, model, layers, attention) -> "_ModelHooks":
        hooks = cls._by_model.get(model)
        if hooks is None:
            hooks = cls._by_model[model] = cls(layers, attention)
        return hooks

    def use(self, mode: str) -> None:
        """Have exactly the hooks ``mode`` needs registered (a no-op when they already are)."""
        if (mode != "off") != bool(self._residual):
            self._residual = self._register_outputs() if mode != "off" else _removed(self._residual)
        if (mode == "full") != bool(self._details):
            self._details = self._register_details() if mode == "full" else _removed(self._details)

    def detach(self) -> None:
        """Remove every hook: the model runs as if never hooked (the benchmark's baseline)."""
        self.use("off")

    def _register_outputs(self) -> list:
        return [layer.register_forward_hook(self._output_hook(i)) for i, layer in enumerate(self._layers)]

    def _register_details(self) -> list:
        # Only the first layer needs its input: every other layer's input is the previous one's output.
        handles = [self._layers[0].register_forward_pre_hook(self._input_hook(0), with_kwargs=True)]
        for i, layer in enumerate(self._layers):
            handles.append(_mlp(layer).register_forward_hook(self._tensor_hook(i, "mlp_output")))
        for module in _attention_modules(self._layers, self._attention):
            kind, i = self._attention[id(module)]
            handles.append(module.register_forward_hook(self._tensor_hook(i, f"{kind}_attn_output")))
        return handles

    @contextmanager
    def active(self, step: "_StepCapture"):
        self.step = step
        try:
            yield
        finally:
            self.step = None

    def _input_hook(self, i: int):
        def hook(_module, args, kwargs):
            if self.step is not None:
                self.step.keep(i, "hidden_states", args[0] if args else kwargs["hidden_states"])
        return hook

    def _output_hook(self, i: int):
        def hook(_module, _args, output):
            if self.step is not None:
                self.step.keep_output(i, output[0] if isinstance(output, tuple) else output)  # T5: a tuple
        return hook

    def _tensor_hook(self, i: int, name: str):
        def hook(_module, _args, output):
            if self.step is not None:
                self.step.keep(i, name, output[0] if isinstance(output, tuple) else output)
        return hook


def _removed(handles: list) -> list:
    for handle in handles:
        handle.remove()
    return []


def _attention_modules(layers, labels):
    return [module for layer in layers for module in layer.modules() if id(module) in labels]


class _StepCapture:
    """The tensors of one forward pass, on the model's device until ``finish``.

    Each tensor gives ``[0, ..., -1, :PREVIEW]`` (batch 0, first head, last position) and, in
    layer 0 only, its shape and dtype (every layer has the same). Nothing here synchronises.

    A decode step's tensors are one position long (a few KiB): they are kept whole, and
    ``finish`` stacks each name's tensors over the layers and slices them in two operations
    instead of one slice per tensor. The keys and values (the cache) and every tensor of a
    prefill are sliced at once; a prefill's slices are copied, as a view would keep a layer's
    whole ``[batch, seq, d_model]`` alive until the pass ends.
    """

    WHOLE_NUMEL = 1 << 16
    """Largest tensor kept whole in a decode step."""

    def __init__(self, layers: int, copy: bool, details: bool = True):
        self.copy, self.details = copy, details
        self.named: list[dict[str, tuple[torch.Tensor, bool]]] = [{} for _ in range(layers)]
        """Per layer, name -> ``(tensor, whole)``."""
        self.specs: dict[str, tuple] = {}
        self.outputs = 0

    def keep(self, i: int, name: str, tensor: torch.Tensor) -> None:
        """``tensor`` as layer ``i``'s ``name``: whole, or its preview slice."""
        if i == 0:
            self.specs[name] = (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
        if not self.copy and tensor.numel() <= self.WHOLE_NUMEL:
            self.named[i][name] = (tensor, True)
        else:
            count = tensor.shape[-1] if name == "layer_output" else PREVIEW  # the residual is all of it
            values = _last_values(tensor, count)
            # a view would keep the whole tensor alive: a prefill's until the pass ends
            self.named[i][name] = (values.clone() if self.copy else values, False)

    def keep_output(self, i: int, hidden: torch.Tensor) -> None:
        """The layer's output: the residual stream at the last position, and its preview.

        It is also the next layer's input, so only layer 0's input has a hook of its own.
        """
        self.keep(i, "layer_output", hidden)
        self.outputs += 1
        if self.details and i + 1 < len(self.named):
            self.named[i + 1]["hidden_states"] = self.named[i]["layer_output"]

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
        """Each layer's residual ``[layers, d_model]`` and previews, copied together into ``store``.

        Each name's tensors are stacked over the layers and sliced at once (two operations a name,
        however many layers), and one ``torch.cat`` joins the residual and every name's
        ``[layers, PREVIEW]`` block side by side: one ``[layers, d_model + names * PREVIEW]``
        array in the store, which the result reads as two views. The residual rows also give
        ``layer_output``'s preview and every later layer's ``hidden_states`` (its input).
        """
        residual = _last_rows([named["layer_output"] for named in self.named], None)
        layers, d_model = residual.shape
        names = set(self.named[0])
        if not self.details or any(set(named) != names for named in self.named):
            return LayerCaptureResult(store.put(residual))  # put makes it float32
        ordered = _ordered(names)
        from_residual = _padded(residual[:, :PREVIEW], PREVIEW)
        blocks = [residual]
        for name in ordered:
            if name == "layer_output":
                blocks.append(from_residual)
            elif name == "hidden_states":
                first = _last_rows([self.named[0][name]], PREVIEW)
                blocks.append(_joined([first, from_residual[:-1]], dim=0))
            else:
                blocks.append(_last_rows([named[name] for named in self.named], PREVIEW))
        stored = store.put(_joined(blocks))
        specs = tuple(TensorInfo(name, *self.specs[name], ()) for name in ordered)
        previews = stored[:, d_model:].reshape(layers, len(ordered), PREVIEW)
        return LayerCaptureResult(stored[:, :d_model], specs, previews)


def _last_rows(entries: list[tuple[torch.Tensor, bool]], count: int | None) -> torch.Tensor:
    """``[layers, count]``: each layer's ``[0, ..., -1, :count]`` (the whole row when ``count`` is None).

    One stack and one slice when every tensor was kept whole with one shape (a decode step), one
    stack of the slices when they were sliced already; else (a device map, T5's position bias
    before it has ``count`` keys) tensor by tensor, NaN after a shorter tensor's end.
    """
    tensors = [tensor for tensor, _ in entries]
    whole = entries[0][1]
    if all(is_whole == whole for _, is_whole in entries):
        try:
            stacked = torch.stack(tensors)  # [layers, *shape]: a decode step's tensors are small
        except RuntimeError:  # shapes or devices differ
            stacked = None
        if stacked is not None:
            if whole:
                stacked = _last_values(stacked, count or stacked.shape[-1], leading=True)
            return _padded(stacked, count)
    rows = [_last_values(t, count or t.shape[-1]) if is_whole else t[:count] for t, is_whole in entries]
    return torch.stack(_on_one_device([_padded(row.to(torch.float32), count) for row in rows]))


def _joined(blocks: list[torch.Tensor], dim: int = 1) -> torch.Tensor:
    """The blocks side by side (``dim=1``) or one after another, as float32 (torch.cat promotes
    mixed dtypes); a device map spreads the layers over devices, and then each comes to the
    first one's device first."""
    try:
        joined = torch.cat(blocks, dim=dim)
    except RuntimeError:  # blocks on several devices
        joined = torch.cat(_on_one_device(blocks), dim=dim)
    return joined if joined.dtype == torch.float32 else joined.to(torch.float32)


def _last_values(tensor: torch.Tensor, count: int, leading: bool = False) -> torch.Tensor:
    """A view of ``tensor[0, ..., 0, -1, :count]`` (batch 0, first head, last position).

    With ``leading`` the first dimension is kept: ``tensor[:, 0, ..., 0, -1, :count]``.
    One ``as_strided`` call: indexing with a tuple costs several times more.
    """
    shape = tensor.shape
    if len(shape) < 2 + leading:
        return tensor[..., :count]
    strides = tensor.stride()  # one call for all: this runs for every name (or tensor) of a step
    last_row = tensor.storage_offset() + (shape[-2] - 1) * strides[-2]
    size, stride = (min(count, shape[-1]),), (strides[-1],)
    if leading:
        size, stride = (shape[0], *size), (strides[0], *stride)
    return tensor.as_strided(size, stride, last_row)


def _on_one_device(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A device map spreads the layers over devices: bring every slice to the first one's."""
    device = tensors[0].device
    return [t if t.device == device else t.to(device) for t in tensors]


def _padded(values: torch.Tensor, count: int | None) -> torch.Tensor:
    """``values`` NaN-padded along the last dimension to ``count`` values (None: as it is)."""
    if count is not None and values.shape[-1] < count:
        return torch.nn.functional.pad(values.to(torch.float32), (0, count - values.shape[-1]), value=float("nan"))
    return values


_ORDER = ("hidden_states", "q", "k", "v", "position_bias", "self_attn_output", "cross_q", "cross_k", "cross_v",
          "cross_attn_output", "mlp_output", "layer_output")


def _ordered(names):
    return sorted(names, key=lambda name: _ORDER.index(name) if name in _ORDER else len(_ORDER))
