"""The records of a continue's steps when no breakpoint reads them, made for many steps at once.

A step's record needs its stages summarised (``processors.summarise``: a dozen operations over
``[stages, d_vocab]``) and the chosen token's probability and raw rank (four more). On the demo
T5, whose operations cost their overhead alone, the summary was the largest part of the
capture left in the step (6.8% of ``generate()``'s step, a stubbed-out ablation found). Only
breakpoints read a record while a continue runs, so a continue without them lets the records
wait (``Stepper.step(record_later=True)``): the step keeps its stages' scores and the chosen
id on the device, and :meth:`WaitingRecords.complete` summarises every waiting step in one
pass when the continue hands its steps to the UI. Each row of the summary is one stage's, so
the rows of many steps are the same numbers as each step's own.

The records made there hold their summary rows; each one's stages (thirty candidates and three
stages on the demo T5) are made from its row when first read (``processors.lazy_stages_from``):
the TUI reads those of the steps it shows, and making every one of them at the hand-over took
about 55 µs a step, 4% of the demo T5's step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmscope.engine.host_copy import HostCopy
from lmscope.engine.processors import StageTensors, chosen_numbers, lazy_stages_from, pack_stages, summarise
from lmscope.engine.records import StepRecord
from lmscope.engine.step_parts import with_rows


@dataclass
class _Waiting:
    fields: dict
    """The StepRecord's fields known when the step was made: all but ``stages``,
    ``chosen_prob`` and ``raw_rank``."""
    stages: torch.Tensor
    """``[stages, d_vocab]`` float32 scores, on the device."""
    next_token: torch.Tensor
    """``[1]`` the chosen id, on the device."""


class WaitingRecords:
    """Steps whose records wait for :meth:`complete`, in step order (one run: the same processors)."""

    def __init__(self):
        self._steps: list[_Waiting] = []
        self.waiting_bytes = 0
        """The waiting steps' scores, held on the device until they are summarised."""

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, fields: dict, stages: torch.Tensor, next_token: torch.Tensor) -> None:
        self._steps.append(_Waiting(fields, stages, next_token))
        self.waiting_bytes += stages.numel() * stages.element_size()

    def complete(self, names: list[str], top: int, decode: Callable[[int], str],
                 host_copy: HostCopy) -> Callable[[], list[StepRecord]]:
        """Summarise every waiting step (at least one waits); the returned function, called
        once ``host_copy`` is made, builds their records (nothing waits afterwards).

        Args:
            names: the stages' names (``processors.stage_names``).
            top: candidates kept per stage.
            decode: token id -> display text.
        """
        steps, self._steps, self.waiting_bytes = self._steps, [], 0
        per_step, d_vocab = steps[0].stages.shape
        stages = torch.cat([step.stages for step in steps])  # [steps * stages, d_vocab]
        chosen = torch.cat([step.next_token for step in steps])
        finals = torch.nn.functional.softmax(stages[per_step - 1 :: per_step], dim=-1)
        prob, above = chosen_numbers(stages[::per_step], finals, chosen)
        summaries = StageTensors(names, summarise(stages, top), min(top, d_vocab), d_vocab)
        part = host_copy.add(pack_stages(summaries, (prob, above), steps=len(steps)))

        def records() -> list[StepRecord]:
            made = []
            for step, row in zip(steps, part.array):
                stages_made, (chosen_prob, raw_above) = lazy_stages_from(summaries, row, decode)
                made.append(StepRecord(**with_rows(step.fields), stages=stages_made, chosen_prob=chosen_prob,
                                       raw_rank=int(raw_above) + 1))
            return made

        return records

