"""Large writes into pages not prepared go straight to the disk (``O_DIRECT``): the aligned middle
directly, any partial block at either end buffered, and every row reads back as written, through
the read-only mapping as through the file, whatever was read before."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from lmscope.engine import row_store
from lmscope.engine.errors import UserError
from lmscope.engine.row_store import DIRECT_ALIGN, DIRECT_MIN_BYTES, STAGE_BYTES, RowStore
from lmscope.engine.row_writes import ROW_WRITES_ENV

from test_deferred_rows import PROMPT, SETTINGS
from test_write_behind import continued

BIG = (3, DIRECT_MIN_BYTES // 4 + 1001)
"""Float32 rows past the direct threshold, whose size is no multiple of a block."""


@pytest.fixture
def direct_store(monkeypatch) -> RowStore:
    monkeypatch.delenv(ROW_WRITES_ENV, raising=False)
    store = RowStore()
    store.reserve((1,))  # the first chunk, which finds out whether this file system takes O_DIRECT
    if not store.writes_directly:
        pytest.skip(f"the temporary directory's file system refuses O_DIRECT ({os.environ.get('TMPDIR', '/tmp')})")
    return store


@pytest.fixture
def pwrites(monkeypatch) -> list[tuple[int, int, int]]:
    """Every ``os.pwrite`` from now on, as ``(fd, nbytes, offset)``."""
    calls, pwrite = [], os.pwrite

    def recorded(fd, data, offset):
        calls.append((fd, len(memoryview(data).cast("B")), offset))
        return pwrite(fd, data, offset)

    monkeypatch.setattr(row_store.os, "pwrite", recorded)
    return calls


@pytest.fixture
def advised(monkeypatch) -> list[tuple]:
    """Every ``madvise`` on a row store mapping from now on, as its arguments."""
    from lmscope.engine.mapped_rows import RowMapping

    calls, madvise = [], RowMapping.madvise
    monkeypatch.setattr(RowMapping, "madvise", lambda self, *args: (calls.append(args), madvise(self, *args))[1])
    return calls


def rows(shape, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_the_aligned_middle_goes_direct_and_the_partial_ends_buffered(direct_store, pwrites):
    slot = direct_store.reserve(BIG)  # after the first slot: starts 64 bytes into the file
    data = rows(BIG)
    direct_store.write(slot, data)
    chunk, start, end = slot.chunk, slot.offset, slot.offset + data.numel() * 4
    assert start % DIRECT_ALIGN and end % DIRECT_ALIGN  # both ends partial
    direct = [(offset, nbytes) for fd, nbytes, offset in pwrites if fd == chunk.direct_fd]
    buffered = [(offset, nbytes) for fd, nbytes, offset in pwrites if fd == chunk.fd]
    first, last = -(-start // DIRECT_ALIGN) * DIRECT_ALIGN, end // DIRECT_ALIGN * DIRECT_ALIGN
    assert direct == [(first, last - first)]  # one part: smaller than the staging buffer
    assert buffered == [(start, first - start), (last, end - last)]
    np.testing.assert_array_equal(direct_store.view(slot), data.numpy())
    assert os.pread(chunk.fd, end - start, start) == data.numpy().tobytes()


def test_a_write_larger_than_the_staging_buffer_goes_in_parts(direct_store, pwrites):
    shape = (2, STAGE_BYTES // 4 + 5000)
    slot = direct_store.reserve(shape)
    data = rows(shape, seed=1)
    direct_store.write(slot, data)
    direct = [nbytes for fd, nbytes, _ in pwrites if fd == slot.chunk.direct_fd]
    assert len(direct) == 3 and max(direct) == STAGE_BYTES
    np.testing.assert_array_equal(direct_store.view(slot), data.numpy())


def test_rows_read_as_zeros_before_the_write_read_as_written_after_it(direct_store):
    slot = direct_store.reserve(BIG)
    view = direct_store.view(slot)
    assert not view.any()  # the mapping's pages now hold the zeros
    data = rows(BIG, seed=2)
    direct_store.write(slot, data)
    np.testing.assert_array_equal(view, data.numpy())  # the direct write dropped the stale pages
    np.testing.assert_array_equal(direct_store.view(slot), data.numpy())


def test_prepared_pages_and_small_writes_stay_buffered(direct_store, pwrites):
    nbytes = BIG[0] * BIG[1] * 4
    direct_store.prepare(nbytes + 4096)
    prepared = direct_store.reserve(BIG)
    direct_store.write(prepared, rows(BIG, seed=3))
    small = direct_store.reserve((100, 100))
    direct_store.write(small, rows((100, 100), seed=4))
    assert pwrites and all(fd == prepared.chunk.fd for fd, _, _ in pwrites)
    np.testing.assert_array_equal(direct_store.view(prepared), rows(BIG, seed=3).numpy())
    np.testing.assert_array_equal(direct_store.view(small), rows((100, 100), seed=4).numpy())


def test_layer_by_layer_parts_of_one_slot_read_back_whole(direct_store):
    shape = (5, 3, 17, 2049)  # a prefill's [layer, head, rows, key_pos]: each layer's part unaligned
    slot = direct_store.reserve(shape)
    data = rows(shape, seed=5)
    for layer in range(shape[0]):
        direct_store.write(slot, data[layer], index=layer)
    np.testing.assert_array_equal(direct_store.view(slot), data.numpy())


def test_two_threads_writing_at_once_each_use_their_own_staging_buffer(direct_store):
    slots = [direct_store.reserve((2, STAGE_BYTES // 4)) for _ in range(2)]
    datas = [rows((2, STAGE_BYTES // 4), seed=6 + index) for index in range(2)]
    start = threading.Barrier(2)

    def write(index: int) -> None:
        start.wait()
        for _ in range(3):
            direct_store.write(slots[index], datas[index])

    threads = [threading.Thread(target=write, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for slot, data in zip(slots, datas):
        np.testing.assert_array_equal(direct_store.view(slot), data.numpy())


def test_buffered_when_asked_and_a_bad_setting_is_one_clear_error(monkeypatch, pwrites):
    monkeypatch.setenv(ROW_WRITES_ENV, "buffered")
    store = RowStore()
    slot = store.reserve(BIG)
    store.write(slot, rows(BIG))
    assert not store.writes_directly and slot.chunk.direct_fd is None
    assert all(fd == slot.chunk.fd for fd, _, _ in pwrites)
    monkeypatch.setenv(ROW_WRITES_ENV, "fast")
    with pytest.raises(UserError, match="LMSCOPE_ROW_WRITES must be direct or buffered, not 'fast'"):
        RowStore()


def test_a_file_system_that_refuses_the_write_leaves_the_chunk_buffered(monkeypatch, direct_fds):
    """Some file systems open a file with O_DIRECT and then refuse the write: the chunk's probe
    finds out, and every write is buffered."""
    pwrite = os.pwrite

    def refusing(fd, data, offset):
        if fd in direct_fds:
            raise OSError(22, "Invalid argument")
        return pwrite(fd, data, offset)

    monkeypatch.setattr(row_store.os, "pwrite", refusing)
    store = RowStore(direct=True)
    slot = store.reserve(BIG)
    store.write(slot, rows(BIG))
    assert not store.writes_directly
    np.testing.assert_array_equal(store.view(slot), rows(BIG).numpy())


def test_writing_behind_pays_without_a_free_core_only_for_direct_writes(direct_store, monkeypatch):
    monkeypatch.setattr(row_store, "writer_has_a_core", lambda device: False)
    cpu = torch.device("cpu")
    assert row_store.writing_behind_pays(direct_store, cpu, DIRECT_MIN_BYTES)
    assert not row_store.writing_behind_pays(direct_store, cpu, DIRECT_MIN_BYTES - 1)
    assert not row_store.writing_behind_pays(RowStore(direct=False), cpu, DIRECT_MIN_BYTES)
    monkeypatch.setattr(row_store, "writer_has_a_core", lambda device: True)
    assert row_store.writing_behind_pays(RowStore(direct=False), cpu, 1)


LONG_PROMPT = " ".join([PROMPT] * 40)
"""160 words: a hand-over's rows over them (T5's cross-attention, the Llama's self-attention) span
whole blocks of the file, which the tiny models' rows over a short prompt would not."""


