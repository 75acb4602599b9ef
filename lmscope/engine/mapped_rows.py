"""Read-only mappings whose arrays records hold, and the one way to read their values (no torch
here: the TUI's drawing calls :func:`read_ahead`)."""

from __future__ import annotations

import mmap

import numpy as np

byte_bounds = getattr(np, "byte_bounds", None) or np.lib.array_utils.byte_bounds  # numpy 1 or 2
"""``(first byte, one past the last byte)`` of an array's memory, strides of either sign included."""


class RowMapping(mmap.mmap):
    """A row store chunk mapped read-only (a type of its own, so that :func:`read_ahead` knows
    the mappings whose arrays it may advise on)."""

    def values(self, array: np.ndarray, start: int, length: int) -> np.ndarray:
        """``array``, a view of bytes ``start`` to ``start + length`` of this mapping, ready to
        read: the kernel is asked to read their pages now (where it can be asked)."""
        if hasattr(mmap, "MADV_WILLNEED"):
            aligned = start // mmap.PAGESIZE * mmap.PAGESIZE
            self.madvise(mmap.MADV_WILLNEED, aligned, start + length - aligned)
        return array


def map_rows(fd: int, nbytes: int) -> np.ndarray:
    """The first ``nbytes`` of the file ``fd``, mapped read-only, as a uint8 array starting at the
    mapping's first byte (views of it are what records hold)."""
    return np.frombuffer(RowMapping(fd, nbytes, access=mmap.ACCESS_READ), dtype=np.uint8)


def read_ahead(array: np.ndarray) -> np.ndarray:
    """``array``'s values, ready to read: what the TUI draws goes through here.

    Rows written straight to the disk (``row_store``) are in no page cache: read through the
    mapping, their pages fault in one at a time, and one layer's 9 rows of a 2k step took 4.5-5.0
    ms on this project's machine, against 0.16-0.18 ms after asking the kernel to read them
    ahead (a temporary script, medians of 15). Where the pages are in memory already the hint
    costs about 2 µs. A recorded trace's rows come back as a copy read from the file (its
    mapping's :meth:`~RowMapping.values`: a file truncated while open is an error there, where
    touching the mapping would end the process). Arrays that are views of no such mapping are
    returned as they are.
    """
    start_of_mapping, mapping = array, None
    while isinstance(start_of_mapping, np.ndarray):
        mapping = _mapping_under(start_of_mapping.base)
        if mapping is not None:
            break
        start_of_mapping = start_of_mapping.base
    if mapping is None or array.size == 0:
        return array
    low, high = byte_bounds(array)
    first = byte_bounds(start_of_mapping)[0]
    return mapping.values(array, low - first, high - low)


def read_values(read, array: np.ndarray, start: int) -> np.ndarray:
    """A copy of ``array``'s values, read with ``read(offset, size) -> bytes`` from a file where
    the array's lowest byte is at ``start``: one read where its bytes lie together (a step's
    rows of every head), one a run of its last axis where they are spread (a prompt query's
    row of every head lies a head's queries apart: the span between would be read for nothing)."""
    low, high = byte_bounds(array)
    element_0 = start + array.__array_interface__["data"][0] - low
    if not (array.ndim > 1 and array.strides[-1] == array.dtype.itemsize and high - low > 2 * array.nbytes):
        data = read(start, high - low)  # the span, the array rebuilt on it with its own strides
        values = np.ndarray(array.shape, array.dtype, data, element_0 - start, array.strides)
        return values if values.nbytes == len(data) else values.copy()  # not the bytes between kept
    out = np.empty(array.shape, array.dtype)
    run = array.shape[-1] * array.dtype.itemsize
    for index in np.ndindex(array.shape[:-1]):
        at = element_0 + sum(i * stride for i, stride in zip(index, array.strides))
        out[index] = np.frombuffer(read(at, run), array.dtype)
    return out


def _mapping_under(base) -> RowMapping | None:
    """The row store mapping an array's ``base`` is (numpy keeps a memoryview of a buffer it was
    made from), or None."""
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, RowMapping) else None
