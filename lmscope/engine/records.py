"""Frozen, CPU-only records of one generation session.

The engine produces these; the TUI, the headless printer and the tests only read them.
Records hold plain Python values and numpy arrays, never torch tensors, so nothing on a GPU
is kept alive by the history; a :class:`LazyTuple` among them keeps such values too, until it is
first read (``tests/engine/test_lazy_records.py`` walks what unread records hold). They are
``eq=False`` because Textual's reactives compare with ``!=`` and numpy arrays make that ambiguous.

Words for numbers follow transformers' generate loop: ``logits`` are raw model outputs,
``scores`` are what a logits processor returns, ``probs`` are the softmax of scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class LazyTuple(Sequence):
    """A tuple made when first read: ``make()`` runs once, on whichever thread reads it first.

    A continue makes hundreds of steps a second, and the TUI shows one of them a frame. Each
    step's numbers are captured in the step (packed on the host, or as the shapes it saw); the
    Python objects that present them (a stage's candidates, the layers' cache entries, the
    tensors' infos: some fifty a step) are made only for the records someone reads, and then
    kept. ``make`` may only read what it was given: never the model, the cache or torch state,
    which have moved on by the time it runs.

    It reads as a tuple: indexing, slicing, ``len``, iteration, ``==`` with a tuple, ``+``;
    ``copy``, ``pickle`` and ``repr`` see the tuple.
    """

    __slots__ = ("_held",)

    def __init__(self, make: Callable[[], tuple]):
        self._held = make
        """``make`` until first read, then the tuple (one slot: two threads reading at once both
        make it, and each gets a whole tuple of the same values)."""

    @property
    def items(self) -> tuple:
        held = self._held
        if type(held) is not tuple:
            held = self._held = tuple(held())  # what make read can go
        return held

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __eq__(self, other) -> bool:
        return self.items == (other.items if isinstance(other, LazyTuple) else other)

    def __hash__(self) -> int:
        return hash(self.items)

    def __add__(self, other) -> tuple:
        return self.items + tuple(other)

    def __radd__(self, other) -> tuple:
        return tuple(other) + self.items

    def __reduce__(self):
        return tuple, (self.items,)

    def __repr__(self) -> str:
        return repr(self.items)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One entry of a stage's top-k.

    Attributes:
        token_id: vocabulary id.
        token: ``tokenizer.decode([token_id])``, special tokens kept visible.
        score: the stage's score for this token (the raw logit at the ``logits`` stage).
        prob: softmax of the whole stage's scores, at this token.
    """

    token_id: int
    token: str
    score: float
    prob: float


@dataclass(frozen=True, eq=False)
class Stage:
    """The distribution after one step of the processor pipeline.

    Attributes:
        name: ``"logits"`` for the raw model output, else the transformers processor class
            name (``"TemperatureLogitsWarper"``, ``"TopKLogitsWarper"`` ...).
        top: the ``top`` best candidates of this stage, best first.
        removed: ids among the previous stage's top candidates that this stage set to -inf.
        reranked: ids among the previous stage's top candidates that survived with another rank.
        kept: how many vocabulary entries still have a finite score after this stage.
        entropy: entropy in nats of softmax(scores) of this stage.
    """

    name: str
    top: tuple[Candidate, ...]
    removed: tuple[int, ...] = ()
    reranked: tuple[int, ...] = ()
    kept: int = 0
    entropy: float = 0.0


@dataclass(frozen=True, eq=False)
class TensorInfo:
    """Shape and dtype of one tensor the step's forward pass saw, as a debugger shows it.

    Attributes:
        name: the keyword the model received (``input_ids``, ``cache_position`` ...).
        shape: its shape.
        dtype: its torch dtype without the ``torch.`` prefix.
        preview: a few leading values (ids, positions) for small integer tensors, else ``()``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    preview: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class LayerCache:
    """KV-cache entry of one layer.

    Attributes:
        layer: decoder layer index.
        kind: ``"self"`` (grows each step) or ``"cross"`` (T5's encoder keys/values, fixed).
        key_shape: ``[batch, kv_heads, key_pos, head_dim]``.
        value_shape: same layout as ``key_shape``.
        dtype: element dtype of keys and values.
        bytes: bytes held by keys plus values.
        device: where keys and values are (``cuda:0``, ``cpu``): a device map spreads layers
            over devices. Under tensor parallel, rank 0's shard (its share of the kv heads).
        window: a sliding-window layer's window, the last keys its attention sees (None: every
            key). lmscope's cache keeps all of them; ``generate()``'s would keep the window's.
    """

    layer: int
    kind: str
    key_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    dtype: str
    bytes: int
    device: str = ""
    window: int | None = None


@dataclass(frozen=True, eq=False)
class CacheStats:
    """KV-cache sizes after a forward pass.

    Attributes:
        layers: one entry per layer and kind, self-attention entries first.
        query_heads: attention heads of the queries.
        kv_heads: key/value heads; fewer than ``query_heads`` means grouped-query attention.
        cache_class: transformers cache class name (``DynamicCache``, ``EncoderDecoderCache``).
    """

    layers: tuple[LayerCache, ...]
    query_heads: int
    kv_heads: int
    cache_class: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.layers)

    def bytes_of(self, kind: str) -> int:
        return sum(entry.bytes for entry in self.layers if entry.kind == kind)

    def bytes_by_device(self) -> dict[str, int]:
        """Bytes per device, in the order the layers first reach each one (``{"cuda:0": ..., "cpu": ...}``)."""
        totals: dict[str, int] = {}
        for entry in self.layers:
            totals[entry.device] = totals.get(entry.device, 0) + entry.bytes
        return totals


@dataclass(frozen=True, eq=False)
class AttentionRows:
    """Attention probabilities captured during one forward pass.

    Attributes:
        kind: ``"self"`` (decoder self-attention), ``"cross"`` (T5 decoder over encoder
            tokens) or ``"encoder"`` (T5 encoder self-attention).
        probs: float32 array ``[layer, head, query_pos, key_pos]``. At a decode step
            ``query_pos`` has length 1; at prefill it holds the prompt's last rows.
        query_start: absolute position of ``probs[:, :, 0]``; rows before it were not kept.
    """

    kind: str
    probs: np.ndarray
    query_start: int = 0

    @property
    def layers(self) -> int:
        return int(self.probs.shape[0])

    @property
    def heads(self) -> int:
        return int(self.probs.shape[1])


@dataclass(frozen=True, eq=False)
class PromptRecord:
    """What happened before the first generated token.

    Attributes:
        family: ``"llama"`` (decoder-only) or ``"t5"`` (encoder-decoder).
        prompt: the text the user typed.
        input_ids: prompt ids (the encoder's input for T5).
        input_tokens: decoded prompt tokens, one per id.
        decoder_start_id: T5's decoder start token id (``<pad>``), else None.
        decoder_start_token: its decoded text.
        tensors: shapes of what the prefill / encoder pass saw.
        attention: prompt self-attention (decoder-only) or encoder self-attention (T5).
        cache: cache sizes after the prefill (decoder-only); None for T5 before the first step.
        elapsed_s: seconds the prefill or encoder pass took.
    """

    family: str
    prompt: str
    input_ids: tuple[int, ...]
    input_tokens: tuple[str, ...]
    decoder_start_id: int | None = None
    decoder_start_token: str | None = None
    tensors: tuple[TensorInfo, ...] = ()
    attention: AttentionRows | None = None
    cache: CacheStats | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True, eq=False)
class StepRecord:
    """One generated token and everything lmscope shows about it.

    Attributes:
        step: 0-based index of the generated token.
        token_id: the chosen id.
        token: its decoded text.
        chosen_by: ``"argmax"`` (greedy), ``"sample"`` (multinomial over the last stage) or
            ``"forced"`` (the user chose it: ``Stepper.step(force=...)``).
        stages: ``logits`` first, then one per processor in transformers' order.
        tensors: shapes of what this step's forward pass saw.
        cache: cache sizes after this step's forward pass.
        attention: the new query's self-attention row per layer and head.
        cross_attention: T5 only: the new query's row over the encoder tokens.
        finished: True when this token ends generation.
        finish_reason: ``"eos"``, ``"max_new_tokens"``, ``"stop_string"`` or None.
        elapsed_s: seconds the step took, forward pass and recording included (a record that
            waited for a continue's hand-over: without its stages' summary, made there).
        chosen_prob: the chosen token's probability in the final distribution (exact, also
            when it is outside the stages' top-k); None in records that predate it.
        raw_rank: the chosen token's 1-based rank in the raw logits (1 = their argmax).
    """

    step: int
    token_id: int
    token: str
    chosen_by: str
    stages: tuple[Stage, ...]
    tensors: tuple[TensorInfo, ...] = ()
    cache: CacheStats | None = None
    attention: AttentionRows | None = None
    cross_attention: AttentionRows | None = None
    finished: bool = False
    finish_reason: str | None = None
    elapsed_s: float = 0.0
    chosen_prob: float | None = None
    raw_rank: int | None = None

    @property
    def entropy(self) -> float:
        """Entropy in nats of the final distribution the token was chosen from."""
        return self.stages[-1].entropy

    @property
    def chosen(self) -> Candidate | None:
        """The chosen token's entry in the last stage, if it is among the top candidates."""
        return next((c for c in self.stages[-1].top if c.token_id == self.token_id), None)

    @property
    def final_prob(self) -> float | None:
        """The chosen token's final probability: ``chosen_prob``; in records that predate it,
        its candidate's in the last stage, or None outside the top. (Reads no stage when it can:
        a waiting record's stages are made when first read.)"""
        if self.chosen_prob is not None:
            return self.chosen_prob
        chosen = self.chosen
        return chosen.prob if chosen else None


@dataclass(frozen=True, eq=False)
class SessionInfo:
    """What the status bar shows about a loaded model and its settings.

    Attributes:
        model: the id or path it was loaded from.
        family: ``"llama"`` or ``"t5"``.
        model_type: the config's model_type (``llama``, ``qwen2``, ``t5`` ...).
        device: torch device string.
        dtype: weight dtype.
        layers: decoder layers.
        query_heads: attention heads.
        kv_heads: key/value heads.
        max_new_tokens: generation bound.
        settings: generation settings that differ from greedy defaults, for display.
        placement: how the weights are spread (``engine.placement.describe``): a device map's
            layers per device, or tensor parallel's ranks; empty on one device.
    """

    model: str
    family: str
    model_type: str
    device: str
    dtype: str
    layers: int
    query_heads: int
    kv_heads: int
    max_new_tokens: int
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    placement: str = ""


@dataclass(frozen=True)
class LayerLens:
    """What one decoder layer would predict if the model stopped there.

    Attributes:
        layer: 0-based decoder layer.
        top: the lens's top-k tokens (``score`` is the lens logit, ``prob`` its softmax).
        chosen_prob: the lens's probability of the token the step finally chose.
        chosen_rank: its 0-based rank in the lens (0: the lens's own top token).
        entropy: entropy of the lens's distribution, in nats.
        norm: L2 norm of the layer's residual stream (before the final norm).
    """

    layer: int
    top: tuple[Candidate, ...]
    chosen_prob: float
    chosen_rank: int
    entropy: float
    norm: float
