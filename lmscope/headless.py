"""The headless printer: step a session to the end, printing JSON Lines or a readable table."""

from __future__ import annotations

import json
import sys

from lmscope.engine.records import PromptRecord, StepRecord
from lmscope.engine.session import SessionOptions, open_session
from lmscope.engine.trace import lens_to_list, step_to_dict


def run_headless(options: SessionOptions, json_lines: bool, attention: bool = False, out=None,
                 layers: bool = False) -> None:
    """Generate to the end; print one JSON object per token, or a table row per token."""
    out = out or sys.stdout
    stepper = open_session(options)
    prompt = stepper.start()
    if not json_lines:
        print(describe_prompt(prompt), file=out)
    while not stepper.finished:
        record = stepper.step()
        data = step_to_dict(record, attention) if json_lines else None
        if layers and json_lines:  # the lens costs one matmul per step over all layers: only when asked
            data["layers"] = lens_to_list(stepper.lens(record.step))
        line = json.dumps(data, ensure_ascii=False) if json_lines else table_row(record)
        print(line, file=out, flush=True)


def describe_prompt(prompt: PromptRecord) -> str:
    """The prompt's tokens, and T5's decoder start token, before the table."""
    tokens = " ".join(f"{token!r}" for token in prompt.input_tokens)
    text = f"prompt ({len(prompt.input_ids)} tokens): {tokens}"
    if prompt.decoder_start_token is not None:
        text += f"\ndecoder starts from {prompt.decoder_start_token!r} (id {prompt.decoder_start_id})"
    return text + f"\n{'step':>4}  {'token':<16} {'prob':>6} {'by':<6} {'entropy':>7}  {'cache':>9}  top after processors"


def table_row(record: StepRecord) -> str:
    """One readable line per generated token."""
    chosen = record.chosen
    prob = f"{chosen.prob:6.3f}" if chosen else "     -"
    top = ", ".join(f"{c.token!r} {c.prob:.2f}" for c in record.stages[-1].top[:3])
    cache = f"{record.cache.total_bytes / 1024:7.0f}KB" if record.cache else "        -"
    end = f"  [{record.finish_reason}]" if record.finished else ""
    return f"{record.step:>4}  {record.token!r:<16} {prob} {record.chosen_by:<6} {record.entropy:7.3f}  {cache}  {top}{end}"
