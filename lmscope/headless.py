"""The headless printer: step a session to the end, printing JSON Lines or a readable table."""

from __future__ import annotations

import json
import sys

from lmscope.engine.breakpoints import Breakpoint, first_hit, hit_message, hit_note, note_message
from lmscope.engine.errors import UserError
from lmscope.engine.recording import RecordingEngine
from lmscope.engine.records import PromptRecord, StepRecord
from lmscope.engine.session import SessionOptions, open_session
from lmscope.engine.trace import lens_to_list, rows_to_dict, step_to_dict
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from lmscope.streams import print_line, takes_utf8, terminal_safe


def run_headless(options: SessionOptions, json_lines: bool, attention: bool = False, out=None,
                 record: str | None = None, record_dtype: str = "float32", layers: bool = False) -> None:
    """Generate to the end, or up to the first step where a ``--break`` holds.

    Prints one JSON object per token, or a table row per token; a breakpoint's step carries
    ``"breakpoint": {"expr", "values"}`` (JSON) or a line saying which one held (table).
    """
    out = out or sys.stdout
    breakpoints = options.parsed_breakpoints()
    writer = TraceWriter(record, record_dtype) if record is not None else None
    try:
        _generate(options, json_lines, attention, out, writer, layers, breakpoints)
    finally:
        if writer is not None:
            writer.close()  # a session that never began leaves the file given to --record as it was


def _generate(options: SessionOptions, json_lines: bool, attention: bool, out, writer, layers: bool,
              breakpoints) -> None:
    """:func:`run_headless`'s session, recorded by ``writer`` if given."""
    stepper = open_session(options)
    if writer is not None:
        stepper = RecordingEngine(stepper, writer, options_dict(options))
    prompt = stepper.start()
    if not json_lines:
        print_line(describe_prompt(prompt), out)
    text, numbered = "", tuple(enumerate(breakpoints or (), start=1))
    while not stepper.finished:
        record = stepper.step()
        text += record.token
        hit = first_hit(numbered, record, text)
        note = hit_note(*hit) if hit else None
        if json_lines:
            data = step_to_dict(record, attention)
            if layers:  # the lens costs one matmul per step over all layers: only when asked
                data["layers"] = lens_to_list(stepper.lens(record.step))
            if note:
                data["breakpoint"] = note["breakpoint"]
            print_line(json_line(data, out), out)
        else:
            print_line(table_row(record, not takes_utf8(out)), out)
            if hit:
                print_line(_hit_line(*hit), out)
        if note:
            stepper.note_hit(record.step, note)  # a recording keeps it beside the step
            break


def json_line(data: dict, out) -> str:
    """One ``--json`` line: characters as they are where ``out`` takes UTF-8, ``\\u`` escapes
    (the same JSON) where it does not (``PYTHONIOENCODING=latin-1``, a C locale without UTF-8 mode).
    A character that is not printable is a ``\\u`` escape either way: ``json.dumps`` escapes C0
    controls only, and a token's C1 control (U+009B, CSI) or bidi override would act on the
    terminal the line is read on."""
    line = json.dumps(data, ensure_ascii=not takes_utf8(out))
    return line if line.isprintable() else "".join(map(_json_char, line))


def _json_char(char: str) -> str:
    """``char`` of a JSON line, or its ``\\u`` escape if it is not printable (outside the JSON's
    strings every character is printable ASCII, so only characters inside them change)."""
    if char.isprintable():
        return char
    code = ord(char)
    if code > 0xFFFF:  # JSON escapes a character beyond the BMP as its UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def print_trace(trace: Trace, json_lines: bool, attention: bool = False, out=None, layers: bool = False) -> None:
    """A recorded session printed as the live run printed it (``--json`` lines are identical,
    ``--layers`` included where the lens was recorded: see :func:`lens_notice`)."""
    out = out or sys.stdout
    if not json_lines:
        print_line(describe_prompt(trace.prompt()), out)
    for index in range(len(trace)):
        if not json_lines:  # the record and its hit: each step decoded once
            print_line(table_row(trace.step(index), not takes_utf8(out)), out)
            note = trace.hit(index)
            if note is not None:
                print_line(terminal_safe(note_message(note)), out)
            continue
        data = trace.step_data(index)
        hit = data.pop("breakpoint", None)
        data.pop("number", None)
        if attention:
            rows = trace.rows(index)
            data["attention"] = rows_to_dict(rows.get("attention"))
            data["cross_attention"] = rows_to_dict(rows.get("cross_attention"))
        if layers and trace.has_lens(index):
            data["layers"] = trace.lens_data(index)
        if hit:
            data["breakpoint"] = hit
        print_line(json_line(data, out), out)


