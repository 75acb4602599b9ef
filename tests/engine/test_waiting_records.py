"""Records made later (``Stepper.step(record_later=True)``, a continue without breakpoints) equal
the records made in the step: every stage's candidates, removals, re-rankings, kept count and
entropy, the chosen token's probability and raw rank, the tensors, the cache and the rows."""

from __future__ import annotations

import dataclasses

import pytest

from lmscope.engine import stepper as stepper_module
from lmscope.engine.recording import RecordingEngine
from lmscope.engine.records import LazyTuple
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import MAX_WAITING_BYTES, Stepper
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from test_deferred_rows import assert_same_rows

PROMPT = "the quick brown fox"
GREEDY = GenerationSettings(max_new_tokens=12, min_new_tokens=12)
SAMPLING = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.8, top_k=20, top_p=0.9,
                              repetition_penalty=1.3, seed=3)


def in_place(loaded, settings) -> list:
    stepper = Stepper(loaded, PROMPT, settings)
    stepper.start()
    steps = []
    while not stepper.finished:
        steps.append(stepper.step())
    return steps


def plain(value):
    """Records compare by identity (``eq=False``): their values, as plain data (a LazyTuple
    read as the tuple it makes)."""
    if dataclasses.is_dataclass(value):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (tuple, LazyTuple)):
        return [plain(item) for item in value]
    return value


def assert_same_records(expected, got) -> None:
    assert [r.step for r in got] == [r.step for r in expected]
    for want, have in zip(expected, got):
        for field in dataclasses.fields(want):
            name = field.name
            if name in ("elapsed_s", "attention", "cross_attention"):
                continue
            assert plain(getattr(have, name)) == plain(getattr(want, name)), (want.step, name)
    assert_same_rows(expected, got)


@pytest.mark.parametrize("settings", [GREEDY, SAMPLING], ids=["greedy", "sampling"])
def test_records_made_later_equal_records_made_in_the_step(loaded, settings):
    stepper = Stepper(loaded, PROMPT, settings)
    stepper.start()
    got = []
    while not stepper.finished:
        assert stepper.step(record_later=True) is None
        if len(stepper._records) == 5:  # hand-overs of 5, 5 and 2 steps
            got += stepper.complete_waiting()
    got += stepper.complete_waiting()
    assert stepper.complete_waiting() == ()
    expected = in_place(loaded, settings)
    assert_same_records(expected, got)
    assert len(got[0].stages) == len(stepper._state.processors) + 1 >= 3  # every processor's stage


def test_no_waiting_record_is_lost_to_a_step_a_rewind_or_the_budget(loaded, monkeypatch):
    expected = in_place(loaded, GREEDY)
    stepper = Stepper(loaded, PROMPT, GREEDY)
    stepper.start()
    for _ in range(3):
        stepper.step(record_later=True)
    made_in_place = stepper.step()  # completes the three waiting steps first
    assert made_in_place.step == 3
    monkeypatch.setattr(stepper_module, "MAX_WAITING_BYTES", 1)  # every step completes the one before
    for _ in range(3):
        stepper.step(record_later=True)
    assert len(stepper._records) == 1
    monkeypatch.setattr(stepper_module, "MAX_WAITING_BYTES", MAX_WAITING_BYTES)
    got = stepper.complete_waiting()
    assert [r.step for r in got] == [0, 1, 2, 4, 5, 6]
    assert_same_records([expected[i] for i in (0, 1, 2, 4, 5, 6)], got)
    assert_same_records([expected[3]], [made_in_place])
    stepper.step(record_later=True)
    stepper.rewind(2)
    assert [r.step for r in stepper.complete_waiting()] == [7]  # made before the rewind, still returned
    again = [stepper.step() for _ in range(3)]
    assert_same_records(expected[2:5], again)


def test_the_trace_writes_records_made_later_in_order(loaded, tmp_path):
    path = tmp_path / "later.lmscope"
    stepper = Stepper(loaded, PROMPT, GREEDY)
    writer = TraceWriter(path)
    engine = RecordingEngine(stepper, writer, {})
    engine.start()
    for _ in range(4):
        assert engine.step(rows_later=True, record_later=True) is None
    returned = engine.complete_waiting()
    while not engine.finished:
        engine.step()
    engine.complete_waiting()
    writer.close()
    trace = Trace(path)
    assert [r.step for r in returned] == [0, 1, 2, 3]
    assert_same_records(in_place(loaded, GREEDY), [trace.step(i) for i in range(len(trace))])
