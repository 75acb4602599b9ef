"""Traces changed where the CRC does not look (a chunk's header) or changed with their CRC made
to match (a buggy or hostile writer): each mutant here is one that a fuzzer of ``lmscope open``
found, rebuilt from a tiny trace. What lmscope never writes is a damaged chunk (the steps before
it, a warning) or one ``TraceError`` line (exit 2), never a traceback, rows read from another
chunk's bytes, or steps dropped in silence."""

from __future__ import annotations

import json
import re
import warnings
import zlib

import numpy as np
import pytest

from lmscope.cli import main
from lmscope.engine.recording import ReplayEngine
from lmscope.engine.trace_format import CHUNK_HEADER, TraceError
from lmscope.engine.trace_reader import Trace
from lmscope.testing import make_session, write_trace
from trace_chunks import chunks, rebuilt


@pytest.fixture
def trace_file(tmp_path):
    """A 5-step llama trace: chunk 0 META, 1 PRMT, 2-6 steps 0-4."""
    path = tmp_path / "s.lmscope"
    write_trace(path, make_session("llama", steps=5))
    return path


def json_lines(path, capsys, *flags) -> tuple[int, list[str], str]:
    code = main(["open", str(path), "--json", *flags])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.mark.parametrize("header", [{"kind": b"NOTE"}, {"kind": b"SUEp"}, {"kind": b"PRMT"}, {"kind": b"META"},
                                    {"step": -1}, {"step": 4}, {"step": 1000}, {"step": -2 ** 31}])
def test_a_step_header_changed_outside_the_crc_is_a_damaged_chunk_not_steps_dropped_in_silence(
        trace_file, capsys, header):
    """Step 2's header (not covered by the CRC) with a bit flipped: before, the reader took the
    chunk for another kind or a step out of order and dropped it and every step after it, exit
    0 and no warning (or, at -1, dropped step 1 as if rewound)."""
    code, whole, _ = json_lines(trace_file, capsys)
    data = rebuilt(trace_file.read_bytes(), 4, **header)
    trace_file.write_bytes(data)
    trace = Trace(trace_file)
    assert len(trace) == 2 and trace.tail == "damaged"
    assert trace.unread == len(data) - chunks(data)[4]["at"]
    code, lines, err = json_lines(trace_file, capsys)
    assert code == 0 and lines == whole[:2]
    assert err.startswith(f"lmscope: warning: {str(trace_file)!r}: a chunk ") and err.count("\n") == 1
    assert "the 2 steps before it are shown" in err


def test_a_later_lmscopes_kind_is_skipped_and_a_step_flipped_to_one_shows_as_the_gap(trace_file, capsys):
    """Four capitals are a kind a newer lmscope writes (LENS came without a new format version):
    such a chunk between steps is skipped, every step shown, no warning. Step 2's chunk flipped
    to such a kind leaves steps 0-1: step 3's number is past them, a damaged chunk there."""
    code, whole, _ = json_lines(trace_file, capsys)
    data = trace_file.read_bytes()
    at = chunks(data)[4]["at"]
    text = b'{"data": {"step": 1}, "rows": {}}'
    text += b" " * (-len(text) % 8)  # chunks keep the 8-byte alignment of their rows
    later = CHUNK_HEADER.pack(b"ZZZZ", len(text), 0, zlib.crc32(text), 1) + text
    trace_file.write_bytes(data[:at] + later + data[at:])
    code, lines, err = json_lines(trace_file, capsys)
    assert code == 0 and lines == whole and err == ""
    flipped = rebuilt(data, 4, kind=b"XXXX")
    trace_file.write_bytes(flipped)
    trace = Trace(trace_file)
    assert len(trace) == 2 and trace.tail == "damaged" and trace.unread == len(flipped) - chunks(flipped)[5]["at"]
    code, lines, err = json_lines(trace_file, capsys)
    assert code == 0 and lines == whole[:2] and "the 2 steps before it are shown" in err