def lens_notice(trace: Trace) -> str:
    """What ``open FILE --json --layers`` must say before printing: "" when every step has its
    recorded lens, a warning when only some have (their lines alone carry ``layers``).

    Raises:
        UserError: steps were recorded and none has a lens (a run without ``--layers``, or a
            TUI session whose steps were never stepped into): nothing to print the field from.
    """
    kept, steps = trace.lens_steps, len(trace)
    if kept == steps:
        return ""
    if not kept:
        raise UserError(f"{str(trace.path)!r} keeps no logit lens: record with --json --layers, or step into steps "
                        "(s) while the TUI records, to print layers from it")
    return (f"the logit lens was recorded for {kept} of {steps} steps (those the TUI stepped into): "
            "the other steps' lines have no \"layers\"")


def no_steps_notice(trace: Trace) -> str:
    """What ``open FILE --json`` or ``--headless`` says of a recording that holds its prompt and
    no step (a TUI session quit before its first step): "" when it has steps, or when its tail
    notice says already why it has none.

    ``--json`` prints a line per step, so such a file prints no line, with ``--layers`` too (no
    step lacks its lens); without this line an empty output with exit code 0 looked like a
    failure to read the file.
    """
    if len(trace) or trace.tail_notice:
        return ""
    return "it holds the prompt and no step (the session ended before its first step): no step to print"


def options_dict(options: SessionOptions) -> dict:
    """The options a recording keeps (what the session ran with), as JSON."""
    from dataclasses import asdict

    return asdict(options)


def _hit_line(number: int, breakpoint: Breakpoint, values: dict) -> str:
    """The table's line for a breakpoint that held (:func:`hit_message`), safe for a terminal
    (:func:`terminal_safe`).

    The line quotes the expression as it was typed (or as a trace file holds it), and a quoted
    string in it may hold an ESC typed through bash's ``$'...'``: written raw, it would recolour
    the terminal. The values it read are shown with ``repr`` already. ``--json`` carries the
    expression escaped by ``json.dumps``.
    """
    return terminal_safe(hit_message(number, breakpoint, values))


def describe_prompt(prompt: PromptRecord) -> str:
    """The prompt's tokens, and T5's decoder start token, before the table."""
    tokens = " ".join(f"{token!r}" for token in prompt.input_tokens)
    count = len(prompt.input_ids)
    text = f"prompt ({count} token{'' if count == 1 else 's'}): {tokens}"
    if prompt.decoder_start_token is not None:
        text += f"\ndecoder starts from {prompt.decoder_start_token!r} (id {prompt.decoder_start_id})"
    return text + (f"\n{'step':>4}  {'token':<16} {'prob':>6} {'by':<6} {'entropy':>7}  {'cache':>9}  "
                   "top after processors")


def table_row(record: StepRecord, escaped: bool = False) -> str:
    """One readable line per generated token; ``escaped``: tokens as ``ascii`` writes them, for a
    stream that takes no UTF-8 (the columns are padded after escaping, so they stay aligned)."""
    shown = ascii if escaped else repr
    # the exact probability, outside the last stage's top candidates too (as --json and `p`)
    final_prob = record.final_prob
    prob = f"{final_prob:6.3f}" if final_prob is not None else "     -"
    top = ", ".join(f"{shown(c.token)} {c.prob:.2f}" for c in record.stages[-1].top[:3])
    cache = f"{record.cache.total_bytes / 1024:7.0f}KB" if record.cache else "        -"
    end = f"  [{record.finish_reason}]" if record.finished else ""
    return (f"{record.step:>4}  {shown(record.token):<16} {prob} {record.chosen_by:<6} {record.entropy:7.3f}  "
            f"{cache}  {top}{end}")
