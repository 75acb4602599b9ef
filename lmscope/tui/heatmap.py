"""Which attention rows a heatmap shows, and how they are fitted to a character grid (pure numpy).

A heatmap is the rows up to the selected step (the prompt's kept rows, then one row per step),
windowed to the rows that fit, with key positions max-pooled into the columns that fit. Values
map to colour levels on ONE fixed scale, ``sqrt(p)`` for ``p`` in 0..1, so a colour means the
same probability in every step, layer and head (plotext's own heatmaps rescale each matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmscope.engine.records import AttentionRows
from lmscope.tui.view import View

LEVELS = 24
"""Colour levels of the fixed scale; level ``round(sqrt(p) * (LEVELS - 1))``, -1 for no key yet."""
_ANCHORS = ((0.0, (30, 30, 60)), (0.3, (59, 82, 139)), (0.55, (33, 145, 140)), (0.8, (94, 201, 98)),
            (1.0, (253, 231, 37)))


def _lerp(level: float) -> tuple[int, int, int]:
    for (x0, c0), (x1, c1) in zip(_ANCHORS, _ANCHORS[1:]):
        if level <= x1:
            t = (level - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
    return _ANCHORS[-1][1]


PALETTE: tuple[tuple[int, int, int], ...] = tuple(_lerp(i / (LEVELS - 1)) for i in range(LEVELS))
"""RGB of each level, a viridis-like ramp from dark blue (p=0) to yellow (p=1)."""


@dataclass(frozen=True, eq=False)
class Matrix:
    """The rows a heatmap can show, oldest first; the last one is the selected row.

    Attributes:
        rows: ``(AttentionRows, query index, query token)`` per row.
        keys: token text of every key position (x axis).
        title: what the matrix is (``self-attention``, ``encoder self-attention`` ...).
    """

    rows: tuple[tuple[AttentionRows, int, str], ...]
    keys: tuple[str, ...]
    title: str


def _step_rows(steps, attr: str, labels) -> list[tuple[AttentionRows, int, str]]:
    out = []
    for i, step in enumerate(steps):
        rows = getattr(step, attr)
        if rows is not None:
            out.append((rows, 0, labels(i, rows)))
    return out


def self_attention(view: View) -> Matrix | None:
    """Self-attention rows up to the selection: prompt + steps, or T5's encoder / decoder."""
    prompt = view.prompt
    if prompt is None:
        return None
    steps = view.steps[: view.index + 1]
    if prompt.family == "t5" and view.index >= 0:
        seq = (prompt.decoder_start_token or "<pad>",) + tuple(s.token for s in view.steps)
        return Matrix(tuple(_step_rows(steps, "attention", lambda i, r: seq[r.probs.shape[-1] - 1])), seq,
                      "decoder self-attention")
    seq = tuple(prompt.input_tokens) + tuple(s.token for s in view.steps)
    first: list[tuple[AttentionRows, int, str]] = []
    if prompt.attention is not None:
        rows = prompt.attention
        first = [(rows, q, seq[rows.query_start + q]) for q in range(rows.probs.shape[2])]
    if prompt.family == "t5":
        return Matrix(tuple(first), tuple(prompt.input_tokens), "encoder self-attention")
    rest = _step_rows(steps, "attention", lambda i, r: seq[min(r.probs.shape[-1], len(seq)) - 1])
    return Matrix(tuple(first + rest), seq, "self-attention")


def cross_attention(view: View) -> Matrix | None:
    """T5 cross-attention: one row per decoder step up to the selection, over the encoder tokens."""
    prompt = view.prompt
    if prompt is None or prompt.family != "t5":
        return None
    seq = (prompt.decoder_start_token or "<pad>",) + tuple(s.token for s in view.steps)
    rows = _step_rows(view.steps[: view.index + 1], "cross_attention", lambda i, r: seq[i])
    return Matrix(tuple(rows), tuple(prompt.input_tokens), "cross-attention")


def head_row(rows: AttentionRows, q: int, layer: int, head: int | None) -> np.ndarray:
    """One query's probabilities ``[key_pos]`` for a head, or the mean over heads."""
    per_layer = rows.probs[min(layer, rows.layers - 1)]
    return per_layer[:, q].mean(axis=0) if head is None else per_layer[head % rows.heads, q]


def pooled_levels(values: np.ndarray, keys: int, cols: int) -> np.ndarray:
    """Colour levels ``[cols]`` of one row: max over each column's key positions, -1 where no key.

    Args:
        values: probabilities ``[key_pos]`` (may be shorter than ``keys``: a row has no later keys).
        keys: key positions spanned by the x axis.
        cols: character columns available.
    """
    padded = np.full(keys, np.nan, dtype=np.float32)
    padded[: min(len(values), keys)] = values[:keys]
    starts = (np.arange(cols) * keys) // cols
    cells = np.fmax.reduceat(padded, starts) if keys >= cols else padded[starts]
    levels = np.rint(np.sqrt(np.clip(np.nan_to_num(cells, nan=0.0), 0.0, 1.0)) * (LEVELS - 1))
    return np.where(np.isnan(cells), -1, levels).astype(np.int8)


def window(count: int, height: int, most: int = 3) -> list[int | None]:
    """Row index shown on each of ``height`` canvas rows: the last rows that fit, top down.

    When there are fewer rows than canvas rows, each is repeated up to ``most`` times and the
    canvas rows left at the bottom show nothing (None).
    """
    shown = min(count, height)
    if shown == 0:
        return [None] * height
    per = max(1, min(most, height // shown))
    first = count - shown
    rows = [first + r // per for r in range(shown * per)]
    return rows + [None] * (height - len(rows))


@dataclass(frozen=True, eq=False)
class Grid:
    """A heatmap fitted to ``height`` x ``cols`` cells.

    Attributes:
        levels: per canvas row, an int8 array of colour levels ``[cols]`` (-1: no key), or None.
        labels: per canvas row, the query token to print beside it ("" on repeated rows).
        selected: first canvas row of the selected (last) row, or -1.
        keys: key positions spanned by the x axis.
    """

    levels: tuple[np.ndarray | None, ...]
    labels: tuple[str, ...]
    selected: int
    keys: int


def fit(matrix: Matrix, layer: int, head: int | None, height: int, cols: int, cache: dict) -> Grid:
    """Fit ``matrix`` to the canvas, reusing pooled rows from ``cache`` (keyed by record and view).

    Only the windowed rows are computed, so a 500-step history costs what the visible rows cost.
    """
    if len(cache) > 8192:  # rows of an old layer/head/size are cheap to recompute; bound memory
        cache.clear()
    rows = window(len(matrix.rows), height)
    shown = [r for r in rows if r is not None]
    keys = max((matrix.rows[r][0].probs.shape[-1] for r in shown), default=1)
    levels, labels = [], []
    for pos, r in enumerate(rows):
        if r is None:
            levels.append(None)
            labels.append("")
            continue
        source, q, label = matrix.rows[r]
        key = (source, q, layer, head, keys, cols)
        if key not in cache:
            cache[key] = pooled_levels(head_row(source, q, layer, head), keys, cols)
        levels.append(cache[key])
        labels.append(label if pos == 0 or rows[pos - 1] != r else "")
    selected = next((i for i, r in enumerate(rows) if r == len(matrix.rows) - 1), -1)
    return Grid(tuple(levels), tuple(labels), selected, keys)
