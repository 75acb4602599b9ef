"""Records <-> JSON: the headless output (one JSON object per step) and recorded sessions.

Scores of tokens a processor removed are ``-inf``; JSON has no infinity, so they are written
as ``null``. Attention rows are included only when asked (they dominate the size).
"""

from __future__ import annotations

import math

import numpy as np

from lmscope.engine.records import (
    AttentionRows, CacheStats, Candidate, LayerCache, LayerLens, PromptRecord, Stage, StepRecord, TensorInfo,
)


def step_to_dict(record: StepRecord, attention: bool = False) -> dict:
    """The JSON object of one generated token (see the README's headless section)."""
    data = {
        "step": record.step,
        "token_id": record.token_id,
        "token": record.token,
        "chosen": {"id": record.token_id, "token": record.token, "by": record.chosen_by,
                   "prob": record.final_prob, "raw_rank": record.raw_rank},
        "entropy": record.entropy,
        "stages": [_stage(stage) for stage in record.stages],
        "finished": record.finished,
        "finish_reason": record.finish_reason,
        "cache": _cache(record.cache),
        "tensors": [_tensor(info) for info in record.tensors],
        "elapsed_s": record.elapsed_s,
    }
    if attention:
        data["attention"] = _rows(record.attention)
        data["cross_attention"] = _rows(record.cross_attention)
    return data


def prompt_to_dict(record: PromptRecord, attention: bool = False) -> dict:
    """The JSON object of the prompt (prefill, or T5's encoder pass)."""
    data = {
        "family": record.family, "prompt": record.prompt, "input_ids": list(record.input_ids),
        "input_tokens": list(record.input_tokens), "decoder_start_id": record.decoder_start_id,
        "decoder_start_token": record.decoder_start_token,
        "tensors": [_tensor(info) for info in record.tensors], "cache": _cache(record.cache),
        "elapsed_s": record.elapsed_s,
    }
    if attention:
        data["attention"] = _rows(record.attention)
    return data


def step_from_dict(data: dict) -> StepRecord:
    """Inverse of :func:`step_to_dict` (attention is restored when it was written)."""
    return StepRecord(
        step=data["step"], token_id=data["token_id"], token=data["token"], chosen_by=data["chosen"]["by"],
        stages=tuple(_stage_from(s) for s in data["stages"]),
        tensors=tuple(_tensor_from(t) for t in data["tensors"]), cache=_cache_from(data["cache"]),
        attention=_rows_from(data.get("attention")), cross_attention=_rows_from(data.get("cross_attention")),
        finished=data["finished"], finish_reason=data["finish_reason"], elapsed_s=data["elapsed_s"],
        chosen_prob=data["chosen"].get("prob"), raw_rank=data["chosen"].get("raw_rank"),
    )


def prompt_from_dict(data: dict) -> PromptRecord:
    """Inverse of :func:`prompt_to_dict`."""
    return PromptRecord(
        family=data["family"], prompt=data["prompt"], input_ids=tuple(data["input_ids"]),
        input_tokens=tuple(data["input_tokens"]), decoder_start_id=data["decoder_start_id"],
        decoder_start_token=data["decoder_start_token"],
        tensors=tuple(_tensor_from(t) for t in data["tensors"]), attention=_rows_from(data.get("attention")),
        cache=_cache_from(data["cache"]), elapsed_s=data["elapsed_s"],
    )


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stage(stage: Stage) -> dict:
    return {
        "name": stage.name,
        "top": [{"id": c.token_id, "token": c.token, "score": _number(c.score), "prob": c.prob} for c in stage.top],
        "removed": list(stage.removed), "reranked": list(stage.reranked), "kept": stage.kept,
        "entropy": stage.entropy,
    }


def _stage_from(data: dict) -> Stage:
    # Numbers are made the types the panes format (a string or a list there is a TypeError or
    # ValueError here, which a trace reports as a damaged chunk): cheaper than checking them apart.
    top = tuple(
        Candidate(int(c["id"]), str(c["token"]), -math.inf if c["score"] is None else float(c["score"]),
                  float(c["prob"]))
        for c in data["top"]
    )
    return Stage(str(data["name"]), top, tuple(map(int, data["removed"])), tuple(map(int, data["reranked"])),
                 int(data["kept"]), float(data["entropy"]))


def _tensor(info: TensorInfo) -> dict:
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype, "preview": list(info.preview)}


def _tensor_from(data: dict) -> TensorInfo:
    return TensorInfo(str(data["name"]), tuple(map(int, data["shape"])), str(data["dtype"]), tuple(data["preview"]))


def _cache(stats: CacheStats | None) -> dict | None:
    if stats is None:
        return None
    layers = [
        {"layer": e.layer, "kind": e.kind, "key_shape": list(e.key_shape), "value_shape": list(e.value_shape),
         "dtype": e.dtype, "bytes": e.bytes, "device": e.device, **({"window": e.window} if e.window else {})}
        for e in stats.layers
    ]
    return {"layers": layers, "total_bytes": stats.total_bytes, "query_heads": stats.query_heads,
            "kv_heads": stats.kv_heads, "cache_class": stats.cache_class}


def _cache_from(data: dict | None) -> CacheStats | None:
    if data is None:
        return None
    layers = tuple(
        LayerCache(int(e["layer"]), str(e["kind"]), tuple(map(int, e["key_shape"])), tuple(map(int, e["value_shape"])),
                   str(e["dtype"]), int(e["bytes"]), str(e.get("device", "")),
                   int(e["window"]) if e.get("window") is not None else None)
        for e in data["layers"]
    )
    return CacheStats(layers, int(data["query_heads"]), int(data["kv_heads"]), str(data["cache_class"]))


def _rows(rows: AttentionRows | None) -> dict | None:
    if rows is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # rounding 3e38 overflows: inf, as it is, not a warning
        probs = np.asarray(rows.probs, dtype=np.float32).round(6).tolist()
    return {"kind": rows.kind, "query_start": rows.query_start, "shape": list(rows.probs.shape), "probs": probs}


rows_to_dict = _rows
"""Attention rows as ``--json --attention`` prints them."""


def _rows_from(data: dict | None) -> AttentionRows | None:
    if data is None:
        return None
    return AttentionRows(data["kind"], np.asarray(data["probs"], dtype=np.float32), data["query_start"])


def lens_to_list(lens) -> list[dict]:
    """The ``"layers"`` of a step's JSON object: one logit-lens object per decoder layer, in order."""
    return [
        {"layer": e.layer, "top": [{"id": c.token_id, "token": c.token, "prob": c.prob} for c in e.top],
         "chosen_prob": e.chosen_prob, "chosen_rank": e.chosen_rank, "entropy": e.entropy, "norm": e.norm}
        for e in lens
    ]


def lens_from_list(data: list[dict]) -> tuple[LayerLens, ...]:
    """Inverse of :func:`lens_to_list`, as far as it goes: the JSON keeps no lens logits, so each
    candidate's ``score`` is NaN (nothing shows it; its ``prob`` is the lens's). Numbers are made
    the types the Layers pane formats, as :func:`_stage_from` makes a stage's."""
    return tuple(
        LayerLens(int(e["layer"]), tuple(Candidate(int(c["id"]), str(c["token"]), math.nan, float(c["prob"]))
                                         for c in e["top"]),
                  float(e["chosen_prob"]), int(e["chosen_rank"]), float(e["entropy"]), float(e["norm"]))
        for e in data
    )
