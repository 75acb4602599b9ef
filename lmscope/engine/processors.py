"""Run transformers' own LogitsProcessorList one processor at a time, keeping each stage's top-k.

The list is the one ``generate`` builds (see ``generation.prepare``); lmscope never
re-implements a processor. Calling the processors in the list's order on the same inputs
gives exactly what ``LogitsProcessorList.__call__`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmscope.engine.records import Candidate, Stage


@dataclass
class StageTensors:
    """One stage's summary, still on the model's device until :func:`to_stages` copies it.

    Attributes:
        name: ``"logits"`` or the processor class name.
        top_ids, top_scores, top_probs: ``[top]`` best entries of the stage, best first.
        previous_scores: ``[top]`` this stage's scores at the previous stage's top ids.
        kept: number of finite scores, 0-d.
        entropy: entropy in nats of softmax(scores), 0-d.
    """

    name: str
    top_ids: torch.Tensor
    top_scores: torch.Tensor
    top_probs: torch.Tensor
    previous_scores: torch.Tensor
    kept: torch.Tensor
    entropy: torch.Tensor


def run_stages(processors, input_ids: torch.Tensor, logits: torch.Tensor, top: int):
    """Apply each processor in order and summarise every stage.

    Args:
        processors: transformers ``LogitsProcessorList``.
        input_ids: ``[batch=1, seq]`` ids so far (decoder ids for T5), as ``generate`` passes them.
        logits: ``[batch=1, d_vocab]`` float32 raw logits of the last position.
        top: candidates kept per stage.
    Returns:
        ``(scores, summaries)``: the final ``[1, d_vocab]`` scores and one StageTensors per stage.
    """
    scores = logits
    summaries = [summarise("logits", scores, top, None)]
    for processor in processors:
        scores = processor(input_ids, scores)
        summaries.append(summarise(type(processor).__name__, scores, top, summaries[-1].top_ids))
    return scores, summaries


def summarise(name: str, scores: torch.Tensor, top: int, previous_ids: torch.Tensor | None) -> StageTensors:
    """Top-k, probabilities, finite count and entropy of ``scores [1, d_vocab]``, on device.

    ``previous_ids`` are the previous stage's top ids; their scores in this stage tell which
    of them this stage removed (set to -inf).
    """
    log_probs = torch.log_softmax(scores[0], dim=-1)
    top_scores, top_ids = torch.topk(scores[0], k=min(top, scores.shape[-1]))
    previous_ids = top_ids if previous_ids is None else previous_ids
    # Processors remove tokens by setting them to -inf; there p * log p is 0 * -inf = nan, and
    # its limit is 0. (isneginf and nan_to_num are several times faster than isfinite and entr.)
    entropy = -(log_probs.exp() * log_probs).nan_to_num_(nan=0.0).sum()
    return StageTensors(
        name=name,
        top_ids=top_ids,
        top_scores=top_scores,
        top_probs=log_probs[top_ids].exp(),
        previous_scores=scores[0, previous_ids],
        kept=scores.shape[-1] - torch.isneginf(scores[0]).sum(),
        entropy=entropy,
    )


def to_stages(summaries: list[StageTensors], decode: Callable[[int], str],
              extra: torch.Tensor | None = None) -> tuple[tuple[Stage, ...], list[float]]:
    """Copy every stage, and ``extra`` numbers of the step, to the CPU in one transfer.

    Args:
        summaries: the stages, still on the device.
        decode: token id -> display text.
        extra: ``[n]`` more numbers of the step to bring along (the chosen token's probability
            and rank), so a step still makes a single device-to-host copy.
    Returns:
        ``(stages, extra values)``.
    """
    packed = pack_stages(summaries, extra)
    return stages_from(summaries, packed.cpu().numpy(), decode)


def pack_stages(summaries: list[StageTensors], extra: torch.Tensor | None = None) -> torch.Tensor:
    """Every stage's numbers, then ``extra``, as one float64 vector on the device (see :func:`stages_from`)."""
    rows = torch.stack([_pack(s) for s in summaries])
    return torch.cat([rows.flatten()] + ([extra.double()] if extra is not None else []))


def stages_from(summaries: list[StageTensors], packed, decode: Callable[[int], str]
                ) -> tuple[tuple[Stage, ...], list[float]]:
    """The stages, and the extra numbers, from :func:`pack_stages`'s vector on the host."""
    top = summaries[0].top_ids.numel()
    width = 4 * top + 2
    values = packed.tolist()
    stages, previous_ids = [], None
    for index, summary in enumerate(summaries):
        row = values[index * width : (index + 1) * width]
        ids = [int(i) for i in row[:top]]
        candidates = tuple(
            Candidate(token_id=i, token=decode(i), score=s, prob=p)
            for i, s, p in zip(ids, row[top : 2 * top], row[2 * top : 3 * top])
        )
        removed, reranked = _changes(previous_ids, row[3 * top : 4 * top], ids)
        stages.append(Stage(summary.name, candidates, removed, reranked, int(row[-2]), float(row[-1])))
        previous_ids = ids
    return tuple(stages), values[len(summaries) * width :]


def _pack(summary: StageTensors) -> torch.Tensor:
    parts = (summary.top_ids, summary.top_scores, summary.top_probs, summary.previous_scores)
    return torch.cat([p.double() for p in parts] + [summary.kept.double()[None], summary.entropy.double()[None]])


def _changes(previous_ids, previous_scores, ids) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ids of the previous stage's top that this stage set to -inf, or moved to another rank.

    A survivor counts as re-ranked only if its rank among survivors changed: removing a token
    above it moves it up without re-ranking it.
    """
    if previous_ids is None:
        return (), ()
    removed, reranked = [], []
    for rank, (token_id, score) in enumerate(zip(previous_ids, previous_scores)):
        if score == float("-inf"):
            removed.append(token_id)
            continue
        expected = rank - len(removed)
        if expected >= len(ids) or ids[expected] != token_id:
            reranked.append(token_id)
    return tuple(removed), tuple(reranked)
