"""The row store's pages made ready between steps (``RowStore.prepare``, ``Stepper.prepare_next``):
the next step's rows land in them, nothing written is overwritten, and the rows are the same."""

from __future__ import annotations

import os

import numpy as np
import torch

from lmscope.engine.row_store import ALIGN, RowStore
from lmscope.engine.stepper import Stepper

from test_deferred_rows import PROMPT, SETTINGS, assert_same_rows, immediate_steps


def read_back(chunk, start: int, nbytes: int) -> bytes:
    return os.pread(chunk.fd, nbytes, start)


def test_the_next_reservations_land_in_the_prepared_pages_and_nothing_written_is_overwritten():
    store = RowStore(chunk_bytes=1 << 20)
    first = store.reserve((4, 1000))
    store.write(first, torch.full((4, 1000), 0.5))
    store.prepare(3 * 16000)
    chunk, used = first.chunk, store._used
    assert chunk.prepared == used + 3 * 16000
    assert read_back(chunk, used, 3 * 16000) == bytes(3 * 16000)
    np.testing.assert_array_equal(store.view(first), np.full((4, 1000), 0.5, dtype=np.float32))
    slots = [store.reserve((4, 1000)) for _ in range(3)]
    assert all(slot.chunk is chunk and slot.offset + 16000 <= chunk.prepared for slot in slots)
    store.prepare(3 * 16000)  # again: only what lies past the prepared part is written
    assert chunk.prepared == store._used + 3 * 16000


def test_a_step_that_will_not_fit_gets_the_next_chunk_prepared_ahead():
    store = RowStore(chunk_bytes=64 * 1024)
    store.reserve((15000,))  # 60000 of 65536 bytes used
    store.prepare(16000)
    spare = store._spare
    assert spare is not None and spare.prepared == 16000
    slot = store.reserve((4000,))
    assert slot.chunk is spare and slot.offset == 0
    assert store.reserve((10,)).offset == (16000 + ALIGN - 1) // ALIGN * ALIGN


def test_prepare_next_sizes_the_next_step_and_the_rows_stay_the_same(loaded):
    expected = immediate_steps(loaded)
    stepper = Stepper(loaded, PROMPT, SETTINGS)
    stepper.start()
    store = stepper._rows
    stepper.prepare_next()  # no step yet: the prompt's rows do not size a step
    assert store._chunk.prepared == 0 and store._spare is None
    steps, prepared = [], 0
    for _ in range(SETTINGS.max_new_tokens):
        before = store.bytes_written
        steps.append(stepper.step())
        step_bytes = store.bytes_written - before  # none at Llama's step 0: the prefill wrote its rows
        ahead = (store._chunk.prepared, store._spare and store._spare.prepared)
        stepper.prepare_next()
        if stepper.finished:  # no next step: nothing to prepare
            assert (store._chunk.prepared, store._spare and store._spare.prepared) == ahead
        elif step_bytes:
            chunk = store._spare or store._chunk
            assert chunk.prepared >= (0 if store._spare else store._used) + step_bytes
            prepared += 1
    assert prepared >= SETTINGS.max_new_tokens - 2 and stepper.finished
    assert_same_rows(expected, steps)
