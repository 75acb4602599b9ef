"""Stages from transformers' own processors on fake logits: no model."""

from __future__ import annotations

import math

import torch
from transformers import (
    LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
    TopPLogitsWarper,
)

from lmscope.engine.processors import pack_stages, run_stages, stages_from

LOGITS = torch.tensor([[4.0, 3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -1.0]])
INPUT_IDS = torch.tensor([[0, 2]])


def stages_for(*processors, top=5):
    scores, summaries = run_stages(LogitsProcessorList(processors), INPUT_IDS, LOGITS.clone(), top)
    return scores, stages_from(summaries, pack_stages(summaries).numpy()[0], lambda i: f"t{i}")[0]


def test_stages_equal_the_list_applied_at_once():
    processors = [RepetitionPenaltyLogitsProcessor(1.5), TemperatureLogitsWarper(0.7), TopKLogitsWarper(4),
                  TopPLogitsWarper(0.8)]
    scores, stages = stages_for(*processors)
    expected = LogitsProcessorList(processors)(INPUT_IDS, LOGITS.clone())
    assert torch.equal(scores, expected)
    assert [s.name for s in stages] == ["logits", "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper",
                                        "TopKLogitsWarper", "TopPLogitsWarper"]


def test_raw_stage_probabilities_and_entropy():
    _, (raw,) = stages_for()
    probs = torch.softmax(LOGITS[0], -1)
    assert [c.token_id for c in raw.top] == [0, 1, 2, 3, 4]
    assert math.isclose(raw.top[0].prob, probs[0].item(), rel_tol=1e-6)
    assert math.isclose(raw.entropy, -(probs * probs.log()).sum().item(), rel_tol=1e-5)
    assert raw.kept == 8 and raw.top[0].token == "t0"


def test_top_k_marks_removed_candidates():
    _, (_, top_k) = stages_for(TopKLogitsWarper(3))
    assert top_k.removed == (3, 4)  # of the previous top 5, ranks 4 and 5 are now -inf
    assert top_k.reranked == () and top_k.kept == 3
    assert top_k.top[-1].score == float("-inf") and top_k.top[-1].prob == 0.0


def test_repetition_penalty_reranks_without_removing():
    _, (_, penalty) = stages_for(RepetitionPenaltyLogitsProcessor(3.0))
    # ids 0 and 2 were already generated: 4.0 -> 1.33, 2.5 -> 0.83, so 0 falls behind 1, 3 and 2 behind 4
    assert penalty.removed == ()
    assert [c.token_id for c in penalty.top] == [1, 3, 0, 4, 2]
    assert penalty.reranked == (0, 1, 2, 3, 4)  # every one of them changed rank


def test_temperature_keeps_order_and_changes_probabilities():
    _, (raw, warm) = stages_for(TemperatureLogitsWarper(2.0))
    assert [c.token_id for c in warm.top] == [c.token_id for c in raw.top]
    assert warm.removed == () and warm.reranked == ()
    assert warm.top[0].prob < raw.top[0].prob and warm.entropy > raw.entropy
