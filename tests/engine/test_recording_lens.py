"""The logit lens in a recording: a ``LENS`` chunk per step whose lens was computed, read back
exactly as ``--json --layers`` printed it, attached to the right record after a rewind, and
written by the recording engine only when someone asks for the lens."""

from __future__ import annotations

import math

import pytest

from lmscope.engine.errors import UserError
from lmscope.engine.recording import RecordingEngine, ReplayEngine
from lmscope.engine.trace import lens_to_list
from lmscope.engine.trace_format import FORMAT_VERSION
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import FakeEngine, make_lens, make_session, write_trace


def kinds(path) -> list[bytes]:
    return [chunk.kind for chunk in Trace(path)._chunks]


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_a_recorded_lens_comes_back_as_json_layers_printed_it(tmp_path, family):
    path = tmp_path / "s.lmscope"
    session = write_trace(path, make_session(family, steps=5), lens_steps=(1, 3))
    trace = Trace(path)
    assert FORMAT_VERSION == 1 and trace.lens_steps == 2
    assert [trace.has_lens(i) for i in range(5)] == [False, True, False, True, False]
    for step in (1, 3):
        lens = make_lens(session.steps[step], session.info.layers)
        assert trace.lens_data(step) == lens_to_list(lens)
        back = trace.lens(step)
        assert lens_to_list(back) == lens_to_list(lens)  # every field the JSON has
        assert all(math.isnan(c.score) for entry in back for c in entry.top)  # lens logits are not kept
        assert "layers" not in trace.step_data(step)  # the step itself reads as before
    assert trace.lens_data(0) is None and trace.lens(4) is None


def test_a_lens_belongs_to_the_record_it_was_written_after(tmp_path):
    """A rewind restarts the numbering: the old step 2's lens is not the new step 2's."""
    session = make_session("llama", steps=5)
    path = tmp_path / "r.lmscope"
    writer = TraceWriter(path)
    writer.meta(session.info, {})
    writer.prompt(session.prompt)
    for record in session.steps[:4]:
        writer.step(record)
    writer.lens(2, make_lens(session.steps[2], session.info.layers))
    writer.lens(1, make_lens(session.steps[1], session.info.layers))
    for record in session.steps[2:4]:  # rewound to step 2, stepped again
        writer.step(record)
    writer.lens(3, make_lens(session.steps[3], session.info.layers, top=2))
    writer.close()
    trace = Trace(path)
    assert [trace.has_lens(i) for i in range(4)] == [False, True, False, True]
    assert len(trace.lens_data(3)[0]["top"]) == 2


def test_a_recorder_killed_while_writing_a_lens_keeps_its_step(tmp_path):
    path = tmp_path / "k.lmscope"
    write_trace(path, make_session("llama", steps=3), lens_steps=(0, 2))
    path.write_bytes(path.read_bytes()[:-10])  # the last chunk, step 2's lens, cut short
    trace = Trace(path)
    assert len(trace) == 3 and trace.tail == "cut short"
    assert trace.has_lens(0) and not trace.has_lens(2)


def test_the_replay_engine_shows_a_recorded_lens_and_says_where_there_is_none(tmp_path):
    path = tmp_path / "s.lmscope"
    session = write_trace(path, make_session("llama", steps=3), lens_steps=(1,))
    replay = ReplayEngine(Trace(path))
    assert replay.has_lens(1) and not replay.has_lens(0)
    assert lens_to_list(replay.lens(1)) == lens_to_list(make_lens(session.steps[1], session.info.layers))
    with pytest.raises(UserError, match="keeps no logit lens for this step"):
        replay.lens(0)
    with pytest.raises(UserError, match="keeps no layer tensors"):
        replay.layer_tensors(1, 0)


def recording(tmp_path, steps=6):
    engine = FakeEngine(make_session("llama", steps=steps))
    writer = TraceWriter(tmp_path / "e.lmscope")
    return RecordingEngine(engine, writer, {}), writer, engine


def test_the_recording_engine_writes_a_lens_when_asked_and_only_then(tmp_path):
    recorder, writer, engine = recording(tmp_path)
    recorder.start()
    for _ in range(4):
        recorder.step()
    assert lens_to_list(recorder.lens(1)) == lens_to_list(engine.lens(1))  # what the engine computed, handed on
    recorder.lens(1)  # asked again (the TUI keeps 64 lenses): written once
    recorder.lens(1, top=5)  # another top is another lens
    recorder.rewind(1)
    recorder.step()  # a new step 1: its own lens
    recorder.lens(1)
    writer.close()
    path = tmp_path / "e.lmscope"
    assert kinds(path).count(b"LENS") == 3
    trace = Trace(path)
    assert trace.lens_steps == 1 and len(trace.lens_data(1)[0]["top"]) == 3


def test_a_recording_that_never_asks_for_the_lens_has_no_lens_chunk(tmp_path):
    recorder, writer, _ = recording(tmp_path)
    recorder.start()
    while not recorder.finished:
        recorder.step()
    writer.close()
    assert b"LENS" not in kinds(tmp_path / "e.lmscope") and Trace(tmp_path / "e.lmscope").lens_steps == 0


def test_a_lens_of_a_step_whose_rows_wait_follows_the_step_into_the_trace(tmp_path):
    recorder, writer, engine = recording(tmp_path)
    recorder.start()
    recorder.step()
    recorder.step(rows_later=True)
    recorder.step(rows_later=True)
    recorder.lens(2)  # step 2 is not in the trace yet
    recorder.complete_waiting()
    writer.close()
    path = tmp_path / "e.lmscope"
    assert kinds(path)[-3:] == [b"STEP", b"STEP", b"LENS"]
    assert Trace(path).lens_data(2) == lens_to_list(engine.lens(2))
