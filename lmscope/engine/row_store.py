"""Attention rows kept in memory-mapped temporary files instead of the Python heap.

A 30-layer, 9-head model at 2k context produces 2.2 MB of float32 attention rows per step;
a 500-step history would hold over a gigabyte. The rows are written once and read only
when a pane shows them, so they live in unlinked temporary files mapped into memory: the
operating system pages them in on demand and can drop them under pressure, and the history
itself retains only small records. Records still hold ordinary read-only numpy arrays.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

CHUNK_BYTES = 64 * 1024 * 1024


class RowStore:
    """Append-only float32 storage; each :meth:`put` returns a read-only view of what it wrote."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes
        self._chunk: np.ndarray | None = None
        self._used = 0
        self.bytes_written = 0

    def put(self, rows: torch.Tensor) -> np.ndarray:
        """Copy ``rows`` (any device, any float dtype) into the store as float32.

        Returns:
            A read-only float32 array of ``rows.shape`` backed by the mapped file.
        """
        nbytes = rows.numel() * 4
        if self._chunk is None or self._used + nbytes > self._chunk.nbytes:
            self._chunk, self._used = _mapped_chunk(max(self.chunk_bytes, nbytes)), 0
        view = np.ndarray(tuple(rows.shape), dtype=np.float32, buffer=self._chunk, offset=self._used)
        torch.from_numpy(view).copy_(rows.detach())
        view.flags.writeable = False
        self._used += (nbytes + 63) // 64 * 64  # keep every view 64-byte aligned
        self.bytes_written += nbytes
        return view


def _mapped_chunk(nbytes: int) -> np.ndarray:
    """A writable byte array mapped onto a new temporary file that is already unlinked."""
    handle, path = tempfile.mkstemp(prefix="lmscope-rows-")
    try:
        os.ftruncate(handle, nbytes)
        chunk = np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,))
    finally:
        os.close(handle)
        os.unlink(path)  # the mapping keeps the data; nothing is left behind on exit
    return chunk
