"""Run transformers' own LogitsProcessorList one processor at a time, keeping each stage's top-k.

The list is the one ``generate`` builds (see ``generation.prepare``); lmscope never
re-implements a processor. Calling the processors in the list's order on the same inputs
gives exactly what ``LogitsProcessorList.__call__`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmscope.engine.errors import UserError
from lmscope.engine.host_copy import HostCopy
from lmscope.engine.records import Candidate, LazyTuple, Stage


class NoDistributionError(UserError):
    """Sampling met scores that are no distribution (inf or nan): ``generate`` fails there too."""


@dataclass
class StageTensors:
    """Every stage's summary, still on the model's device until the step's one copy
    (:func:`pack_stages` joins it, :func:`stages_from` reads it back).

    Attributes:
        names: ``"logits"``, then each processor's class name.
        packed: ``[stages, 4 * top + 2]`` float32 rows: top ids, their scores, their
            probabilities, this stage's scores at the previous stage's top ids (stage 0: unused),
            the number of scores set to -inf, and the negated entropy in nats of softmax(scores).
            float32 holds every id and count exactly (below 2**24) and every score and
            probability as computed, so nothing is lost by not packing float64.
        top: candidates per stage.
        d_vocab: the size of the distribution (a stage keeps ``d_vocab`` less the removed).
    """

    names: list[str]
    packed: torch.Tensor
    top: int
    d_vocab: int


def run_stages(processors, input_ids: torch.Tensor, logits: torch.Tensor, top: int):
    """Apply each processor in order and summarise every stage.

    Each stage's scores are copied into one ``[stages, d_vocab]`` tensor as they come (a
    processor that changed its input in place cannot alter an earlier stage), and all stages
    are summarised together: a dozen operations per step instead of a dozen per stage.

    Args:
        processors: transformers ``LogitsProcessorList``.
        input_ids: ``[batch=1, seq]`` ids so far (decoder ids for T5), as ``generate`` passes them.
        logits: ``[batch=1, d_vocab]`` float32 raw logits of the last position.
        top: candidates kept per stage.
    Returns:
        ``(scores, summaries)``: the final ``[1, d_vocab]`` scores and the StageTensors.
    """
    scores, stages = stage_scores(processors, input_ids, logits)
    d_vocab = stages.shape[-1]
    return scores, StageTensors(stage_names(processors), summarise(stages, top), min(top, d_vocab), d_vocab)


def stage_scores(processors, input_ids: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply each processor in order: ``(scores [1, d_vocab], stages [stages, d_vocab])``, the
    final scores and every stage's scores, unsummarised (see :func:`run_stages`)."""
    stages = torch.empty((len(processors) + 1, logits.shape[-1]), dtype=logits.dtype, device=logits.device)
    stages[0] = logits[0]
    scores = logits
    for index, processor in enumerate(processors, start=1):
        scores = processor(input_ids, scores)
        stages[index] = scores[0]
    return scores, stages


def sample(probs: torch.Tensor, *, step: int, processors, input_ids: torch.Tensor, logits: torch.Tensor,
           settings, host_copy: HostCopy | None = None) -> torch.Tensor:
    """``[1]`` the id ``_sample`` draws from ``probs [1, d_vocab]``: ``torch.multinomial``, as there.

    On the CPU nothing is checked before the draw: ``torch.multinomial`` checks ``probs`` itself
    and raises where they are no distribution (inf or nan), as it does in ``generate``. Only then
    are the step's scores looked at again, to say why in one line (see ``_NO_DISTRIBUTION``).

    On a GPU that check is a device-side assert, which leaves the process's CUDA context unusable:
    the session, its history and any recording could not go on or be written. So there the draw
    reads ``probs`` where they are a distribution and a stand-in (all ones) where they are not,
    which draws the same id from the same generator wherever ``probs`` is valid, and the step's
    one copy (``host_copy``) brings back whether it was: if not, ``host_copy.copy()`` raises the
    same error the CPU raises. No synchronisation is added.

    Args:
        step: the step being chosen (its record's number).
        processors, input_ids, logits: what the step's stages came from (:func:`stage_scores`).
        settings: the session's ``GenerationSettings``, for the flags to name.
        host_copy: the step's copy (None: check at once, as on the CPU). ``HostCopy.join_on_host``
            takes the device's path on a CPU too (tests).
    Raises:
        NoDistributionError: the processors (or the model) left inf or nan scores (from
            ``host_copy.copy()`` on the device's path).
    """
    if host_copy is not None and (probs.device.type != "cpu" or host_copy.join_on_host):
        return _sample_checked_later(probs, host_copy, lambda: NoDistributionError(
            _no_distribution(step, processors, input_ids, logits, settings)))
    try:
        return torch.multinomial(probs, num_samples=1).squeeze(1)
    except RuntimeError as error:
        if not any(text in str(error) for text in _NO_DISTRIBUTION):
            raise
        raise NoDistributionError(_no_distribution(step, processors, input_ids, logits, settings)) from error


