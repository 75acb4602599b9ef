"""A continue's hand-over may write its rows behind (``complete_waiting(write_behind=True)``):
the writes run on the row store's writer thread, ``rows_written`` says when they are done, and
the rows, captures and records are then exactly those written in the step."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lmscope.engine import row_store
from lmscope.engine.row_store import RowStore
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from test_deferred_rows import assert_same_rows, immediate_steps
from test_layer_replay import captures

PROMPT = "the quick brown fox"
SETTINGS = GenerationSettings(max_new_tokens=14, min_new_tokens=14)


@pytest.fixture(autouse=True)
def writes_behind(monkeypatch):
    """Write behind whatever cores this machine has (``row_store.writer_has_a_core``)."""
    monkeypatch.setattr(Stepper, "writes_behind", True)


@pytest.fixture
def held_writer(monkeypatch):
    """The writer thread waits for the returned event before it writes anything."""
    release, write_all = threading.Event(), row_store._write_all

    def held(queued):
        assert release.wait(timeout=10)
        write_all(queued)

    monkeypatch.setattr(row_store, "_write_all", held)
    yield release
    release.set()  # a failing test must not leave the writer waiting


def test_writes_queued_behind_land_only_on_the_writer_thread(held_writer):
    store = RowStore(chunk_bytes=4096)
    rows = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    with store.writing_behind():
        written = store.put(rows)
        assert not store._in_flight  # queued: the job goes at the block's end, as one
    assert not store.written()
    assert not written.any()  # zeros until the writer runs
    held_writer.set()
    store.settle()
    assert store.written() and store.bytes_written == rows.numel() * 4
    np.testing.assert_array_equal(written, rows.numpy())


def test_outside_the_block_writes_are_immediate():
    store = RowStore(chunk_bytes=4096)
    with store.writing_behind(False):
        written = store.put(torch.ones(3, 5))
    assert store.written() and not store._in_flight
    np.testing.assert_array_equal(written, np.ones((3, 5), np.float32))


def test_a_failed_write_is_raised_by_settle(monkeypatch):
    def failing(queued):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(row_store, "_write_all", failing)
    store = RowStore(chunk_bytes=4096)
    with store.writing_behind():
        store.put(torch.ones(2, 2))
    with pytest.raises(OSError, match="No space left"):
        store.settle()
    store.settle()  # reported once: the store goes on


def continued(loaded, settings=SETTINGS, block: int = 4, prompt: str = PROMPT):
    """A continue as the TUI runs it: records wait, each hand-over writes behind, one in flight."""
    stepper = Stepper(loaded, prompt, settings)
    stepper.start()
    made = []
    while not stepper.finished:
        for _ in range(block):
            if not stepper.finished:
                stepper.step(rows_later=True, record_later=True)
        stepper.rows_written(wait=True)
        made += stepper.complete_waiting(write_behind=True)
    made += stepper.complete_waiting()
    assert stepper.rows_written()
    return stepper, made


def test_rows_written_behind_equal_rows_written_in_the_step(loaded):
    _, made = continued(loaded)
    assert_same_rows(immediate_steps(loaded), list(made))


def test_layer_captures_after_hand_overs_written_behind_equal_those_made_in_the_step(loaded):
    """A continue's steps capture no layers; replayed after its rows were written behind, they
    equal the captures of steps made in place."""
    stepper, _ = continued(loaded)
    expected = Stepper(loaded, PROMPT, SETTINGS)
    expected.start()
    for _ in range(SETTINGS.max_new_tokens):
        expected.step()
    got, want = captures(stepper, range(6)), captures(expected, range(6))
    for (residual, layers), (want_residual, want_layers) in zip(got, want):
        np.testing.assert_allclose(residual, want_residual, atol=1e-6)
        assert [[t.shape for t in layer] for layer in layers] == [[t.shape for t in layer] for layer in want_layers]


def test_the_hand_over_returns_before_its_rows_are_written(loaded, held_writer):
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(3):
        stepper.step(rows_later=True, record_later=True)
    made = stepper.complete_waiting(write_behind=True)
    assert len(made) == 3 and not stepper.rows_written()
    # Not written yet (Llama's step 0 is the prefill's, written in start()).
    assert not any(record.attention.probs.any() for record in made if record.step > 0)
    stepper.step(rows_later=True, record_later=True)  # the next steps run meanwhile
    held_writer.set()
    assert stepper.rows_written(wait=True)
    assert_same_rows(immediate_steps(loaded)[:3], list(made))


@pytest.mark.parametrize("then", ["complete", "step", "rewind"])
def test_everything_that_reads_rows_waits_for_the_writes_first(loaded, held_writer, then):
    """A plain complete_waiting, a step that does not wait and a rewind all read the store (or
    hand records on): each waits for what was written behind. (The lens reads a layer capture,
    which a continue's steps replay when asked: written as it is made.)"""
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(3):
        stepper.step(rows_later=True, record_later=True)
    made = stepper.complete_waiting(write_behind=True)
    threading.Timer(0.05, held_writer.set).start()
    {"complete": stepper.complete_waiting, "step": stepper.step,
     "rewind": lambda: stepper.rewind(2)}[then]()
    assert stepper.rows_written()
    assert_same_rows(immediate_steps(loaded)[:3], list(made))


def test_at_most_one_write_job_is_in_flight(held_writer):
    store = RowStore(chunk_bytes=4096)
    with store.writing_behind():
        first = store.put(torch.ones(2, 2))
    threading.Timer(0.05, held_writer.set).start()
    with store.writing_behind():  # waits for the first job before it queues another
        assert first.all()
        store.put(torch.ones(2, 2))
    assert len(store._in_flight) == 1


def test_steps_over_the_byte_budget_write_behind_too(loaded, monkeypatch):
    """A step that finds the waiting steps over budget completes them with their writes behind
    (the continue waits for rows_written before it shows them); the rows are the step's own."""
    from lmscope.engine import stepper as stepper_module

    jobs, write_all = [], row_store._write_all
    monkeypatch.setattr(row_store, "_write_all", lambda queued: (jobs.append(len(queued)), write_all(queued)))
    monkeypatch.setattr(stepper_module, "MAX_WAITING_BYTES", 1)  # every step completes the one before
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    steps = [stepper.step(rows_later=True) for _ in range(SETTINGS.max_new_tokens)]
    stepper.rows_written(wait=True)  # the last job ran (jobs counts them as they run)
    assert len(jobs) >= SETTINGS.max_new_tokens - 2  # each completion went to the writer
    stepper.complete_waiting()
    assert stepper.rows_written()
    assert_same_rows(immediate_steps(loaded), steps)


@pytest.mark.parametrize("threads, cores, device, expected", [
    (2, 2, "cpu", False), (1, 2, "cpu", True), (4, 16, "cpu", True), (16, 16, "cuda", True)])
def test_the_writer_needs_a_core_the_step_leaves_free(monkeypatch, threads, cores, device, expected):
    from lmscope.engine import cores as cores_module

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(cores_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert row_store.writer_has_a_core(torch.device(device)) is expected


def test_where_every_core_runs_the_forward_the_hand_over_writes_at_once(loaded, monkeypatch, held_writer):
    monkeypatch.setattr(Stepper, "writes_behind", None)
    monkeypatch.setattr(row_store.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(row_store.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    for _ in range(3):
        stepper.step(rows_later=True, record_later=True)
    made = stepper.complete_waiting(write_behind=True)  # the held writer is never asked
    assert stepper.rows_written() and not stepper._rows._in_flight
    assert_same_rows(immediate_steps(loaded)[:3], list(made))


def test_ranks_answer_rows_written_from_rank_0_alone():
    """A continue asks after every step: the question is rank 0's own, never a collective (a
    broadcast here would fail: no process group exists)."""
    from lmscope.engine.distributed import BroadcastEngine
    from lmscope.testing import FakeEngine, make_session

    fake = FakeEngine(make_session("llama", steps=4), writes_behind=True, written_after=1)
    engine = BroadcastEngine(fake, channel=None)
    fake.writing.add(0)
    fake._checks_left = 1
    assert engine.rows_written() is False and engine.rows_written() is True
    assert engine.broken is None
