"""Attention rows kept in temporary files and mapped read-only, instead of on the Python heap.

A 30-layer, 9-head model at 2k context produces 2.2 MB of float32 attention rows per step;
a 500-step history would hold over a gigabyte, and a prefill's rows for all layers more
than the prefill itself. Rows are written once, with ``pwrite``, and read only when a pane
shows them, so they live in unlinked temporary files mapped read-only: the process's memory
holds them only while a pane reads them, and the operating system's page cache does the rest.
Records still hold ordinary (read-only) numpy arrays.
"""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

CHUNK_BYTES = 64 * 1024 * 1024
ALIGN = 64


@dataclass(frozen=True)
class Slot:
    """A reserved float32 region of ``shape`` at ``offset`` in one chunk file."""

    chunk: "_Chunk"
    offset: int
    shape: tuple[int, ...]


class RowStore:
    """Append-only float32 storage. ``put`` writes a tensor; ``reserve``/``write`` fill one in parts."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes
        self._chunk: _Chunk | None = None
        self._used = 0
        self.bytes_written = 0
        self._host_copy = None

    def reserve(self, shape: tuple[int, ...]) -> Slot:
        """Room for a float32 array of ``shape``; fill it with :meth:`write`, read it with :meth:`view`."""
        nbytes = math.prod(shape) * 4  # math.prod: np.prod costs microseconds a call
        if self._chunk is None or self._used + nbytes > self._chunk.nbytes:
            self._chunk, self._used = _Chunk(max(self.chunk_bytes, nbytes)), 0
        slot = Slot(self._chunk, self._used, tuple(shape))
        self._used += (nbytes + ALIGN - 1) // ALIGN * ALIGN
        return slot

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

    def write(self, slot: Slot, rows: torch.Tensor, index: int | None = None) -> None:
        """Write ``rows`` (any device or float dtype) to the slot, or to ``slot[index]``."""
        self.write_array(slot, rows.detach().to("cpu", torch.float32).contiguous().numpy(), index)

    def write_array(self, slot: Slot, data: np.ndarray, index: int | None = None) -> None:
        """Write float32 ``data`` (on the host) to the slot, or to ``slot[index]``."""
        part = math.prod(slot.shape[1:]) * 4 if index is not None else 0
        data = np.ascontiguousarray(data, dtype=np.float32)
        os.pwrite(slot.chunk.fd, memoryview(data).cast("B"), slot.offset + (index or 0) * part)
        self.bytes_written += data.nbytes

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


class _Chunk:
    """An unlinked temporary file: written with pwrite, read through a read-only mapping."""

    def __init__(self, nbytes: int):
        self.fd, path = tempfile.mkstemp(prefix="lmscope-rows-")
        os.unlink(path)  # nothing is left behind, whatever way the process ends
        os.ftruncate(self.fd, nbytes)
        self.nbytes = nbytes
        self.mapped = np.memmap(os.fdopen(os.dup(self.fd), "rb"), dtype=np.uint8, mode="r", shape=(nbytes,))

    def __del__(self):
        os.close(self.fd)