def _sample_checked_later(probs: torch.Tensor, host_copy: HostCopy, error: Callable[[], Exception]) -> torch.Tensor:
    """:func:`sample`'s draw on a device: no device-side assert, the check read with the step's copy.

    ``probs`` come from a softmax: each is in [0, 1] or nan, so their sum is positive exactly
    where ``torch.multinomial`` would accept them (a nan makes the sum nan, and nan > 0 is False).
    """
    drawable = probs.sum(dim=-1, keepdim=True) > 0  # [1, 1]
    next_tokens = torch.multinomial(torch.where(drawable, probs, 1.0), num_samples=1).squeeze(1)

    def check(array) -> None:
        if not array.all():
            raise error()

    host_copy.add(drawable, on_copied=check)
    return next_tokens


def draw_set_aside(probs: torch.Tensor) -> None:
    """The draw of a forced step in a sampling session, made and not used.

    ``generate``'s loop with a processor that imposes a token still draws (from that token
    alone), so its generator moves on by one draw at every step, whatever the step chooses;
    ``torch.multinomial`` takes as many random numbers for any ``probs`` of a shape. Drawing here
    too keeps the generator where such a run has it: the steps after a forced one draw what that
    run draws, and forcing a branch's tokens again (resuming it) leaves the generator where the
    branch had it, so a rewind inside the branch then gives the branch's own samples. Where
    ``probs`` are no distribution it draws from a stand-in of the same shape (as
    :func:`_sample_checked_later` does), never failing: a forced token needs no distribution.
    """
    drawable = probs.sum(dim=-1, keepdim=True) > 0  # [1, 1]: false where a nan or no finite score
    torch.multinomial(torch.where(drawable, probs, 1.0), num_samples=1)


_NO_DISTRIBUTION = ("probability tensor contains", "invalid multinomial distribution")
"""``torch.multinomial``'s messages for probabilities that are no distribution. Its checks are
``_assert_async``: on the CPU they raise at once, before anything is drawn; on CUDA they are a
device-side assert, which surfaces later as a CUDA error this cannot tell apart (nor recover)."""


def _no_distribution(step: int, processors, input_ids, logits, settings) -> str:
    """The one line that says why step ``step``'s scores are no distribution (see :func:`sample`)."""
    _, stages = stage_scores(processors, input_ids, logits)
    bad = torch.isnan(stages).any(dim=-1) | torch.isposinf(stages).any(dim=-1) | torch.isneginf(stages).all(dim=-1)
    first = int(bad.nonzero()[0]) if bool(bad.any()) else len(stages) - 1
    if first == 0:
        return (f"sampling failed at step {step}: the model's own logits are inf or nan, before any processor "
                "(model.generate fails there too); try --dtype float32")
    where = (f"sampling failed at step {step}: the processors left no valid distribution (inf/nan scores after "
             f"{stage_names(processors)[first]}; model.generate fails there too)")
    flags = [f"{flag} {value:g}" for flag, value in (("--temperature", settings.temperature),
                                                      ("--repetition-penalty", settings.repetition_penalty))
             if value is not None]
    if not flags:
        return where
    return f"{where}: {' with '.join(flags)} made the scores overflow float32; bring {_them(flags)} closer to 1"


def _them(items: list) -> str:
    return "them" if len(items) > 1 else "it"


def stage_names(processors) -> list[str]:
    """``"logits"``, then each processor's class name."""
    return ["logits"] + [type(processor).__name__ for processor in processors]


def summarise(stages: torch.Tensor, top: int) -> torch.Tensor:
    """The packed rows of :class:`StageTensors` for ``stages [stages, d_vocab]``, on the device.

    Twelve operations for all stages: on a GPU each is a kernel launch, and on a small model
    each costs about as much as one of the model's own. What is cheaper on the host (``d_vocab``
    minus the removed count, the entropy's sign, stage 0's unused previous scores) is left there.
    A stage's ``previous scores`` (its scores at the previous stage's top ids) tell which of
    them it removed (set to -inf).
    """
    log_probs = torch.log_softmax(stages, dim=-1)
    probs = log_probs.exp()
    top_scores, top_ids = torch.topk(stages, k=min(top, stages.shape[-1]), dim=-1)
    previous_ids = top_ids.roll(1, dims=0)  # row i: stage i-1's top ids (row 0's is never read)
    # Processors remove tokens by setting them to -inf; there p * log p is 0 * -inf = nan, and
    # its limit is 0: nansum skips it.
    negated_entropy = torch.nansum(probs * log_probs, dim=-1, keepdim=True)
    removed = torch.isneginf(stages).sum(dim=-1, keepdim=True)
    # torch.cat promotes the integer columns to float32 (exact below 2**24).
    return torch.cat((top_ids, top_scores, probs.gather(1, top_ids), stages.gather(1, previous_ids), removed,
                      negated_entropy), dim=1)


