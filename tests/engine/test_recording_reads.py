"""How a trace is read: the OS is told that panes read a few KiB a step, and asked ahead for what
is read whole (a chunk's header and JSON while scanning, the rows that ``--json --attention``
prints)."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from lmscope.engine import recording
from lmscope.engine.recording import Trace, _advise
from lmscope.testing import make_session, write_trace


class Mapped:
    """Stands in for an mmap: records what it was told."""

    def __init__(self):
        self.told = []

    def madvise(self, *args):
        self.told.append(args)


def write(path, steps=3):
    return write_trace(path, make_session("llama", steps=steps))


needs_madvise = pytest.mark.skipif(not hasattr(mmap, "MADV_RANDOM"), reason="no madvise on this OS")


@needs_madvise
def test_a_range_starts_on_a_page_boundary_and_still_covers_its_bytes():
    mapped = Mapped()
    _advise(mapped, "MADV_WILLNEED", mmap.PAGESIZE + 100, 50)
    assert mapped.told == [(mmap.MADV_WILLNEED, mmap.PAGESIZE, 150)]
    _advise(mapped, "MADV_RANDOM")
    assert mapped.told[-1] == (mmap.MADV_RANDOM,)


def test_advice_the_os_does_not_know_is_skipped():
    mapped = Mapped()
    _advise(mapped, "MADV_NO_SUCH_ADVICE")
    _advise(object(), "MADV_RANDOM")  # no madvise at all (Windows)
    assert mapped.told == []


@needs_madvise
def test_a_trace_is_mapped_for_random_reads_and_full_rows_are_asked_ahead(tmp_path, monkeypatch):
    told = []
    monkeypatch.setattr(recording, "_advise", lambda mapped, advice, *span: told.append((advice, *span)))
    session = write(tmp_path / "s.lmscope")
    trace = Trace(tmp_path / "s.lmscope")
    starts = [recording._FILE_HEADER.size] + [chunk.end for chunk in trace._chunks]
    assert told[0] == ("MADV_RANDOM",)
    assert told[1:] == [("MADV_WILLNEED", at, recording._SCAN_AHEAD) for at in starts[:len(told) - 1]]
    assert len(told) - 1 == len(trace._chunks)  # the scan asks for each chunk's header and JSON at once
    told.clear()
    trace.step(1)
    assert told == []  # a record's rows stay mapped, unread
    rows = trace.rows(1)["attention"]
    chunk = trace._steps[1][0]  # the rows part of step 1's chunk, all of it
    assert told[-1] == ("MADV_WILLNEED", chunk.rows_at, chunk.end - chunk.rows_at)
    assert chunk.end - chunk.rows_at >= rows.probs.nbytes
    np.testing.assert_array_equal(rows.probs, session.steps[1].attention.probs)
