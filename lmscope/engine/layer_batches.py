"""The layer captures of a continue's decode steps, stacked and stored for many steps at once.

A step's capture (``engine/layers.py``) is a dozen one-position tensors per layer and the
layer's keys and values. Stacking them over the layers and writing them to the store costs
about two operations a name in every step: on the demo T5, a sixth of ``generate``'s own step.
A continue lets the captures wait instead (``LayerCapture.capture(later=True)``), as it lets
the attention rows wait (``engine/deferred_rows.py``), and :func:`complete` stacks every waiting
step of a name at once, then stores them all with one write.

A waiting step keeps its one-position tensors whole (a few KiB a layer) and, of the keys and
values, only their position: the cache only appends between steps (the Stepper lets captures
wait only then), so the newest step's keys hold every earlier step's at the same position.
"""

from __future__ import annotations

import torch

from lmscope.engine.layers import (
    CACHE_NAMES, PREVIEW, LayerCapture, LayerCaptureResult, _last_rows, _on_one_device, _ordered, _padded,
)
from lmscope.engine.records import TensorInfo
from lmscope.engine.row_store import RowStore


def complete(capture: LayerCapture, store: RowStore) -> None:
    """Store every waiting capture of ``capture`` and set each one's ``result``; nothing waits afterwards."""
    steps, newest = capture.waiting, capture.newest
    capture.waiting, capture.newest, capture.waiting_bytes = [], {}, 0
    if not steps:
        return
    layers = len(steps[0].named)
    residual = _stacked(steps, "layer_output", None)  # [steps, layers, d_model]
    d_model = residual.shape[-1]
    names = _ordered(steps[0].named[0]) if steps[0].details else []
    detailed = names and all(_has_names(step, set(names)) for step in steps)
    if not detailed:  # a model whose layers saw different tensors: the residual stream only
        stored = store.put(residual)
        for index, step in enumerate(steps):
            _done(step, LayerCaptureResult(stored[index]))
        return
    blocks = [residual]
    for name in names:
        if name == "layer_output":
            blocks.append(_padded(residual[..., :PREVIEW], PREVIEW))
        elif name in CACHE_NAMES:
            blocks.append(_cache_rows(steps, newest, name, layers))
        else:
            blocks.append(_stacked(steps, name, PREVIEW))
    joined = torch.cat(_on_one_device([block.to(torch.float32) for block in blocks]), dim=2)
    stored = store.put(joined)  # [steps, layers, d_model + names * PREVIEW]: one write for all
    for index, step in enumerate(steps):
        specs = tuple(TensorInfo(name, *step.specs[name], ()) for name in names)
        previews = stored[index, :, d_model:].reshape(layers, len(names), PREVIEW)
        _done(step, LayerCaptureResult(stored[index, :, :d_model], specs, previews))


def _done(step, result: LayerCaptureResult) -> None:
    """The step's result, and nothing else of it: its tensors and the newest keys are let go (a
    Stepper keeps the step's capture object until the step is read)."""
    step.result, step.named, step.newest = result, None, None


def _has_names(step, names: set[str]) -> bool:
    return all(set(named) == names for named in step.named)


def _stacked(steps, name: str, count: int | None) -> torch.Tensor:
    """``[steps, layers, count]``: each step's and layer's ``[0, ..., -1, :count]`` of ``name``,
    stacked over every step and layer at once (``layers._last_rows``: one stack and one slice)."""
    layers = len(steps[0].named)
    rows = _last_rows([step.named[layer][name] for step in steps for layer in range(layers)], count)
    return rows.reshape(len(steps), layers, -1)


def _cache_rows(steps, newest, name: str, layers: int) -> torch.Tensor:
    """``[steps, layers, PREVIEW]`` of the cache's ``name``: each step's position, read from the newest tensor."""
    positions = [step.named[0][name][1] for step in steps]
    first, last = positions[0], positions[-1]
    if positions == list(range(first, last + 1)):  # self-attention: one more key each step
        step_stride = 1
    elif first == last:  # cross-attention: the encoder's keys, the same in every step
        step_stride = 0
    else:  # never from a cache that only appends; read one position at a time
        step_stride = None
    per_layer = []
    for layer in range(layers):
        tensor = newest[(layer, name)]
        if step_stride is None:
            rows = torch.stack([_rows_at(tensor, position, 1, 0)[0] for position in positions])
        else:
            rows = _rows_at(tensor, first, len(steps), step_stride)
        per_layer.append(rows)
    return _padded(torch.stack(_on_one_device(per_layer), dim=1), PREVIEW)


def _rows_at(tensor: torch.Tensor, first: int, count: int, step_stride: int) -> torch.Tensor:
    """``[count, <=PREVIEW]``: ``tensor[0, ..., 0, first + i * step_stride, :PREVIEW]`` for each i,
    as one view (one operation a layer, where indexing takes four)."""
    strides = tensor.stride()
    offset = tensor.storage_offset() + first * strides[-2]
    size = (count, min(PREVIEW, tensor.shape[-1]))
    return tensor.as_strided(size, (strides[-2] * step_stride, strides[-1]), offset)
