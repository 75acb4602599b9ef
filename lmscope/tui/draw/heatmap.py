"""How a heatmap's rows are fitted to a character grid, and coloured (pure numpy).

The rows (see ``attention_rows``) are windowed to the last ones that fit, with key positions
max-pooled into the columns that fit. Values
map to colour levels on ONE fixed scale, ``sqrt(p)`` for ``p`` in 0..1, so a colour means the
same probability in every step, layer and head (plotext's own heatmaps rescale each matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmscope.tui.draw.attention_rows import Matrix, head_row

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


def pooled_rows(rows: list[np.ndarray], keys: int, cols: int) -> np.ndarray:
    """Colour levels ``[row, cols]`` (int8) of each row: max over each column's key positions, -1
    where no key. All rows at once: the same dozen numpy calls for every row of a frame instead of
    for each (18 rows of the demo T5's heatmap: 0.7 ms of a frame in calls of 1-3 us each).

    Args:
        rows: probabilities ``[key_pos]`` each (a row may be shorter than ``keys``: it has no
            later keys).
        keys: key positions spanned by the x axis.
        cols: character columns available.
    """
    padded = np.full((len(rows), keys), np.nan, dtype=np.float32)
    for index, values in enumerate(rows):
        padded[index, : min(len(values), keys)] = values[:keys]
    starts = (np.arange(cols) * keys) // cols
    cells = np.fmax.reduceat(padded, starts, axis=1) if keys >= cols else padded[:, starts]
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
    missing = {}
    for r in shown:
        source, q, _ = matrix.rows[r]
        key = (source, q, layer, head, keys, cols)
        if key not in cache and key not in missing:
            missing[key] = head_row(source, q, layer, head)
    if missing:
        cache.update(zip(missing, pooled_rows(list(missing.values()), keys, cols)))
    levels, labels = [], []
    for pos, r in enumerate(rows):
        if r is None:
            levels.append(None)
            labels.append("")
            continue
        source, q, label = matrix.rows[r]
        levels.append(cache[(source, q, layer, head, keys, cols)])
        labels.append(label if pos == 0 or rows[pos - 1] != r else "")
    selected = next((i for i, r in enumerate(rows) if r == len(matrix.rows) - 1), -1)
    return Grid(tuple(levels), tuple(labels), selected, keys)