def test_a_note_for_a_step_not_yet_made_is_damaged(trace_file):
    """A NOTE numbered past the last step: it was ignored in silence, and so was what followed."""
    data = trace_file.read_bytes()
    note = {"data": {"step": 3, "breakpoint": {"expr": "p < 1", "values": {}}, "number": 1}, "rows": {}}
    text = json.dumps(note).encode()
    text += b" " * (-len(text) % 8)
    at = chunks(data)[4]["at"]  # before step 2: steps 0 and 1 made
    data = data[:at] + CHUNK_HEADER.pack(b"NOTE", len(text), 0, zlib.crc32(text), 3) + text + data[at:]
    trace_file.write_bytes(data)
    trace = Trace(trace_file)
    assert len(trace) == 2 and trace.tail == "damaged"


def test_a_step_header_numbered_as_a_rewind_to_another_step_is_refused_when_read(trace_file, capsys):
    """Step 2's header says step 1 (a rewind, as far as the header tells), its JSON step 2: before,
    ``--json`` printed step 2's line as step 1 and the TUI's history raised ValueError (a
    traceback on the screen, exit 0); the steps after it vanished without a warning."""
    trace_file.write_bytes(rebuilt(trace_file.read_bytes(), 4, step=1))
    trace = Trace(trace_file)
    assert len(trace) == 2 and trace.tail == "damaged"  # step 3's header is past the steps before it
    trace.step_data(0)
    with pytest.raises(TraceError, match="its header says step 1, its JSON 2"):
        trace.step_data(1)
    code, lines, err = json_lines(trace_file, capsys)  # the warning of the damaged tail, then the error
    assert code == 2 and len(lines) == 1 and err.startswith("lmscope: warning: ") and err.count("\n") == 2
    assert err.splitlines()[1].startswith("lmscope: error: ") and "header says step 1" in err


def test_rows_said_to_be_longer_than_the_chunk_holds_are_refused_not_read_from_the_next_chunk(trace_file):
    """Step 1's header says it has no rows (rows_len 0): its rows' bytes were read from the next
    chunk's header and JSON, and shown as attention."""
    trace_file.write_bytes(rebuilt(trace_file.read_bytes(), 3, rows_len=0))
    trace = Trace(trace_file)
    assert len(trace) == 2  # the next chunk's header is now step 1's rows: the reading stops there
    trace.rows(0)
    with pytest.raises(TraceError, match="run past its 0 bytes of rows"):
        trace.rows(1)


@pytest.mark.parametrize("index, extra", [(4, 2 ** 40), (6, 8)], ids=["middle", "last"])
def test_a_header_whose_rows_run_past_the_file_is_a_damaged_header_not_a_chunk_cut_short(trace_file, capsys,
                                                                                        index, extra):
    """Step 2's header (outside the CRC) says 2**40 bytes of rows, step 4's (the last) 8 more than
    it has: the file ends inside what the header claims, which is how a chunk a recorder stopped
    writing looks, and was reported so ("the last N bytes are a chunk cut short (the recorder
    stopped while writing it, or is still writing)"), though every byte was written. Its JSON is
    whole and passes its checksum, and lays out the rows the recorder wrote: the header is what
    is wrong, and the warning says so."""
    code, whole, _ = json_lines(trace_file, capsys)
    data = trace_file.read_bytes()
    chunk = chunks(data)[index]
    data = rebuilt(data, index, rows_len=chunk["rows_len"] + extra)
    trace_file.write_bytes(data)
    trace = Trace(trace_file)
    assert len(trace) == index - 2 and trace.tail == "damaged" and trace.unread == len(data) - chunk["at"]
    said = (f"its header says {chunk['rows_len'] + extra} bytes of rows, past the end of the file, "
            f"where its JSON lays out {chunk['rows_len']}")
    assert said in trace.tail_notice and "cut short" not in trace.tail_notice
    code, lines, err = json_lines(trace_file, capsys)
    assert code == 0 and lines == whole[:index - 2] and err.count("\n") == 1 and said in err


@pytest.mark.parametrize("index, said", [
    (0, "has no session in it (its first chunk is damaged: its header says 1099511627776 bytes of rows, past the "
        "end of the file, where its JSON lays out 0)"),
    (1, "has a damaged chunk before its prompt (its header says 1099511627776 bytes of rows, past the end of the "
        "file, where its JSON lays out "),
], ids=["META", "PRMT"])
def test_a_session_or_prompt_header_whose_rows_run_past_the_file_is_damaged_not_cut(trace_file, index, said):
    """Before: "has no session in it (it was cut before the first chunk)", "was cut before its
    prompt was recorded"."""
    trace_file.write_bytes(rebuilt(trace_file.read_bytes(), index, rows_len=2 ** 40))
    with pytest.raises(TraceError, match=re.escape(said)):
        Trace(trace_file)