def test_a_continue_with_its_rows_written_direct_stores_the_same_bytes(loaded, monkeypatch, direct_store, pwrites):
    """With the threshold lowered to one block, a continue's hand-overs go direct, and each
    step's rows are bit for bit those of the same continue written buffered."""
    monkeypatch.setattr(row_store, "DIRECT_MIN_BYTES", DIRECT_ALIGN)
    monkeypatch.setenv(ROW_WRITES_ENV, "buffered")
    _, buffered = continued(loaded, block=7, prompt=LONG_PROMPT)
    monkeypatch.setenv(ROW_WRITES_ENV, "direct")
    pwrites.clear()
    stepper, direct = continued(loaded, block=7, prompt=LONG_PROMPT)
    direct_fd = stepper._rows._chunk.direct_fd
    assert direct_fd is not None and any(fd == direct_fd for fd, _, _ in pwrites)
    assert len(direct) == SETTINGS.max_new_tokens
    assert [step.token_id for step in direct] == [step.token_id for step in buffered]
    for want, have in zip(buffered, direct):
        for kind in ("attention", "cross_attention"):
            if getattr(want, kind) is not None:
                np.testing.assert_array_equal(getattr(have, kind).probs, getattr(want, kind).probs)


def test_read_ahead_asks_for_the_pages_under_a_view_and_nothing_else(direct_store, advised):
    import mmap

    from lmscope.engine.mapped_rows import byte_bounds, read_ahead


    shape = (6, 9, 4, 2060)
    slot = direct_store.reserve(shape)
    data = rows(shape, seed=9)
    direct_store.write(slot, data)
    view = direct_store.view(slot)
    first = slot.chunk.mapped.__array_interface__["data"][0]
    for picked, expected in ((view[4, :, 3], data[4, :, 3]), (view[2, 5, 1], data[2, 5, 1]),
                             (view[::-1, 0, 0], data.flip(0)[:, 0, 0])):
        assert read_ahead(picked) is picked
        advice, start, length = advised[-1]
        low, high = (address - first for address in byte_bounds(picked))
        assert advice == mmap.MADV_WILLNEED and start % mmap.PAGESIZE == 0
        assert start <= low < start + mmap.PAGESIZE and start + length == high
        np.testing.assert_array_equal(picked, expected.numpy())
    assert len(advised) == 3
    read_ahead(np.zeros((2, 3), np.float32))  # not a row store mapping: nothing asked
    read_ahead(view[0, 0, 0, :0])  # nothing to read
    assert len(advised) == 3


