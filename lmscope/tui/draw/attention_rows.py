"""Which attention rows a heatmap shows: the rows up to the selected step, and their tokens.

Decoder-only: the prompt's kept rows, then one row per step. T5: the encoder's rows while the
prompt is selected, else one decoder row per step; cross-attention: one row per step over the
encoder tokens. A row's label is its query token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmscope.engine.mapped_rows import read_ahead
from lmscope.engine.records import AttentionRows
from lmscope.tui.view import View


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
    covered = 0
    if prompt.attention is not None:
        rows = prompt.attention
        first = [(rows, q, seq[rows.query_start + q]) for q in range(rows.probs.shape[2])]
        covered = rows.query_start + rows.probs.shape[2]
    if prompt.family == "t5":
        return Matrix(tuple(first), tuple(prompt.input_tokens), "encoder self-attention")
    # Step 0's token comes from the prompt's last query, whose row the prefill already holds.
    rest = [row for row in _step_rows(steps, "attention", lambda i, r: seq[r.query_start])
            if row[0].query_start >= covered]
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
    """One query's probabilities ``[key_pos]`` for a head, or the mean over heads (their pages
    asked for first: rows a continue wrote straight to the disk are read from it)."""
    per_layer = rows.probs[min(layer, rows.layers - 1)]
    if head is None:
        return read_ahead(per_layer[:, q]).mean(axis=0)
    return read_ahead(per_layer[head % rows.heads, q])