def test_a_chunk_cut_in_its_json_or_its_rows_is_still_cut_short(trace_file):
    """What a recorder stopped while writing leaves: the file ends in the last chunk's JSON or
    in its rows (its header and JSON as written)."""
    data = trace_file.read_bytes()
    last = chunks(data)[6]
    json_end = last["end"] - last["rows_len"]
    for cut in (last["at"] + 10, last["at"] + 40, json_end - 1, json_end + 1, last["end"] - 1):
        trace_file.write_bytes(data[:cut])
        trace = Trace(trace_file)
        assert len(trace) == 4 and trace.tail == "cut short" and "cut short" in trace.tail_notice, cut


@pytest.mark.parametrize("change", [
    {"offset": 8000000}, {"offset": -8}, {"offset": 4}, {"offset": "0"}, {"offset": 0.0},
    {"shape": [-1, 4, 1, 1]}, {"shape": [10 ** 9] * 4}, {"shape": [2 ** 62, 2 ** 62, 1, 1]}, {"shape": [2, 4]},
    {"shape": "abc"}, {"shape": [2.0, 4, 1, 1]}, {"query_start": None}, {"kind": 3}, {"name": "bogus"},
])
def test_a_rows_layout_the_writer_never_writes_is_a_trace_error(trace_file, change):
    """The rows of step 1 described with a CRC that holds: offsets past the file, negative or
    odd, shapes that overflow (numpy's product wrapped to 0), of the wrong rank or type. Before:
    ValueError, TypeError, or rows read from wherever the offset pointed."""
    data = trace_file.read_bytes()
    body = chunks(data)[3]["json"]
    spec = body["rows"].pop("attention")
    name = change.pop("name", "attention")
    body["rows"][name] = {**spec, **change}
    trace_file.write_bytes(rebuilt(data, 3, body))
    trace = Trace(trace_file)
    assert len(trace) == 5 and trace.tail == ""
    with pytest.raises(TraceError, match="is damaged: step 1's chunk at byte"):
        trace.step(1)
    with pytest.raises(TraceError, match="is damaged: step 1's chunk at byte"):  # --json without --attention too
        trace.step_data(1)


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"", b'{"data": {"a": "\xff"}, "rows": {}}', b"[" * 100000,
                                  {"data": [], "rows": {}}, {"rows": {}}, {"data": {"step": 1}, "rows": []},
                                  {"data": {"step": 1}, "rows": {}}, {"data": {"step": True}, "rows": {}}],
                         ids=["list", "string", "empty", "not-utf8", "deep", "data-list", "no-data", "rows-list",
                              "no-fields", "step-true"])
def test_a_step_whose_json_is_not_a_step_is_a_trace_error(trace_file, capsys, body):
    """Step 1's JSON replaced, its CRC recomputed: not JSON, not UTF-8, nested too deep, not an
    object, without its fields. Before: TypeError, KeyError, UnicodeDecodeError, RecursionError,
    exit 1 ("set LMSCOPE_DEBUG=1 for the traceback")."""
    trace_file.write_bytes(rebuilt(trace_file.read_bytes(), 3, body))
    trace = Trace(trace_file)
    with pytest.raises(TraceError, match="step 1's chunk"):
        trace.step(1)
    for flags in ((), ("--attention",)):
        code, lines, err = json_lines(trace_file, capsys, *flags)
        assert code == 2 and len(lines) == 1 and err.startswith("lmscope: error: ") and err.count("\n") == 1
    assert main(["open", str(trace_file), "--headless"]) == 2


