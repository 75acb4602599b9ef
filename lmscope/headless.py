"""The headless printer: step a session to the end, printing JSON Lines or a readable table."""

from __future__ import annotations

import json
import sys

from lmscope.engine.breakpoints import describe_hit, hit_message, step_values
from lmscope.engine.records import PromptRecord, StepRecord
from lmscope.engine.session import SessionOptions, open_session
from lmscope.engine.trace import step_to_dict


def run_headless(options: SessionOptions, json_lines: bool, attention: bool = False, out=None) -> None:
    """Generate to the end, or up to the first step where a ``--break`` holds.

    Prints one JSON object per token, or a table row per token; a breakpoint's step carries
    ``"breakpoint": {"expr", "values"}`` (JSON) or a line saying which one held (table).
    """
    out = out or sys.stdout
    breakpoints = options.parsed_breakpoints()
    stepper = open_session(options)
    prompt = stepper.start()
    if not json_lines:
        print(describe_prompt(prompt), file=out)
    text = ""
    while not stepper.finished:
        record = stepper.step()
        text += record.token
        hit = _breakpoint_hit(breakpoints, record, text)
        if json_lines:
            data = step_to_dict(record, attention)
            if hit:
                data["breakpoint"] = {"expr": hit[1].expr, "values": hit[2]}
            print(json.dumps(data, ensure_ascii=False), file=out, flush=True)
        else:
            print(table_row(record), file=out, flush=True)
            if hit:
                print(hit_message(*hit), file=out, flush=True)
        if hit:
            return


def _breakpoint_hit(breakpoints, record: StepRecord, text: str):
    """``(number, breakpoint, values it read)`` of the first breakpoint that holds, numbered from 1."""
    if not breakpoints:
        return None
    values = step_values(record, text)
    for number, breakpoint in enumerate(breakpoints, start=1):
        if breakpoint.holds(values):
            return number, breakpoint, describe_hit(breakpoint, values) | {"step": record.step}
    return None


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
