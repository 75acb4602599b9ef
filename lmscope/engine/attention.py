"""Attention capture at SDPA cost.

transformers returns attention weights only from its eager implementation, which builds the
full ``[batch, head, query_pos, key_pos]`` matrix for every layer (3-4x the time and memory of
SDPA at long context). lmscope registers its own attention function instead: the layer's
output comes from transformers' SDPA function, unchanged, and probabilities are computed
only for the query rows lmscope keeps (the new token's row at a decode step, the prompt's
last rows at prefill) with the same arithmetic as eager attention.
"""

from __future__ import annotations

import contextvars
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from lmscope.engine.distributed import gather_heads
from lmscope.engine.row_store import RowStore, Slot

if TYPE_CHECKING:
    from lmscope.engine.deferred_rows import DeferredRows

ATTENTION_NAME = "lmscope"

_RECORDER: contextvars.ContextVar[AttentionRecorder | None] = contextvars.ContextVar("lmscope_recorder", default=None)
_TAP: contextvars.ContextVar = contextvars.ContextVar("lmscope_tap", default=None)
"""Called as ``tap(module, query, key, value, kwargs)`` by every attention call (``engine/layers.py``)."""


@dataclass
class AttentionRecorder:
    """Collects kept rows during one forward pass.

    Attributes:
        kinds: module id -> (kind, layer), built once per model by :func:`label_modules`.
        store: where finished rows are written (off the heap; see ``row_store``).
        max_rows: at most this many of the last query rows are kept per forward pass.
        max_cells: at most this many query x key cells are kept per layer and head, so a
            long prompt keeps fewer rows (2k keys and 32768 cells: the last 16 rows).
        stream: write each layer's rows to the store as soon as they exist (prefill), instead
            of stacking all layers on the device and copying once (decode steps).
        rows: kind -> {layer: probs ``[head, kept_rows, key_pos]``} on the model's device.
    """

    kinds: dict[int, tuple[str, int]]
    store: RowStore
    max_rows: int = 1
    max_cells: int = 32768
    stream: bool = False
    rows: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    deferred: DeferredRows | None = None
    """Where a decode step's rows wait to be computed with other steps' (``engine/deferred_rows.py``)."""
    scores_in_step: bool = False
    """A deferred call's product ``q @ k.T`` is made right after SDPA (``Stepper.step``)."""
    _layer_counts: dict[str, int] = field(default_factory=dict, repr=False)

    def defers(self, query: torch.Tensor, attention_mask) -> bool:
        """Whether this call's rows wait: a decode step's one query, with no mask to keep."""
        return self.deferred is not None and query.shape[2] == 1 and attention_mask is None

    def layers(self, kind: str) -> int:
        """How many attention modules of ``kind`` the model has."""
        if kind not in self._layer_counts:
            self._layer_counts[kind] = sum(1 for labelled_kind, _ in self.kinds.values() if labelled_kind == kind)
        return self._layer_counts[kind]

    def rows_to_keep(self, query_len: int, key_len: int) -> int:
        return max(1, min(self.max_rows, query_len, self.max_cells // key_len))

    def keep(self, module: torch.nn.Module, probs: torch.Tensor) -> None:
        kind, layer = self.kinds[id(module)]
        if not self.stream:
            self.rows.setdefault(kind, {})[layer] = probs[0]
            return
        if kind not in self.slots:
            self.slots[kind] = self.store.reserve((self.layers(kind), *probs.shape[1:]))
        self.store.write(self.slots[kind], probs[0], index=layer)

    def finish(self, kind: str, late: bool = False):
        """Rows of one kind over all layers, ``[layer, head, kept_rows, key_pos]``, as stored.

        Deferred rows come back as a view of their reserved slot, filled by
        ``DeferredRows.complete`` (``late``: a ``LateRows``, which gets its view there); a step
        whose calls were not all deferred (a mask came) has its deferred calls computed now instead.
        """
        if kind in self.slots:
            return self.store.view(self.slots[kind])
        if self.deferred is not None and self.deferred.waiting(kind):
            if kind not in self.rows:
                target = self.deferred.reserve(kind, self.store, late)
                return target if late else self.store.view(target)
            for layer, probs in self.deferred.take_back(kind):
                self.rows[kind][layer] = probs[0]
        by_layer = self.rows.pop(kind, None)
        if not by_layer:
            return None
        return self.store.put(torch.stack([by_layer[layer] for layer in sorted(by_layer)]))


def label_modules(model: torch.nn.Module) -> dict[int, tuple[str, int]]:
    """Map each attention module to its kind (self, cross, encoder) and layer index.

    The names are transformers' own: ``model.layers.3.self_attn`` (Llama family),
    ``encoder.block.1.layer.0.SelfAttention``, ``decoder.block.1.layer.1.EncDecAttention`` (T5).
    """
    labels = {}
    for name, module in model.named_modules():
        if not _is_attention(name):
            continue
        layer = int(re.search(r"\.(\d+)\.", name).group(1))
        if "EncDecAttention" in name:
            labels[id(module)] = ("cross", layer)
        elif name.startswith("encoder."):
            labels[id(module)] = ("encoder", layer)
        else:
            labels[id(module)] = ("self", layer)
    return labels


def _is_attention(name: str) -> bool:
    return re.search(r"\.\d+\.", name) is not None and name.rsplit(".", 1)[-1] in (
        "self_attn", "SelfAttention", "EncDecAttention",
    )


@contextmanager
def recording(recorder: AttentionRecorder):
    """Make ``recorder`` receive the kept rows of every forward pass inside the block."""
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


@contextmanager
def tapping(tap):
    """Inside the block, every attention call shows ``tap`` its query, key and value (after RoPE)."""
    token = _TAP.set(tap)
    try:
        yield tap
    finally:
        _TAP.reset(token)


def register() -> None:
    """Register lmscope's attention function and SDPA's mask builder under ``ATTENTION_NAME``."""
    global _sdpa_attention_forward
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    _sdpa_attention_forward = sdpa_attention_forward
    AttentionInterface.register(ATTENTION_NAME, capture_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


_sdpa_attention_forward = None
"""transformers' SDPA attention function, imported once by :func:`register` (an import in
:func:`capture_attention_forward` ran at every attention call of every step)."""


def capture_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """SDPA attention for the output; eager probabilities for the kept rows.

    Args:
        query: ``[batch, head, query_pos, head_dim]``.
        key, value: ``[batch, kv_head, key_pos, head_dim]`` (GQA: fewer kv heads).
        attention_mask: SDPA's mask: None (causal or full), boolean (True = attend) or additive float.
    Returns:
        ``(attn_output [batch, query_pos, head, head_dim], None)`` as transformers expects.
    """
    if any(kwargs.get(name) is not None for name in EAGER_ONLY):
        return _eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, kwargs)
    recorder = _RECORDER.get()
    deferred = False
    if recorder is not None and id(module) in recorder.kinds:
        if recorder.defers(query, attention_mask):
            deferred = True
            recorder.deferred.add(recorder.kinds[id(module)], module, query, key, scaling, kwargs.get("position_bias"))
        else:
            # Both this and SDPA read all the layer's keys (at 2k context 1.5 MiB), and whichever
            # reads second finds them in the processor's cache: computed after SDPA, the rows
            # take a sixth less time and SDPA as much more, the step the same
            # (benchmarks/profile_step.py --rows-order).
            rows = recorder.rows_to_keep(query.shape[2], key.shape[2])
            probs = kept_probs(module, query, key, attention_mask, scaling, rows, kwargs)
            recorder.keep(module, gather_heads(probs))  # tensor parallel: this rank's heads -> all heads
    output, _ = _sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    if deferred and recorder.scores_in_step:
        # Now, not at the call's end: SDPA's read left the layer's keys in the processor's cache
        # (SmolLM2 at 2k, bench_engine.py --only step: the n key's step 1.089-1.096x the bare
        # step, against 1.100-1.114x with every product made at the call's end).
        kind, layer = recorder.kinds[id(module)]
        recorder.deferred.add_products((kind, layer), query, key, scaling, recorder.layers(kind))
    tap = _TAP.get()
    if tap is not None:
        tap(module, query, key, value, kwargs)
    return output, None


EAGER_ONLY = ("softcap", "s_aux")
"""Attention arguments SDPA does not compute as eager attention does: soft-capped scores (Gemma
2's ``tanh(scores / cap) * cap``) and attention sinks (gpt-oss's ``s_aux``: a learned logit per
head that joins every row's softmax and is dropped after it)."""


def _eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout, kwargs):
    """Attention with an argument of :data:`EAGER_ONLY`: the model's own eager function makes the
    output and the weights, as ``generate`` does for such a model (its default implementation is
    eager), and the kept rows are those weights (with sinks, a row's weights sum to less than 1:
    the sink's share is not a key's). Never deferred: a continue's later rows know neither.

    lmscope's mask builder is SDPA's (None for plain causal, or boolean), and the eager function
    adds its mask to the scores, so the mask is handed over additive, the causal part included.
    """
    eager = sys.modules[type(module).__module__].eager_attention_forward
    additive = _apply_mask(module, query.new_zeros((query.shape[0], 1, query.shape[2], key.shape[2])),
                           attention_mask, query.shape[2], kwargs)
    output, weights = eager(module, query, key, value, additive, dropout=dropout, scaling=scaling, **kwargs)
    recorder = _RECORDER.get()
    if recorder is not None and id(module) in recorder.kinds:
        rows = recorder.rows_to_keep(query.shape[2], key.shape[2])
        recorder.keep(module, gather_heads(weights[:, :, -rows:].float()))
    tap = _TAP.get()
    if tap is not None:
        tap(module, query, key, value, kwargs)
    return output, None


def kept_probs(module, query, key, attention_mask, scaling, rows: int, kwargs) -> torch.Tensor:
    """Eager attention probabilities of the last ``rows`` queries: ``[batch, head, rows, key_pos]``.

    The arithmetic is eager attention's: ``softmax(q @ k.T * scaling + bias + mask)`` in float32.
    Grouped-query attention is computed per kv head on a view, without repeating keys.
    """
    scores = scaled_scores(query, key, scaling, rows)
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        scores = scores + (position_bias if position_bias.shape[2] == rows else position_bias[:, :, -rows:])
    scores = _apply_mask(module, scores, attention_mask, query.shape[2], kwargs)
    return torch.softmax(scores, dim=-1, dtype=torch.float32)


def scaled_scores(query, key, scaling, rows: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``q @ k.T * scaling`` of the last ``rows`` queries, ``[batch, head, rows, key_pos]``, in
    the query's dtype (written into ``out``, a contiguous tensor of that shape, if given).

    Grouped-query attention per kv head on a view: ``[batch * kv_head, groups * rows, head_dim] @
    [batch * kv_head, head_dim, key_pos]``, scaled inside the GEMM (one kernel where eager uses
    two, matmul then ``* scaling``, with the same result).
    """
    batch, heads, query_len, head_dim = query.shape
    _, kv_heads, key_len, _ = key.shape
    if scaling is None:
        scaling = head_dim**-0.5
    groups = heads // kv_heads
    # (A decode step keeps its one row: no slice. Every call here runs per layer and per step.)
    if rows < query_len:
        query = query[:, :, query_len - rows :]
    query = query.reshape(batch * kv_heads, groups * rows, head_dim)
    keys = key.reshape(batch * kv_heads, key_len, head_dim).transpose(1, 2)
    if out is None:
        out = query.new_empty((batch, heads, rows, key_len))
    products = out.view(batch * kv_heads, groups * rows, key_len)
    torch.baddbmm(products, query, keys, beta=0, alpha=scaling, out=products)
    return out


def _apply_mask(module, scores, attention_mask, query_len: int, kwargs) -> torch.Tensor:
    rows, key_len = scores.shape[2], scores.shape[3]
    if attention_mask is None:
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        if not is_causal or query_len == 1:
            return scores
        first_query = key_len - rows
        allowed = torch.arange(first_query, key_len, device=scores.device)[:, None] >= torch.arange(
            key_len, device=scores.device
        )
        return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    mask = attention_mask if attention_mask.shape[2] == rows else attention_mask[:, :, -rows:]
    if mask.dtype == torch.bool:  # one kernel: masked_fill of ~mask takes two
        return torch.where(mask, scores, torch.finfo(scores.dtype).min)
    return scores + mask