@pytest.mark.parametrize("meta", [
    {"rows_dtype": "float64"}, {"rows_dtype": "int8"}, {"rows_dtype": None}, {"rows_dtype": "V2"},
    {"info": 5}, {"info": None}, {"info": {"model": "m"}}, {"info.layers": "2"}, {"info.model": None},
    {"info.family": "gpt"}, {"info.settings": [[1, 2, 3]]}, {"info.max_new_tokens": -1}, {"info.extra": 1},
])
def test_a_session_header_the_writer_never_writes_is_one_error_line(trace_file, capsys, meta):
    """The META chunk with a CRC that holds but rows of another dtype (float64: rows read as
    twice their size, "buffer is smaller than requested size", exit 1), or an info that is not
    a SessionInfo (TypeError, exit 1; or, a field of the wrong type, a pane's formatting fails)."""
    data = trace_file.read_bytes()
    body = chunks(data)[0]["json"]
    for key, value in meta.items():
        if key.startswith("info."):
            body["data"]["info"][key[5:]] = value
        else:
            body["data"][key] = value
    trace_file.write_bytes(rebuilt(data, 0, body))
    with pytest.raises(TraceError, match="has no session in it|is damaged: the META chunk"):
        Trace(trace_file)
    assert main(["open", str(trace_file), "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmscope: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("change", ["no ids", "no tokens", "one token short", "family", "rows past the tokens",
                                    "rows of no layer", "rows from a later query", "rows of a step", "elapsed",
                                    "decoder start", "text"])