def test_the_heatmap_reads_a_row_after_asking_for_its_pages(direct_store, advised):
    from lmscope.engine.records import AttentionRows
    from lmscope.tui.draw.attention_rows import head_row

    shape = (3, 4, 1, 300)
    slot = direct_store.reserve(shape)
    data = rows(shape, seed=10)
    direct_store.write(slot, data)
    attention = AttentionRows("self", direct_store.view(slot))
    np.testing.assert_array_equal(head_row(attention, 0, 1, 2), data[1, 2, 0].numpy())
    np.testing.assert_allclose(head_row(attention, 0, 2, None), data[2, :, 0].numpy().mean(axis=0), rtol=1e-6)
    assert len(advised) == 2


def test_short_writes_are_finished_and_a_write_of_nothing_is_an_error(direct_store, monkeypatch):
    """``pwrite`` may write less than asked (a direct write stopped by a full disk does)."""
    pwrite = os.pwrite
    monkeypatch.setattr(row_store.os, "pwrite", lambda fd, data, offset: pwrite(fd, memoryview(data)[:8192], offset))
    slot = direct_store.reserve(BIG)
    direct_store.write(slot, rows(BIG, seed=11))
    np.testing.assert_array_equal(direct_store.view(slot), rows(BIG, seed=11).numpy())
    monkeypatch.setattr(row_store.os, "pwrite", lambda fd, data, offset: 0)
    with pytest.raises(OSError, match="no bytes written"):
        direct_store.write(direct_store.reserve((10,)), rows((10,)))
