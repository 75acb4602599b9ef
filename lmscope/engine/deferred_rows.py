"""Attention rows of a continue's decode steps, computed for many steps at once.

A decode step's row of a layer is ``softmax(q @ k.T * scaling + bias)`` over the keys so far.
Computed in the step (``attention.kept_probs``), it reads the layer's whole keys a second time
(SDPA reads them too) and costs about ten small operations per attention call: on a GPU ten
kernel launches, on a small model as much as the model's own operations. A continue lets the
rows wait instead (``Stepper.step(rows_later=True)``) and completes them before it hands its
steps to the UI (``Stepper.complete_waiting``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmscope.engine.attention import kept_probs, scaled_scores
from lmscope.engine.host_copy import HostCopy
from lmscope.engine.row_store import RowStore, Slot


class LateRows:
    """A waiting step's rows of one kind whose slot is reserved at the hand-over, with every other
    waiting step's of that kind (a ``record_later`` step: its record is made there too).
    ``probs`` is set by :meth:`DeferredRows.complete`: ``[layer, head, 1, key_pos]``."""

    __slots__ = ("probs",)

    def __init__(self):
        self.probs = None


class DeferredRows:
    """Decode steps' kept rows, computed for many steps at once instead of in every step.

    A deferred step keeps only references: the query ``[batch, head, 1, head_dim]``, T5's
    position bias, and the layer's newest keys. :meth:`complete` then computes every waiting
    step of a layer in one product, reading the keys once: the cache only grows between steps
    (``DynamicLayer`` appends), so an earlier step's keys are the first positions of the newest
    ones, and the steps being consecutive, eager attention's causal mask over them gives each
    step exactly its own keys.

    The Stepper defers only with such a cache (not a sliding window, not offloaded), one rank,
    and completes the waiting steps before anything else: a rewind, a restart, a step that is
    not deferred. Until then a waiting step's rows read as zeros: its owner must call
    :meth:`complete` before the step's record is shown or written.
    """

    def __init__(self):
        self._calls: dict[tuple[str, int], list] = {}
        """(kind, layer) -> [(query, bias or None)] of the waiting steps, in order."""
        self._latest: dict[tuple[str, int], tuple] = {}
        """(kind, layer) -> (module, keys of the newest step, scaling)."""
        self._steps: dict[str, list[tuple[Slot | LateRows, int]]] = {}
        """kind -> [(slot, or the LateRows to fill, key_len)] of each waiting step, in order."""
        self._this_step: set[tuple[str, int]] = set()
        """(kind, layer) of the calls the step being made deferred."""
        self.interrupted = False
        """A step took its rows back (:meth:`take_back`): complete the others before the next step."""
        self.waiting_bytes = 0
        """The waiting steps' rows: :meth:`complete` holds them all on the device at once."""
        self._products: dict[str, _Products] = {}
        """kind -> the products of a step that made them in the step (:meth:`add_products`)."""

    def add(self, label: tuple[str, int], module, query: torch.Tensor, key: torch.Tensor, scaling,
            bias: torch.Tensor | None) -> None:
        if bias is not None:
            bias = bias[:, :, -1:]  # the one query's row (a view)
        self._calls.setdefault(label, []).append((query, bias))
        self._latest[label] = (module, key, scaling)
        self._this_step.add(label)

    def add_products(self, label: tuple[str, int], query: torch.Tensor, key: torch.Tensor, scaling,
                     layers: int) -> None:
        """The call just deferred (:meth:`add`) makes its product now, right after SDPA read the
        keys (``Stepper.step(scores_in_step=True)``), into its step's ``[layers, head, 1,
        key_pos]`` scores of its kind (``layers``: how many the kind has); :meth:`complete`
        uses them if that step completes alone, and otherwise makes the products of all the
        waiting steps itself. A batch, or a layer on another device than the kind's first (a
        device map), makes none: :meth:`complete` then makes them all."""
        kind, layer = label
        step = len(self._steps.get(kind, ()))  # the step's place among the waiting ones, once reserved
        products = self._products.get(kind)
        if products is None or products.step != step:  # the step's first call
            scores = query.new_empty((layers, query.shape[1], 1, key.shape[2]))
            products = self._products[kind] = _Products(step, scores)
        if query.shape[0] != 1 or products.scores.device != key.device:
            return
        scaled_scores(query, key, scaling, 1, out=products.scores[layer : layer + 1])
        products.layers.add(layer)

    def waiting(self, kind: str) -> bool:
        """Whether the step being finished deferred rows of ``kind``."""
        return any(labelled_kind == kind for labelled_kind, _ in self._this_step)

    def reserve(self, kind: str, store: RowStore, late: bool = False) -> Slot | LateRows:
        """The step's slot for ``kind``, ``[layer, head, 1, key_pos]``, filled by :meth:`complete`;
        ``late``: a :class:`LateRows` instead, whose rows get a view of one slot reserved for all
        the waiting steps of ``kind`` at once (no slot, view and write a step)."""
        self._this_step = {label for label in self._this_step if label[0] != kind}
        layers = sorted(layer for labelled_kind, layer in self._calls if labelled_kind == kind)
        module, key, _ = self._latest[(kind, layers[0])]
        query, _ = self._calls[(kind, layers[0])][-1]
        target = LateRows() if late else store.reserve((len(layers), query.shape[1], 1, key.shape[2]))
        self._steps.setdefault(kind, []).append((target, key.shape[2]))
        self.waiting_bytes += len(layers) * query.shape[1] * key.shape[2] * 4
        return target

    def take_back(self, kind: str) -> list[tuple[int, torch.Tensor]]:
        """Compute the step being finished's deferred rows of ``kind`` now: ``[(layer, probs)]``."""
        taken = sorted(label for label in self._this_step if label[0] == kind)
        self._this_step.difference_update(taken)
        if kind in self._products:  # their products, if made, are not the waiting steps'
            self._products[kind].layers.difference_update(layer for _, layer in taken)
        self.interrupted = True
        rows = []
        for label in taken:
            layer = label[1]
            query, bias = self._calls[label].pop()
            if not self._calls[label]:
                del self._calls[label]
            module, key, scaling = self._latest[(kind, layer)]
            kwargs = {} if bias is None else {"position_bias": bias}
            rows.append((layer, kept_probs(module, query, key, None, scaling, 1, kwargs)))
        return rows

    @property
    def pending(self) -> int:
        """Steps waiting for :meth:`complete`."""
        return max((len(steps) for steps in self._steps.values()), default=0)

    def complete(self, store: RowStore, host_copy: HostCopy) -> None:
        """Compute the rows of every waiting step, to be stored once ``host_copy`` is made;
        nothing waits afterwards."""
        for kind, steps in self._steps.items():
            layers = sorted(layer for labelled_kind, layer in self._calls if labelled_kind == kind)
            key_len = steps[-1][1]
            causal = kind == "self" and len(steps) > 1  # one query needs no mask
            mask = _causal(len(steps), key_len, self._latest[(kind, layers[0])][1].device) if causal else None
            probs = self._rows(kind, layers, key_len, mask)  # [layer, head, steps, key_pos], float32
            host_copy.add(probs, _writer(store, steps, tuple(probs.shape)))
        self._calls.clear()
        self._latest.clear()
        self._products.clear()
        self._steps.clear()
        self._this_step.clear()
        self.interrupted = False
        self.waiting_bytes = 0

    def _rows(self, kind: str, layers: list[int], key_len: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Every waiting step of every layer of ``kind``: ``[layer, head, steps, key_len]``, under
        ``mask`` (self-attention over several steps: causal; else None: a step sees every key given).

        Each layer's scores go into one tensor, masked and softmaxed once for all layers: per
        layer, one product (and T5's bias added), where a softmax and a stack of the layers'
        rows each took a call per layer (on a GPU, a launch each). A step completed alone whose
        products were made in the step (:meth:`add_products`) brings them instead. The arithmetic is
        :func:`kept_probs`'s, bit for bit: a softmax is computed row by row. Layers spread over
        devices (a device map), a batch, or a bias whose dtype is not the scores' (the sum would
        be in the wider dtype) take the rows layer by layer instead.
        """
        inputs = [self._layer_inputs(kind, layer, key_len) for layer in layers]
        queries, key = inputs[0][:2]
        fused = queries.shape[0] == 1 and all(
            layer_key.device == key.device and (layer_bias is None or layer_bias.dtype == queries.dtype)
            for _, layer_key, _, layer_bias in inputs)
        if not fused:
            by_layer = [self._layer_rows(kind, layer, key_len, mask)[0] for layer in layers]
            device = by_layer[0].device  # a device map spreads the layers: stack on the first one's
            return torch.stack([rows if rows.device == device else rows.to(device) for rows in by_layer])
        steps = queries.shape[2]
        made = self._products.get(kind)
        if steps == 1 and made is not None and made.step == 0 and made.layers == set(layers) == set(
                range(len(made.scores))):
            scores = made.scores  # made in the step, where each layer's keys were read anyway
        else:
            scores = queries.new_empty((len(layers), queries.shape[1], steps, key_len))
            for index, (layer_queries, layer_key, scaling, _) in enumerate(inputs):
                scaled_scores(layer_queries, layer_key, scaling, steps, out=scores[index : index + 1])
        for index, (_, _, _, layer_bias) in enumerate(inputs):
            if layer_bias is not None:
                scores[index : index + 1].add_(layer_bias)
        if mask is not None:  # eager's torch.where(mask, scores, min), in place, for every layer at once
            scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1, dtype=torch.float32)

    def _layer_inputs(self, kind: str, layer: int, key_len: int):
        """``(queries, keys, scaling, bias or None)`` of a layer's waiting steps: the queries
        ``[batch, head, steps, head_dim]``, the keys up to ``key_len``, and T5's position bias
        ``[batch, head, steps, key_len]`` (each step's over its own keys, padded to the longest)."""
        calls = self._calls[(kind, layer)]
        _module, key, scaling = self._latest[(kind, layer)]
        queries = torch.cat([query for query, _ in calls], dim=2) if len(calls) > 1 else calls[0][0]
        bias = None
        if calls[0][1] is not None:
            biases = [bias if bias.shape[-1] == key_len else
                      torch.nn.functional.pad(bias, (0, key_len - bias.shape[-1])) for _, bias in calls]
            bias = torch.cat(biases, dim=2) if len(biases) > 1 else biases[0]
        return queries, key[:, :, :key_len], scaling, bias

    def _layer_rows(self, kind: str, layer: int, key_len: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Every waiting step of one layer: ``[batch, head, steps, key_len]`` (see :meth:`_rows`)."""
        queries, key, scaling, bias = self._layer_inputs(kind, layer, key_len)
        kwargs = {"is_causal": mask is not None}
        if bias is not None:
            kwargs["position_bias"] = bias
        module = self._latest[(kind, layer)][0]
        return kept_probs(module, queries, key, mask, scaling, queries.shape[2], kwargs)


@dataclass
class _Products:
    """One step's products ``q @ k.T * scaling`` of one kind, made in the step."""

    step: int
    """The step's place among the waiting steps of its kind (0: the first)."""
    scores: torch.Tensor
    """``[layer, head, 1, key_pos]``, filled layer by layer."""
    layers: set[int] = field(default_factory=set)
    """The layers filled so far."""


def _causal(steps: int, key_len: int, device) -> torch.Tensor:
    """``[1, 1, steps, key_len]``, True where the step's query may attend: the last ``steps``
    queries of eager attention's causal mask, made once for every layer (``attention._apply_mask``
    makes the same one per call)."""
    first_query = key_len - steps
    allowed = torch.arange(first_query, key_len, device=device)[:, None] >= torch.arange(key_len, device=device)
    return allowed[None, None]


def _writer(store: RowStore, steps: list[tuple[Slot | LateRows, int]], shape: tuple[int, ...]):
    """Writes the steps' rows, ``[layer, head, steps, key_pos]`` on the host: with every step's
    rows late (:class:`LateRows`), all at once to one slot of that shape, each step's rows a view
    of it (padded past its own keys: the causal mask makes those zeros); else each step's to its
    own slot (a late step's reserved now)."""
    if all(isinstance(target, LateRows) for target, _ in steps):
        block = store.reserve(shape)
        view = store.view(block)
        for index, (rows, key_len) in enumerate(steps):
            rows.probs = view[:, :, index : index + 1, :key_len]
        return lambda host: store.write_array(block, host)
    slots = []
    for target, key_len in steps:
        if isinstance(target, LateRows):
            slot = store.reserve((*shape[:2], 1, key_len))
            target.probs, target = store.view(slot), slot
        slots.append((target, key_len))

    def write(host) -> None:
        for index, (slot, key_len) in enumerate(slots):
            store.write_array(slot, host[:, :, index : index + 1, :key_len])
    return write