def test_a_prompt_the_writer_never_writes_is_one_error_line_when_the_trace_opens(trace_file, capsys, change):
    """The prompt with a CRC that holds but no ids (KeyError, exit 1), tokens that are not its
    ids' (the TUI's self-attention pane raised IndexError: a traceback, exit 0), another family,
    or rows that do not fit its tokens (a zero-size or shifted array: IndexError in the panes).
    It is read when the trace opens, so ``--json`` (which prints no prompt) refuses it too."""
    data = trace_file.read_bytes()
    body = chunks(data)[1]["json"]
    prompt, rows = body["data"], body["rows"]["attention"]
    if change == "no ids":
        del prompt["input_ids"]
    elif change == "no tokens":
        prompt["input_tokens"] = []
    elif change == "one token short":
        prompt["input_tokens"] = prompt["input_tokens"][:-1]
    elif change == "family":
        prompt["family"] = "t5"
    elif change == "rows past the tokens":
        rows["query_start"] = 10 ** 9
    elif change == "rows of no layer":
        rows["shape"][0] = 0
    elif change == "rows from a later query":
        rows["query_start"] += 1
    elif change == "elapsed":  # the TUI's status bar formatted it: a traceback, exit 0
        prompt["elapsed_s"] = "0.1"
    elif change == "decoder start":
        prompt["decoder_start_token"] = 5
    elif change == "text":
        prompt["prompt"] = None
    else:
        rows["shape"][2] = 1
    trace_file.write_bytes(rebuilt(data, 1, body))
    with pytest.raises(TraceError, match="is damaged: the PRMT chunk at byte"):
        Trace(trace_file)
    for output in ("--json", "--headless"):
        assert main(["open", str(trace_file), output]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("lmscope: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("family", ["llama", "t5"])
@pytest.mark.parametrize("change", ["keys", "query_start", "queries", "kind", "cross on llama"])
def test_step_rows_that_do_not_fit_the_tokens_before_them_are_refused(tmp_path, family, change):
    """A step's rows with one key too many, a query elsewhere, two queries, another kind: the
    panes label rows and keys with the tokens (a shifted label, or IndexError past the last)."""
    path = tmp_path / "s.lmscope"
    write_trace(path, make_session(family, steps=4))
    data = path.read_bytes()
    body = chunks(data)[4]["json"]  # step 2
    name = "cross_attention" if change == "cross on llama" else "attention"
    spec = body["rows"].setdefault(name, dict(body["rows"]["attention"], kind="cross"))
    if change == "keys":
        spec["shape"][3] += 1
    elif change == "query_start":
        spec["query_start"] -= 1
    elif change == "queries":
        spec["shape"][2] = 2
    elif change == "kind":
        spec["kind"] = "encoder"
    elif family == "t5":
        spec["query_start"] += 1
    path.write_bytes(rebuilt(data, 4, body))
    trace = Trace(path)
    trace.step(1)
    with pytest.raises(TraceError, match="is damaged: step 2's chunk"):
        trace.step(2)
    with pytest.raises(TraceError, match="is damaged: step 2's chunk"):
        trace.step_data(2)


def test_the_svg_of_a_trace_with_a_step_that_does_not_read_is_one_error_line(trace_file, tmp_path, capsys):
    """Before: the app's worker raised in the middle of the history, Textual printed a traceback
    and the command exited 0 with an SVG of the steps before it."""
    trace_file.write_bytes(rebuilt(trace_file.read_bytes(), 4, step=1))
    assert main(["open", str(trace_file), "--svg", str(tmp_path / "s.svg")]) == 2
    warning, error = capsys.readouterr().err.splitlines()  # the damaged tail (step 3's header), then the error
    assert warning.startswith("lmscope: warning: ") and error.startswith("lmscope: error: ")
    assert "header says step 1" in error and not (tmp_path / "s.svg").exists()


def test_every_step_of_a_good_trace_still_reads_with_its_rows(trace_file):
    session = make_session("llama", steps=5)
    trace = Trace(trace_file)
    assert ReplayEngine(trace).warning == "" and len(trace) == 5
    for index, record in enumerate(session.steps):
        np.testing.assert_array_equal(trace.rows(index)["attention"].probs, record.attention.probs)


def test_a_restarted_session_and_a_rewind_still_read(tmp_path):
    """What a recorder does write: a second prompt (a restart) numbers steps from 0 again; a
    rewind numbers a step lower; a note follows its step."""
    from lmscope.engine.trace_writer import TraceWriter

    session = make_session("llama", steps=4)
    writer = TraceWriter(tmp_path / "s.lmscope")
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    for record in session.steps[:3]:
        writer.step(record)
    writer.note(2, {"breakpoint": {"expr": "p < 1", "values": {}}, "number": 1})
    writer.step(session.steps[1])  # rewound to 1
    writer.prompt(session.prompt)  # restarted
    for record in session.steps:
        writer.step(record)
    writer.close()
    trace = Trace(tmp_path / "s.lmscope")
    assert len(trace) == 4 and trace.tail == "" and [trace.step(i).step for i in range(4)] == [0, 1, 2, 3]


def step_1_changed(trace_file, change):
    data = trace_file.read_bytes()
    body = chunks(data)[3]["json"]
    step = body["data"]
    stage, candidate = step["stages"][0], step["stages"][0]["top"][0]
    target, key, value = {
        "no stages": (step, "stages", []), "token": (step, "token", ["a"]), "prob": (step["chosen"], "prob", "0.5"),
        "by": (step["chosen"], "by", None), "finished": (step, "finished", 0), "entropy": (step, "entropy", None),
        "candidate prob": (candidate, "prob", [0.5]), "candidate id": (candidate, "id", "x"),
        "stage entropy": (stage, "entropy", "high"), "removed": (stage, "removed", [None]),
        "token id": (step, "token_id", True), "tensor shape": (step["tensors"][0], "shape", "abc"),
        "preview": (step["tensors"][0], "preview", ["x"]), "cache layers": (step["cache"], "layers", None),
        "cache heads": (step["cache"], "kv_heads", "many"), "layer bytes": (step["cache"]["layers"][0], "bytes", {}),
        "kept as a float": (stage, "kept", 7.0), "heads as a string": (step["cache"], "kv_heads", "3"),
    }[change]
    target[key] = value
    trace_file.write_bytes(rebuilt(data, 3, body))


@pytest.mark.parametrize("change", ["no stages", "token", "prob", "by", "finished", "entropy", "candidate prob",
                                    "candidate id", "stage entropy", "removed", "tensor shape", "preview",
                                    "cache layers", "cache heads", "layer bytes", "token id"])
def test_a_step_with_a_field_of_the_wrong_type_is_a_trace_error_not_a_crash_in_a_pane(trace_file, capsys, change):
    """Step 1's fields replaced, its CRC recomputed. Before: no stages raised IndexError in the
    table (exit 1); a string probability, a list token, a negative id went into the panes; and
    ``--json``, which checked a step's keys only, printed every one of them (exit 0)."""
    step_1_changed(trace_file, change)
    with pytest.raises(TraceError, match="is damaged: step 1's chunk"):
        Trace(trace_file).step(1)
    with pytest.raises(TraceError, match="is damaged: step 1's chunk"):
        Trace(trace_file).step_data(1)
    assert main(["open", str(trace_file), "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmscope: error: ") and err.count("\n") == 1
    code, lines, json_err = json_lines(trace_file, capsys)
    assert code == 2 and len(lines) == 1 and json_err == err  # step 0, then the same line


@pytest.mark.parametrize("change", ["kept as a float", "heads as a string"])
def test_a_stage_or_cache_number_of_another_type_is_made_the_type_the_panes_format(trace_file, capsys, change):
    """Numbers inside the stages and the cache are converted as they are built (cheaper than
    checking each of a step's candidates and cache layers): what converts is shown, as an int."""
    step_1_changed(trace_file, change)
    record = Trace(trace_file).step(1)
    assert type(record.stages[0].kept) is int and type(record.cache.kv_heads) is int
    assert main(["open", str(trace_file), "--headless"]) == 0
    assert capsys.readouterr().err == ""
    code, lines, err = json_lines(trace_file, capsys)  # accepted by --json too: printed as recorded
    assert code == 0 and len(lines) == 5 and err == ""


def test_an_svg_whose_app_exits_with_the_error_while_it_waits_is_still_one_error_line(
        trace_file, tmp_path, capsys, monkeypatch):
    """The race a fuzzer met once in ~200 runs: the app exits with a failed load's error while
    ``--svg`` waits for its workers, whose wait then raised WorkerCancelled ("lmscope: error:
    WorkerCancelled: ...", exit 1). Here the wait raises it once the app has its error. (A
    recorded step that does not read no longer ends the app: it stays open on the steps before
    it, and ``--svg`` ends with the step's error itself.)"""
    from textual.worker import WorkerCancelled

    from lmscope import testing

    async def cancelled(pilot):
        for _ in range(500):  # 5 s at most: an app that never gets its error fails the test, not hangs it
            if pilot.app.return_value is not None:
                break
            await pilot.pause(0.01)
        raise WorkerCancelled("Worker was cancelled, and did not complete.")

    def unreadable_prompt(engine):
        raise TraceError(f"{trace_file} is damaged: its prompt does not read")

    monkeypatch.setattr(testing, "wait_until_idle", cancelled)
    monkeypatch.setattr(ReplayEngine, "start", unreadable_prompt)
    assert main(["open", str(trace_file), "--svg", str(tmp_path / "s.svg")]) == 2
    assert "its prompt does not read" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("note", [
    {"step": 1, "token": None, "stages": 5},
    {"step": 1, "breakpoint": 5, "number": "x"},
    {"step": 1, "breakpoint": {"expr": "((", "values": {"step": 1}}, "number": 1},
    {"step": 1, "breakpoint": {"expr": "p < 0.5", "values": {"step": 1}}, "number": 1},
    {"step": 1, "breakpoint": {"expr": "step == 1", "values": {"step": 1}}, "number": True},
], ids=["fields-of-a-step", "wrong-types", "expr-that-does-not-parse", "values-without-p", "number-true"])
def test_a_note_that_is_not_a_breakpoint_hit_is_a_trace_error(trace_file, capsys, note):
    """A NOTE's fields replace its step's in ``--json``: one with a step's fields printed step 1
    with ``"token": null, "stages": 5`` (exit 0); one of the wrong types ended ``--headless`` with
    TypeError (exit 1); one whose expression does not parse was reported as the user's "bad
    breakpoint"."""
    data = trace_file.read_bytes()
    text = json.dumps({"data": note, "rows": {}}).encode()
    text += b" " * (-len(text) % 8)
    trace_file.write_bytes(data + CHUNK_HEADER.pack(b"NOTE", len(text), 0, zlib.crc32(text), 1) + text)
    with pytest.raises(TraceError, match="is damaged: the NOTE chunk at byte"):
        Trace(trace_file).step_data(1)
    for output in ("--json", "--headless"):
        assert main(["open", str(trace_file), output]) == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith("lmscope: error: ")


def test_a_breakpoint_hit_still_reads(trace_file, capsys):
    data = trace_file.read_bytes()
    note = {"step": 1, "breakpoint": {"expr": "step == 1", "values": {"step": 1}}, "number": 1}
    text = json.dumps({"data": note, "rows": {}}).encode()
    text += b" " * (-len(text) % 8)
    trace_file.write_bytes(data + CHUNK_HEADER.pack(b"NOTE", len(text), 0, zlib.crc32(text), 1) + text)
    assert Trace(trace_file).step_data(1)["breakpoint"] == note["breakpoint"]
    assert main(["open", str(trace_file), "--headless"]) == 0
    assert "breakpoint 1 `step == 1`: step=1 at step 1" in capsys.readouterr().out


def test_an_infinite_number_where_a_whole_one_goes_is_a_trace_error(trace_file):
    """A cache layer's key shape of 1e999 (JSON's Infinity): OverflowError, exit 1, before."""
    data = trace_file.read_bytes()
    body = chunks(data)[3]["json"]
    body["data"]["cache"]["layers"][0]["key_shape"][1] = float("inf")
    trace_file.write_bytes(rebuilt(data, 3, body))
    with pytest.raises(TraceError, match="OverflowError"):
        Trace(trace_file).step(1)


def test_rows_too_large_to_round_print_without_a_numpy_warning(trace_file, capsys):
    """Rows of 3.4e38 (a float32's largest, bytes flipped where the CRC does not look): rounding
    them for ``--json --attention`` overflowed, and numpy's RuntimeWarning went to stderr (two
    lines where a whole trace prints none)."""
    data = bytearray(trace_file.read_bytes())
    step_1 = chunks(bytes(data))[3]
    rows_at = step_1["end"] - step_1["rows_len"]
    data[rows_at:rows_at + 8] = b"\xff\xff\x7f\x7f" * 2
    trace_file.write_bytes(bytes(data))
    with warnings.catch_warnings():  # outside pytest a warning is a line on stderr
        warnings.simplefilter("error")
        assert main(["open", str(trace_file), "--json", "--attention"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "Infinity" in out.splitlines()[1]


def lens_trace(tmp_path):
    """A 3-step llama trace with step 1's lens: chunk 0 META, 1 PRMT, 2 step 0, 3 step 1, 4 its LENS, 5 step 2."""
    path = tmp_path / "lens.lmscope"
    write_trace(path, make_session("llama", steps=3), lens_steps=(1,))
    assert [chunk["kind"] for chunk in chunks(path.read_bytes())][4] == b"LENS"
    return path


@pytest.mark.parametrize("layers", ["x", [1, 2], None])
def test_a_lens_that_is_not_a_list_of_layers_is_one_line(tmp_path, capsys, layers):
    path = lens_trace(tmp_path)
    path.write_bytes(rebuilt(path.read_bytes(), 4, body={"data": {"step": 1, "layers": layers}, "rows": {}}))
    code, lines, err = json_lines(path, capsys, "--layers")
    warning, error = err.splitlines()  # the lens was recorded for 1 of 3 steps; then step 1's is read
    assert code == 2 and "lens was recorded for 1 of 3 steps" in warning
    assert error.startswith(f"lmscope: error: {str(path)!r} is damaged: the LENS chunk") and "not a list of layers" in error
    assert len(lines) == 1  # step 0, printed before step 1's lens was read


def test_a_lens_for_a_step_not_yet_made_is_damaged(tmp_path, capsys):
    path = lens_trace(tmp_path)
    data = rebuilt(path.read_bytes(), 4, step=2)
    path.write_bytes(data)
    trace = Trace(path)
    assert len(trace) == 2 and trace.tail == "damaged" and trace.unread == len(data) - chunks(data)[4]["at"]


def test_a_lens_number_of_the_wrong_type_is_one_trace_error(tmp_path, capsys):
    """A layer's probability as a word went into the Layers pane's formatting (on the UI thread);
    the lens's numbers are made their types as it is read, like a stage's. ``--json --layers``
    printed it (exit 0), where the Layers pane refused it: it says the same line now, after the
    step before it."""
    path = lens_trace(tmp_path)
    data = path.read_bytes()
    body = chunks(data)[4]["json"]
    body["data"]["layers"][0]["chosen_prob"] = "high"
    path.write_bytes(rebuilt(data, 4, body))
    with pytest.raises(TraceError, match="is damaged: the LENS chunk .* ValueError") as refused:
        Trace(path).lens(1)
    with pytest.raises(TraceError, match="is damaged: the LENS chunk .* ValueError"):
        Trace(path).lens_data(1)
    code, lines, err = json_lines(path, capsys, "--layers")
    assert code == 2 and len(lines) == 1 and err.splitlines()[-1] == f"lmscope: error: {refused.value}"
