"""How a trace is read: every byte with ``os.pread``, never through its mapping (a trace truncated
while open would end the process with SIGBUS there: test_trace_shrunk.py); the OS is told that
the reads are random (a pane reads a few KiB a step), and each read asks for what is read whole
(a chunk's header and JSON while scanning, a row a pane shows, the rows ``--json --attention``
prints)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lmscope.engine import trace_file, trace_format
from lmscope.engine.mapped_rows import byte_bounds, read_ahead, read_values
from lmscope.engine.trace_format import TraceError
from lmscope.engine.trace_reader import Trace
from lmscope.testing import make_session, write_trace


def write(path, steps=3, n_prompt=None):
    return write_trace(path, make_session("llama", steps=steps, n_prompt=n_prompt))


@pytest.fixture
def preads(monkeypatch) -> list[tuple[int, int]]:
    """Every ``os.pread`` from now on, as ``(offset, size)``."""
    calls, pread = [], os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, at: (calls.append((at, size)), pread(fd, size, at))[1])
    return calls


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this OS")
def test_a_trace_is_opened_for_random_reads(tmp_path, monkeypatch):
    """The default readahead read several times a chunk's header and JSON while scanning, and
    around each row a pane reads."""
    told, fadvise = [], os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: (told.append(args[1:]), fadvise(*args))[1])
    write(tmp_path / "s.lmscope")
    Trace(tmp_path / "s.lmscope")
    assert told == [(0, 0, os.POSIX_FADV_RANDOM)]


def test_the_scan_reads_each_chunks_header_and_json_at_once(tmp_path, preads):
    write(tmp_path / "s.lmscope", n_prompt=3000)  # the prompt's JSON (its ids, its tokens) is longer than a read
    size = (tmp_path / "s.lmscope").stat().st_size
    trace = Trace(tmp_path / "s.lmscope")
    prompt = trace._prompt_chunk
    assert prompt.body.stop - prompt.body.start > trace_file._SCAN_AHEAD
    at_each = [(chunk.body.start - trace_format.CHUNK_HEADER.size) for chunk in trace._chunks]
    scan = [(at, min(trace_file._SCAN_AHEAD, size - at)) for at in at_each]
    rest = prompt.body.stop - (at_each[1] + trace_file._SCAN_AHEAD)
    assert preads[:len(scan) + 2] == [(0, trace_format.FILE_HEADER.size), scan[0], scan[1],
                                      (at_each[1] + trace_file._SCAN_AHEAD, rest), *scan[2:]]


def test_a_step_reads_its_json_from_the_scan_then_from_the_file_and_its_rows_when_they_are_read(tmp_path, preads):
    """The scan read every chunk's JSON to check it: the first read of a step takes that (a
    ``pread`` a step made the worker that loads the history wait for the UI thread at each one)."""
    session = write(tmp_path / "s.lmscope")
    trace = Trace(tmp_path / "s.lmscope")
    chunk = trace._steps[1][0]
    preads.clear()
    record = trace.step(1)
    assert preads == []  # its JSON as the scan read it; its rows stay mapped, unread
    trace.step(1)
    assert preads == [(chunk.body.start, chunk.body.stop - chunk.body.start)]  # read again
    preads.clear()
    rows = trace.rows(1)["attention"]  # --json --attention: all of them, in one read
    assert preads[1:] == [(chunk.rows_at, rows.probs.nbytes)] and rows.probs.base is not record.attention.probs.base
    np.testing.assert_array_equal(rows.probs, session.steps[1].attention.probs)
    preads.clear()
    head = read_ahead(record.attention.probs[2, 1])  # what a pane reads: one head's row
    start = chunk.rows_at + record.attention.probs[2, 1].ctypes.data - record.attention.probs.ctypes.data
    assert preads == [(start, head.nbytes)]
    np.testing.assert_array_equal(head, session.steps[1].attention.probs[2, 1])


def test_a_json_read_again_is_checked_again(tmp_path):
    """A trace written over in place while open, its length kept (a file copied onto it): a step
    read again is refused, not decoded from another session's bytes."""
    from trace_chunks import chunks, rebuilt

    write(tmp_path / "s.lmscope")
    trace = Trace(tmp_path / "s.lmscope")
    trace.step(1)
    data = (tmp_path / "s.lmscope").read_bytes()
    body = chunks(data)[3]["json"]
    body["data"]["token"] = body["data"]["token"][::-1]
    changed = rebuilt(data, 3, body)
    assert len(changed) == len(data)
    with open(tmp_path / "s.lmscope", "r+b") as file:  # in place, as cp writes
        file.write(changed)
    trace.step(2)  # read once only: the JSON the scan checked
    with pytest.raises(TraceError, match="was written over while it was open: the chunk at byte"):
        trace.step(1)


def test_only_the_live_branchs_json_is_kept(tmp_path):
    """The JSON of a rewound step is never read: it is not kept."""
    from lmscope.engine.trace_writer import TraceWriter

    session = make_session("llama", steps=4)
    writer = TraceWriter(tmp_path / "r.lmscope")
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    for record in (*session.steps, *session.steps[2:]):  # rewound to step 2, stepped again
        writer.step(record)
    writer.close()
    trace = Trace(tmp_path / "r.lmscope")
    assert sorted(trace._texts) == [step.body.start for step, _ in trace._steps]


def test_a_prompt_querys_row_of_every_head_is_read_a_head_at_a_time_not_the_span(tmp_path, preads):
    """Its heads lie a head's queries apart: one read of the span read every other query too."""
    session = write(tmp_path / "s.lmscope", n_prompt=40)
    probs = Trace(tmp_path / "s.lmscope").prompt().attention.probs
    preads.clear()
    layer, heads, queries, keys = probs.shape
    row = read_ahead(probs[1][:, 5])
    assert len(preads) == heads and all(size == keys * 4 for _, size in preads)
    np.testing.assert_array_equal(row, session.prompt.attention.probs[1][:, 5])


@pytest.mark.parametrize("picked", [np.s_[2, 1, 0], np.s_[2, :, 0], np.s_[2, :, 1:3], np.s_[::-1, 0, 0],
                                    np.s_[1, 3, :, 2], np.s_[:, ::-1, 2, ::-2], np.s_[0, 0, 0, 5:5]])
def test_read_values_copies_any_view_of_a_file(picked):
    """The views a pane takes, and views of any other strides (reversed, a column, empty)."""
    data = np.arange(4 * 5 * 3 * 7, dtype="<f4").reshape(4, 5, 3, 7)
    file, at = b"\xff" * 40 + data.tobytes() + b"\xff" * 40, []

    def read(offset, size):
        at.append((offset, size))
        return file[offset:offset + size]

    view = data[picked]
    low, high = (address - data.ctypes.data for address in byte_bounds(view))
    values = read_values(read, view, 40 + low)
    np.testing.assert_array_equal(values, view)
    assert values.shape == view.shape and values.dtype == view.dtype
    assert all(40 + low <= offset and offset + size <= 40 + high for offset, size in at)  # its bytes only
