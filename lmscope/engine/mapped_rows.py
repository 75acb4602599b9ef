"""The row store's read-only mappings, and a hint to read their pages ahead (no torch here: the
TUI's drawing calls :func:`read_ahead`)."""

from __future__ import annotations

import mmap

import numpy as np

byte_bounds = getattr(np, "byte_bounds", None) or np.lib.array_utils.byte_bounds  # numpy 1 or 2
"""``(first byte, one past the last byte)`` of an array's memory, strides of either sign included."""


class RowMapping(mmap.mmap):
    """A row store chunk mapped read-only (a type of its own, so that :func:`read_ahead` knows
    the mappings whose arrays it may advise on)."""


def map_rows(fd: int, nbytes: int) -> np.ndarray:
    """The first ``nbytes`` of the file ``fd``, mapped read-only, as a uint8 array starting at the
    mapping's first byte (views of it are what records hold)."""
    return np.frombuffer(RowMapping(fd, nbytes, access=mmap.ACCESS_READ), dtype=np.uint8)


def read_ahead(array: np.ndarray) -> np.ndarray:
    """Ask the kernel to start reading the file pages under ``array`` now, and return it.

    Rows written straight to the disk (``row_store``) are in no page cache: read through the
    mapping, their pages fault in one at a time, and one layer's 9 rows of a 2k step took 4.5-5.0
    ms on this project's machine, against 0.16-0.18 ms after this hint (a temporary script,
    medians of 15). Where the pages are in memory already the hint costs about 2 µs. Arrays that
    are not views of a row store mapping are returned as they are.
    """
    start_of_mapping, mapping = array, None
    while isinstance(start_of_mapping, np.ndarray):
        mapping = _mapping_under(start_of_mapping.base)
        if mapping is not None:
            break
        start_of_mapping = start_of_mapping.base
    if mapping is None or array.size == 0 or not hasattr(mmap, "MADV_WILLNEED"):
        return array
    low, high = byte_bounds(array)
    first = byte_bounds(start_of_mapping)[0]
    start = (low - first) // mmap.PAGESIZE * mmap.PAGESIZE
    mapping.madvise(mmap.MADV_WILLNEED, start, high - first - start)
    return array


def _mapping_under(base) -> RowMapping | None:
    """The row store mapping an array's ``base`` is (numpy keeps a memoryview of a buffer it was
    made from), or None."""
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, RowMapping) else None
