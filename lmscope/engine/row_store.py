"""Attention rows kept in temporary files and mapped read-only, instead of on the Python heap.

A 30-layer, 9-head model at 2k context produces 2.2 MB of float32 attention rows per step;
a 500-step history would hold over a gigabyte, and a prefill's rows for all layers more
than the prefill itself. Rows are written once, with ``pwrite``, and read only when a pane
shows them, so they live in unlinked temporary files mapped read-only: the process's memory
holds them only while a pane reads them, and the operating system's page cache does the rest.
Records still hold ordinary (read-only) numpy arrays.

Writing costs the step more than it looks: each write lands in page-cache pages the process
never had, and on a virtual machine whose host backs memory lazily the first touch of each
4 KiB page faults into the host (``benchmarks/page_cost.py``: a 2k step's 2.2 MiB took 5.4 ms
on this project's machine). So a single step's rows go into pages :meth:`RowStore.prepare` made
while the person read the last step, and a large write into pages not prepared (a continue's
hand-over) goes straight to the disk (``O_DIRECT``, through a small page-aligned staging buffer):
on this project's machine a buffered 8.8 MB write (a hand-over of four 2k steps) took 2 ms in
some minutes and 45-160 ms in others, all of it the kernel's copy into new page-cache pages
(``perf``: the time sits in ``copy_folio_from_iter_atomic``), while the same bytes written
directly took 4.5-8 ms and 0.1 ms of CPU, the rest waiting for the disk. Such rows also stay out
of the page cache until a pane reads them. Where the file system refuses ``O_DIRECT``, or
``LMSCOPE_ROW_WRITES=buffered``, every write is buffered.

Where that pays (:func:`writing_behind_pays`: a core free for it, or writes that wait for the
disk), a continue lets its hand-over's writes run behind (:meth:`RowStore.writing_behind`) on one
writer thread while the next steps run; whoever hands the records on waits for
:meth:`RowStore.settle` (or sees :meth:`RowStore.written`) first.
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from lmscope.engine.cores import spare_core
from lmscope.engine.mapped_rows import map_rows
from lmscope.engine.row_writes import direct_writes_wanted

CHUNK_BYTES = 64 * 1024 * 1024
ALIGN = 64
_ZEROS = memoryview(bytes(1024 * 1024))
DIRECT_MIN_BYTES = 256 * 1024
"""Writes this large, into pages not prepared, go straight to the disk (smaller ones cost little
either way, and a direct write waits for the disk however small it is)."""
DIRECT_ALIGN = 4096
"""Direct writes start and end on this boundary of the file and of memory (every block size Linux uses)."""
STAGE_BYTES = 4 * 1024 * 1024
"""The staging buffer of each thread that writes directly: a larger write goes in parts."""


@dataclass(frozen=True)
class Slot:
    """A reserved float32 region of ``shape`` at ``offset`` in one chunk file."""

    chunk: "_Chunk"
    offset: int
    shape: tuple[int, ...]


class RowStore:
    """Append-only float32 storage. ``put`` writes a tensor; ``reserve``/``write`` fill one in parts."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES, direct: bool | None = None):
        self.chunk_bytes = chunk_bytes
        self.direct = direct_writes_wanted() if direct is None else direct
        """Whether large writes into unprepared pages may go straight to the disk (where the file system allows)."""
        self._chunk: _Chunk | None = None
        self._spare: _Chunk | None = None
        """The next chunk, made ahead by :meth:`prepare`."""
        self._used = 0
        self.bytes_written = 0
        self._host_copy = None
        self._behind: list | None = None
        """Inside :meth:`writing_behind`: the writes queued for the writer thread."""
        self._in_flight: list[Future] = []
        """Write-behind jobs not yet settled, in order."""

    @property
    def writes_directly(self) -> bool:
        """Whether large writes now go straight to the disk (False until the first chunk is made)."""
        return self._chunk is not None and self._chunk.direct_fd is not None

    def reserve(self, shape: tuple[int, ...]) -> Slot:
        """Room for a float32 array of ``shape``; fill it with :meth:`write`, read it with :meth:`view`."""
        nbytes = math.prod(shape) * 4  # math.prod: np.prod costs microseconds a call
        if self._chunk is None or self._used + nbytes > self._chunk.nbytes:
            self._chunk, self._used = self._next_chunk(nbytes), 0
        slot = Slot(self._chunk, self._used, tuple(shape))
        self._used += (nbytes + ALIGN - 1) // ALIGN * ALIGN
        return slot

    def prepare(self, nbytes: int) -> None:
        """Write zeros where the next ``nbytes`` of reservations will go, so that the writes
        filling them land in pages the file already has. Call it when nothing waits (after a
        single step, while the person reads it). A 2k step writes 2.2 MiB; on this project's
        machine the first write to a 4 KiB page of memory never used before took 6-11 µs
        (``benchmarks/page_cost.py``), and rewriting pages the file already had about 0.8 µs
        (2.2 MiB in 0.41-0.47 ms, a temporary script).

        What is prepared stays bounded: at most ``nbytes`` past the last reservation, in this
        chunk and the start of the next (made now, taken by the next reservation that does
        not fit here).
        """
        if self._chunk is None or self._used + nbytes > self._chunk.nbytes:
            if self._chunk is not None:
                self._chunk.prepare(self._used, self._chunk.nbytes)
            if self._spare is None or self._spare.nbytes < nbytes:
                self._spare = self._new_chunk(nbytes)
            self._spare.prepare(0, nbytes)
        else:
            self._chunk.prepare(self._used, self._used + nbytes)

    def _next_chunk(self, nbytes: int) -> _Chunk:
        """A chunk for a reservation of ``nbytes`` that does not fit the current one: the one
        :meth:`prepare` made, if it is large enough."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.nbytes >= nbytes:
            return spare
        return self._new_chunk(nbytes)

    def _new_chunk(self, nbytes: int) -> _Chunk:
        return _Chunk(max(self.chunk_bytes, nbytes), self.direct)

    @contextmanager
    def joining(self, host_copy):
        """Inside the block, :meth:`put` returns at once and its rows join ``host_copy``: they are
        written when the step's one device-to-host copy is made (``engine/host_copy.py``). The
        returned arrays map the file, so they show the rows from then on."""
        self._host_copy = host_copy
        try:
            yield host_copy
        finally:
            self._host_copy = None

    @contextmanager
    def writing_behind(self, behind: bool = True):
        """Inside the block (with ``behind``), :meth:`write_array` only queues its write; at
        the block's end every queued write goes to the writer thread as one job. The arrays
        written must not change afterwards (the step's host copies never do). Until the job is
        done the slots read as zeros: :meth:`settle` waits for it.

        At most one job is in flight: the block first waits for the last one, so the arrays
        held for the writer stay bounded (two batches' at most) however slow the writes are."""
        if not behind:
            yield
            return
        self.settle()
        self._behind = []
        try:
            yield
        finally:
            queued, self._behind = self._behind, None
            if queued:
                self._in_flight.append(_writer_thread().submit(_write_all, queued))

    def written(self) -> bool:
        """Whether every write queued behind is done (a failed one included: :meth:`settle` raises it)."""
        return all(job.done() for job in self._in_flight)

    def settle(self) -> None:
        """Wait for every write queued behind; raise the first one's error if it failed."""
        jobs, self._in_flight = self._in_flight, []
        for job in jobs:
            job.result()

    def write(self, slot: Slot, rows: torch.Tensor, index: int | None = None) -> None:
        """Write ``rows`` (any device or float dtype) to the slot, or to ``slot[index]``."""
        self.write_array(slot, rows.detach().to("cpu", torch.float32).contiguous().numpy(), index)

    def write_array(self, slot: Slot, data: np.ndarray, index: int | None = None) -> None:
        """Write float32 ``data`` (on the host) to the slot, or to ``slot[index]`` (queued
        instead inside :meth:`writing_behind`)."""
        self.bytes_written += data.size * 4
        if self._behind is not None:
            self._behind.append((slot, data, index))
        else:
            _write(slot, data, index)

    def view(self, slot: Slot) -> np.ndarray:
        """The slot's contents as a read-only float32 array backed by the mapped file."""
        return np.ndarray(slot.shape, dtype=np.float32, buffer=slot.chunk.mapped, offset=slot.offset)

    def put(self, rows: torch.Tensor) -> np.ndarray:
        """Write ``rows`` and return a read-only array of it (see :meth:`joining`)."""
        slot = self.reserve(tuple(rows.shape))
        if self._host_copy is not None:
            self._host_copy.add(rows.to(torch.float32), lambda data: self.write_array(slot, data))
        else:
            self.write(slot, rows)
        return self.view(slot)


def _write(slot: Slot, data: np.ndarray, index: int | None) -> None:
    part = math.prod(slot.shape[1:]) * 4 if index is not None else 0
    data = np.ascontiguousarray(data, dtype=np.float32)
    slot.chunk.write(memoryview(data).cast("B"), slot.offset + (index or 0) * part)


def _write_all(queued: list[tuple[Slot, np.ndarray, int | None]]) -> None:
    # numpy's copy and pwrite both let go of the GIL: the engine thread runs on meanwhile.
    for slot, data, index in queued:
        _write(slot, data, index)


def writer_has_a_core(device: torch.device) -> bool:
    """Whether writing behind can pay for a model on ``device``: the writer needs a core the
    step leaves free (``cores.spare_core``); where every core runs the forward, the writer
    preempts its threads, and each parallel region waits for the one it stopped. On the 2-core
    machine (``bench_engine.py --only continue``, SmolLM2 at 2k, four runs each), a continue's
    step with its rows written behind took 8.1 and 3.7 ms more and 2.9 and 2.0 ms less than with
    them written in the hand-over when torch ran two threads (a mean of 1.7 ms more), and 4.4
    and 4.2 ms less and 0.3 and 1.9 ms more when it ran one (a mean of 1.6 ms less): the
    machine's noise is as large as the effect there."""
    return spare_core(device)


def writing_behind_pays(store: RowStore, device: torch.device, nbytes: int) -> bool:
    """Whether a hand-over's ``nbytes`` of rows are better written on the writer thread than in
    the hand-over: where the writer has a core of its own (:func:`writer_has_a_core`), or where
    they go straight to the disk (:attr:`RowStore.writes_directly`), which leaves the CPU while
    the disk works (``bench_engine.py --only continue``, SmolLM2 at 2k on the 2-core machine: a
    continue's step took 1.056 and 1.057 of the bare one written behind, 1.072 and 1.072 in the
    hand-over)."""
    if writer_has_a_core(device):
        return True
    return store.writes_directly and nbytes >= DIRECT_MIN_BYTES


_WRITER: ThreadPoolExecutor | None = None
_WRITER_LOCK = threading.Lock()


def _writer_thread() -> ThreadPoolExecutor:
    """The process's one row writer (jobs run in order; it calls no torch, so it starts no
    OpenMP team of its own: ``engine/engine_thread.py``)."""
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmscope-rows")
        return _WRITER


class _Chunk:
    """An unlinked temporary file: written with pwrite, read through a read-only mapping."""

    def __init__(self, nbytes: int, direct: bool = False):
        self.fd, path = tempfile.mkstemp(prefix="lmscope-rows-")
        self.direct_fd = _open_direct(path) if direct else None
        """The file opened again with ``O_DIRECT``, or None (not asked for, or refused here)."""
        os.unlink(path)  # nothing is left behind, whatever way the process ends
        os.ftruncate(self.fd, nbytes)
        self.nbytes = nbytes
        self.mapped = map_rows(self.fd, nbytes)
        self.prepared = 0
        """How far :meth:`prepare` has zeroed the file (it never zeroes below this again)."""

    def prepare(self, start: int, end: int) -> None:
        """Zeros over ``[start, end)``, past what is already prepared (reserved slots lie
        before ``start``: nothing written is overwritten)."""
        for at in range(max(start, self.prepared), end, len(_ZEROS)):
            _pwrite_all(self.fd, _ZEROS[: min(len(_ZEROS), end - at)], at)  # a view: no copy
        self.prepared = max(self.prepared, end)

    def write(self, data: memoryview, offset: int) -> None:
        """Write the bytes ``data`` at ``offset``: through the page cache where :meth:`prepare`
        made the pages, or the write is small or no direct descriptor is open; else the whole
        aligned blocks straight to the disk and any partial block at either end buffered (a
        partial block's other bytes may belong to a neighbouring slot)."""
        end = offset + len(data)
        first, last = -(-offset // DIRECT_ALIGN) * DIRECT_ALIGN, end // DIRECT_ALIGN * DIRECT_ALIGN
        if self.direct_fd is None or end <= self.prepared or last - first < DIRECT_MIN_BYTES:
            _pwrite_all(self.fd, data, offset)
            return
        if first > offset:
            _pwrite_all(self.fd, data[: first - offset], offset)
        stage = _stage()
        for start in range(first, last, STAGE_BYTES):
            size = min(STAGE_BYTES, last - start)
            stage[:size] = data[start - offset : start - offset + size]
            _pwrite_all(self.direct_fd, stage[:size], start)
        if end > last:
            _pwrite_all(self.fd, data[last - offset :], last)

    def __del__(self):
        os.close(self.fd)
        if self.direct_fd is not None:
            os.close(self.direct_fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Every byte of ``data`` at ``offset``: ``pwrite`` may write fewer (a direct write stopped by
    a full disk does); writing nothing at all is an error."""
    while len(data):
        written = os.pwrite(fd, data, offset)
        if written <= 0:
            raise OSError(f"no bytes written to the row store at offset {offset}")
        data, offset = data[written:], offset + written


_STAGES = threading.local()
_ZERO_BLOCK = memoryview(mmap.mmap(-1, DIRECT_ALIGN))
"""One page-aligned block of zeros (an anonymous mapping is zeros and never written here)."""


def _stage() -> memoryview:
    """This thread's page-aligned staging buffer for direct writes (an anonymous mapping; each
    thread that writes has its own, so the writer thread and the engine thread never share one)."""
    stage = getattr(_STAGES, "buffer", None)
    if stage is None:
        stage = _STAGES.buffer = memoryview(mmap.mmap(-1, STAGE_BYTES))
    return stage


def _open_direct(path: str) -> int | None:
    """``path`` opened for writing with ``O_DIRECT``, or None where that is not to be had (no such
    flag on this system, or a file system that refuses it: some accept the flag and fail the
    write, so one block of zeros is written at the start, where nothing else is yet)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None
    try:
        os.pwrite(fd, _ZERO_BLOCK, 0)
    except OSError:
        os.close(fd)
        return None
    return fd
