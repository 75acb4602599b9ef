"""KV-cache sizes per layer, and the cache copies a replayed step runs on. The only module that
reads transformers' Cache internals."""

from __future__ import annotations

import copy

from lmscope.engine.records import CacheStats, LayerCache, LazyTuple


CACHE_KWARGS = ("cache", "past_key_values")
"""Where generate's model_kwargs keep the KV cache: ``cache`` from transformers 5.24,
``past_key_values`` before it (the project accepts every transformers 5 release)."""


def generation_cache(model_kwargs: dict):
    """The KV cache the next forward pass receives, or None before the first one."""
    for name in CACHE_KWARGS:
        if model_kwargs.get(name) is not None:
            return model_kwargs[name]
    return None


def only_appends(cache) -> bool:
    """Whether every self-attention layer of ``cache`` only ever appends keys (``DynamicLayer``:
    an earlier step's keys stay the first positions of the newest ones; a sliding window drops
    them, an offloaded cache moves them), so rows can be computed after the step (``DeferredRows``)."""
    from transformers.cache_utils import DynamicLayer

    if cache is None:
        return False
    outer, cache = cache, getattr(cache, "self_attention_cache", cache)  # T5: the decoder's own half
    if getattr(outer, "offloading", False) or getattr(cache, "offloading", False):
        return False
    # A cache made without a config adds its layers as they come, all of one class.
    grows_by = getattr(cache, "layer_class_to_replicate", None)
    return (bool(cache.layers) or grows_by is DynamicLayer) and all(
        type(layer) is DynamicLayer for layer in cache.layers)


def detached_copy(cache):
    """A shallow copy of ``cache`` whose layers can be cropped and grown without touching the
    original's: new cache and layer objects over the same tensors (``DynamicLayer`` crops to a
    view and grows by concatenating, so neither writes the tensors). T5: the self-attention half
    is copied so; the cross-attention half, which a decode step only reads, is shared."""
    if hasattr(cache, "self_attention_cache"):
        outer = copy.copy(cache)
        outer.self_attention_cache = detached_copy(cache.self_attention_cache)
        outer.is_updated = dict(cache.is_updated)
        return outer
    copied = copy.copy(cache)
    copied.layers = [copy.copy(layer) for layer in cache.layers]
    return copied


def full_cache(config):
    """The cache ``generate`` would build for a model of decoder ``config``
    (``models.decoder_config``), with every sliding-window layer made one that keeps all its keys
    and values (transformers' ``DynamicLayer``).

    ``generate`` builds its cache from the config, where a sliding-window layer (Gemma 2 and 3,
    Qwen2 with ``use_sliding_window``, Phi-3 and Mistral configs with a window) keeps only the
    window's last keys: its key axis then no longer matches the other layers' (the step's rows
    could not be stacked), a rewind past the window could not be cropped back, and a continue's
    rows could not be made later from the cache. With every key kept, the window is applied by
    the attention mask alone, as transformers' mask functions build it for those layers: the same
    keys are attended with the same weights, and the rows show zeros outside the window. Every
    other kind of layer (an indexer's, a linear attention's) stays as ``generate`` makes it.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    cache.layers = [DynamicLayer() if _window_of(layer) else layer for layer in cache.layers]
    return cache


def layer_windows(config) -> tuple[int | None, ...]:
    """Each decoder layer's sliding window, None for a layer that sees every key: the layers
    :func:`full_cache` makes keep every key, read from the cache transformers builds for
    ``config`` (its ``layer_types``, or every layer where only ``sliding_window`` is set)."""
    from transformers import DynamicCache

    return tuple(_window_of(layer) for layer in DynamicCache(config=config).layers)


def _window_of(layer) -> int | None:
    """The window of a cache layer that keeps only its window's last keys, else None."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    return int(layer.sliding_window) if type(layer) is DynamicSlidingWindowLayer else None


def cache_stats(cache, query_heads: int, kv_heads: int, windows: tuple = ()) -> CacheStats | None:
    """Shapes and bytes of every layer's keys and values.

    The shapes are read now (the cache grows each step); the layers' entries are made when
    first read (``records.LazyTuple``): a continue makes a record a step, and the TUI shows few.

    Args:
        cache: a transformers ``Cache`` (``DynamicCache``) or ``EncoderDecoderCache``, or None.
        query_heads: the model's attention heads, shown beside kv heads to make GQA visible.
        kv_heads: the model's key/value heads.
        windows: each self-attention layer's sliding window, or None (:func:`layer_windows`).
    Returns:
        Self-attention layers first, then T5's cross-attention layers; None without a cache.
    """
    if cache is None:
        return None
    from lmscope.engine.distributed import tensor_parallel_ranks

    if hasattr(cache, "self_attention_cache"):
        seen = (_signatures(cache.self_attention_cache, "self"), _signatures(cache.cross_attention_cache, "cross"))
    else:
        seen = (_signatures(cache, "self"),)
    ranks = tensor_parallel_ranks()
    return CacheStats(layers=LazyTuple(lambda: _entries(seen, ranks, windows)), query_heads=query_heads,
                      kv_heads=kv_heads, cache_class=type(cache).__name__)


def _signatures(cache, kind: str) -> tuple[str, tuple]:
    """``(kind, signatures)``: for each layer, ``(key shape, key dtype, device, value shape,
    value dtype)`` read from its tensors as they are now, or None where it holds no keys.

    A record keeps them until its entries are read, so they are kept small: the layers mostly
    share one signature, and those that do share one tuple (a pointer a layer)."""
    signatures, shared = [], {}
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is None or keys.numel() == 0:
            signatures.append(None)
            continue
        values = layer.values
        signature = (keys.shape, keys.dtype, keys.device, values.shape, values.dtype)
        signatures.append(shared.setdefault(signature, signature))
    return kind, tuple(signatures)


def _entries(seen: tuple, ranks: int, windows: tuple = ()) -> list[LayerCache]:
    """Each layer's entry. Under tensor parallel this rank holds ``1/ranks`` of the kv heads
    (heads split evenly: ``placement`` refuses anything else), so shapes and bytes are scaled to
    the whole model's cache, as one process would hold it. The fields of each signature are
    computed once a record."""
    entries, described = [], {}
    for kind, signatures in seen:
        for index, signature in enumerate(signatures):
            if signature is None:
                continue
            fields = described.get(signature)
            if fields is None:
                key_shape, dtype, device, value_shape, value_dtype = signature
                fields = described[signature] = (
                    _whole(key_shape, ranks),
                    _whole(value_shape, ranks),
                    str(dtype).removeprefix("torch."),
                    (key_shape.numel() * dtype.itemsize + value_shape.numel() * value_dtype.itemsize) * ranks,
                    str(device),
                )
            # key_shape, value_shape, dtype, bytes, device, given positionally (a frozen
            # dataclass's keywords cost twice as much)
            window = windows[index] if kind == "self" and index < len(windows) else None
            entries.append(LayerCache(index, kind, *fields, window))
    return entries


def _whole(shape, ranks: int) -> tuple[int, ...]:
    """``[batch, kv_heads, pos, head_dim]`` with this rank's kv heads counted for every rank."""
    return (shape[0], shape[1] * ranks, *shape[2:])