def pack_stages(summaries: StageTensors, extra: tuple[torch.Tensor, ...] = (), steps: int = 1) -> torch.Tensor:
    """``[steps, width]`` float32 on the device: each step's stages' numbers, then its part of
    each of ``extra``, flattened (see :func:`stages_from`, which reads one row). ``steps`` > 1:
    the stages of that many steps were summarised together, ``steps * stages`` rows in order;
    ``torch.cat`` promotes integer extras to float32 (exact below 2**24)."""
    return torch.cat((summaries.packed.view(steps, -1), *(tensor.reshape(steps, -1) for tensor in extra)), dim=1)


def chosen_numbers(logits: torch.Tensor, probs: torch.Tensor, next_tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """On the device: the chosen token's final probability ``[steps, 1]`` and how many raw
    logits are above its own ``[steps]`` (its 1-based raw rank less one), for one step or many.

    Args:
        logits: ``[steps, d_vocab]`` raw float32 logits.
        probs: ``[steps, d_vocab]`` softmax of the final scores.
        next_tokens: ``[steps]`` the chosen ids.
    """
    chosen = next_tokens[:, None]
    above = (logits > logits.gather(1, chosen)).sum(dim=-1)
    return probs.gather(1, chosen), above


def stages_from(summaries: StageTensors, packed, decode: Callable[[int], str]
                ) -> tuple[tuple[Stage, ...], list[float]]:
    """The stages, and the extra numbers, from one row of :func:`pack_stages` on the host."""
    values = packed.tolist()
    at = len(summaries.names) * stage_width(summaries.top)
    return _stages(summaries.names, summaries.top, summaries.d_vocab, values[:at], decode), values[at:]


def lazy_stages_from(summaries: StageTensors, packed, decode: Callable[[int], str]
                     ) -> tuple[LazyTuple, list[float]]:
    """:func:`stages_from`, the stages made when first read (``records.LazyTuple``): a
    continue's hand-over completes hundreds of records, and the TUI shows few of them.

    Args:
        packed: the row, a numpy array the stages keep (it must not change afterwards).
    """
    # Not ``summaries`` itself: its packed tensor may be on a GPU, which a record never holds.
    names, top, d_vocab = summaries.names, summaries.top, summaries.d_vocab
    at = len(names) * stage_width(top)
    stages = LazyTuple(lambda: _stages(names, top, d_vocab, packed[:at].tolist(), decode))
    return stages, packed[at:].tolist()


def stage_width(top: int) -> int:
    """The values a stage's summary row holds (:class:`StageTensors`): ``top`` ids, scores,
    probabilities and previous scores, then the removed count and the negated entropy."""
    return 4 * top + 2


def _stages(names: list[str], top: int, d_vocab: int, values: list[float], decode: Callable[[int], str]
            ) -> tuple[Stage, ...]:
    """The stages of one step from its summary's values (:class:`StageTensors` tells the layout)."""
    width = stage_width(top)
    stages, previous_ids = [], None
    for index, name in enumerate(names):
        row = values[index * width : (index + 1) * width]
        ids = [int(i) for i in row[:top]]
        # Positional arguments: a frozen dataclass takes keywords at twice the cost.
        candidates = tuple(
            Candidate(i, decode(i), s, p) for i, s, p in zip(ids, row[top : 2 * top], row[2 * top : 3 * top])
        )
        removed, reranked = _changes(previous_ids, row[3 * top : 4 * top], ids)
        # 0.0 - x, not -x: an entropy of 0 stays 0.0 (its negation is -0.0)
        stages.append(Stage(name, candidates, removed, reranked, d_vocab - int(row[-2]), 0.0 - row[-1]))
        previous_ids = ids
    return tuple(stages)


_NEG_INF = float("-inf")


def _changes(previous_ids, previous_scores, ids) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Ids of the previous stage's top that this stage set to -inf, or moved to another rank.

    A survivor counts as re-ranked only if its rank among survivors changed: removing a token
    above it moves it up without re-ranking it.
    """
    if previous_ids is None:
        return (), ()
    if ids == previous_ids and _NEG_INF not in previous_scores:  # most stages leave the top as it was
        return (), ()
    removed, reranked = [], []
    for rank, (token_id, score) in enumerate(zip(previous_ids, previous_scores)):
        if score == _NEG_INF:
            removed.append(token_id)
            continue
        expected = rank - len(removed)
        if expected >= len(ids) or ids[expected] != token_id:
            reranked.append(token_id)
    return tuple(removed), tuple(reranked)
