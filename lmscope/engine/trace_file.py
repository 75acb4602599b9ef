"""A trace file opened for reading: every byte read with ``os.pread`` (:class:`TraceFile`), its
whole chunks found in the order a recorder writes them (:func:`scan`, :func:`in_order`), and why
the reading stopped where it did (:func:`damage_at`). The format:
:mod:`lmscope.engine.trace_format`; what a chunk's JSON must hold:
:mod:`lmscope.engine.trace_checks`."""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import stat
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmscope.engine.checks import reason, system_place
from lmscope.engine.mapped_rows import RowMapping, read_values
from lmscope.engine.trace_checks import is_whole
from lmscope.engine.trace_format import CHUNK_HEADER, FILE_HEADER, FORMAT_VERSION, MAGIC, TraceError, padded

_SCAN_AHEAD = 16384
"""Bytes read at once at each chunk while scanning: its header and, as a rule, its JSON part (a
longer JSON part: the rest in a second read)."""


@dataclass(frozen=True)
class Chunk:
    """A whole chunk, as :func:`scan` found it: its kind, its JSON part (where it lies in the
    file), where its rows part starts, its step number (-1 for none), where it ends, and its
    JSON's CRC."""

    kind: bytes
    body: slice
    rows_at: int
    step: int
    end: int
    crc: int


class _TraceMapping(RowMapping):
    """A trace mapped read-only: its arrays' values are read from the file (:meth:`values`)."""

    file: TraceFile

    def values(self, array: np.ndarray, start: int, length: int) -> np.ndarray:
        return read_values(self.file.read, array, start)


class TraceFile:
    """A trace file, open read-only: its size when it opened, its reads, and a mapping of it.

    Every byte lmscope reads from a trace comes with ``os.pread``, which returns what the file
    still holds. A trace truncated while open (``cp`` or ``truncate`` onto its path, a copy
    still being made) is then one TraceError (:attr:`truncated`), where reading a mapped page
    past the file's new end ended the process with SIGBUS, which Python cannot catch; checking
    the size before touching the mapping would still race a truncation between the two (and a
    private mapping faults the same way on a page it has not copied). The mapping only lends
    records their rows as views (:meth:`mapped`: they take no memory until read), whose values
    the panes read through ``mapped_rows.read_ahead``, which reads them here.

    Raises:
        TraceError: missing, empty, not a regular file, or unreadable.
    """

    def __init__(self, path: Path):
        self.path = path
        self.truncated: TraceError | None = None
        try:
            _check_trace_file(path)
            self.fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise TraceError(f"{str(path)!r} does not exist") from None
        except PermissionError:
            raise TraceError(f"{str(path)!r} cannot be read (permission denied)") from None
        except OSError as error:  # a name too long, a link loop, a file where a folder should be
            raise TraceError(f"{str(path)!r} cannot be opened ({reason(error)})") from None
        weakref.finalize(self, os.close, self.fd)  # with the last record whose rows are views of it
        self.size = os.fstat(self.fd).st_size
        if self.size == 0:
            raise TraceError(f"{str(path)!r} is empty: not an lmscope trace")
        if hasattr(os, "posix_fadvise"):  # a few KiB here and there: nothing to read ahead around them
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)

    def mapped(self) -> np.ndarray:
        """The whole file, mapped read-only, as a uint8 array: records' rows are views of it (read
        through :meth:`read`, never through it). The mapping refers to this file, not the other
        way round: the file closes with the last view."""
        try:
            mapping = _TraceMapping(self.fd, self.size, access=mmap.ACCESS_READ)
        except OSError as error:
            raise TraceError(f"{str(self.path)!r} cannot be opened ({reason(error)})") from None
        mapping.file = self
        return np.frombuffer(mapping, dtype=np.uint8)

    def read(self, at: int, size: int) -> bytes:
        """``size`` bytes from byte ``at``, or a TraceError where the file holds fewer now."""
        parts, wanted = [], size
        try:
            while wanted:
                part = os.pread(self.fd, wanted, at + size - wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
        except OSError as error:  # a failing disk, a network file system gone
            raise TraceError(f"{str(self.path)!r} cannot be read at byte {at} ({reason(error)})") from None
        if wanted:
            if self.truncated is None:
                now = os.fstat(self.fd).st_size
                self.truncated = TraceError(
                    f"{str(self.path)!r} was truncated while it was open (it now holds {now} of its {self.size} "
                    "bytes): the rest of the session cannot be read")
            raise TraceError(str(self.truncated))  # a new one: the first keeps its own traceback
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _check_trace_file(path: Path) -> None:
    """Refuse what is not a regular file before opening it: opening a pipe waits for a writer.

    The "regular files" of /proc and /sys are the kernel's: their size reads 0 (or a page)
    whatever they hold, so they are not "empty" and cannot be mapped, and some wait for data
    when read (/proc/kmsg). None is a trace: they are refused by where they are, unread.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise TraceError(f"{str(path)!r} is a folder, not an lmscope trace")
    if not stat.S_ISREG(mode):
        raise TraceError(f"{str(path)!r} is not a regular file (a pipe, a device or a socket), not an lmscope trace")
    place = system_place(path)
    if place:
        raise TraceError(f"{str(path)!r} {place}, where the files are the system's: not an lmscope trace")


def scan(file: TraceFile, texts: dict[int, bytes]):
    """The whole chunks in order; stops quietly at a torn one (a killed recorder's last write).
    Each chunk's JSON part, read to check its CRC, is kept in ``texts`` by where it starts."""
    size, path = file.size, file.path
    if size < FILE_HEADER.size:
        raise TraceError(f"{str(path)!r} is not an lmscope trace (too short)")
    magic, version = FILE_HEADER.unpack(file.read(0, FILE_HEADER.size))
    if magic != MAGIC:
        raise TraceError(f"{str(path)!r} is not an lmscope trace")
    if version > FORMAT_VERSION:
        raise TraceError(f"{str(path)!r} is a trace of format {version}; this lmscope reads format {FORMAT_VERSION} "
                         "and older: upgrade lmscope")
    at = FILE_HEADER.size
    while at + CHUNK_HEADER.size <= size:
        ahead = file.read(at, min(_SCAN_AHEAD, size - at))  # header and JSON in one read, as a rule
        kind, body_len, rows_len, crc, step = CHUNK_HEADER.unpack_from(ahead)
        body = slice(at + CHUNK_HEADER.size, at + CHUNK_HEADER.size + body_len)
        end = body.stop + rows_len
        if end > size:
            return
        text = ahead[CHUNK_HEADER.size:CHUNK_HEADER.size + body_len]
        if len(text) < body_len:
            text += file.read(at + len(ahead), body_len - len(text))
        if zlib.crc32(text) != crc:
            return
        texts[body.start] = text
        yield Chunk(kind, body, body.stop, step, end, crc)
        at = end


_LATER_KIND = re.compile(rb"[A-Z]{4}")
"""A chunk kind as lmscope names them: one this reader does not know comes from a newer lmscope
(which adds kinds without a new format version, as ``LENS`` came) and is skipped."""


def in_order(chunks: list[Chunk]) -> list[Chunk]:
    """The chunks up to the first that a recorder never writes where it is: the META first and
    only there, PRMTs after it, a STEP numbered at most one past the steps before it (a rewind
    numbers it lower), a NOTE or LENS for a step before it, a RSUM at most at the step after
    the last, a RWND at most at the step after the last (and the steps from it on gone); a kind
    of a newer lmscope is skipped (:data:`_LATER_KIND`). The header is outside the CRC, so a
    flipped kind or step number is caught here (a STEP whose kind flipped to capitals shows as
    the gap before the next step's number), and the reading stops at that chunk as at a damaged
    one."""
    steps = prompts = 0
    for index, chunk in enumerate(chunks):
        if chunk.kind == b"META":
            fits = index == 0 and chunk.step == -1
        elif chunk.kind == b"PRMT":
            fits, steps, prompts = index > 0 and chunk.step == -1, 0, prompts + 1
        elif chunk.kind == b"STEP":
            fits = prompts > 0 and 0 <= chunk.step <= steps
            steps = chunk.step + 1
        elif chunk.kind in (b"NOTE", b"LENS"):
            fits = 0 <= chunk.step < steps
        elif chunk.kind == b"RSUM":
            fits = 0 <= chunk.step <= steps
        elif chunk.kind == b"RWND":
            fits, steps = 0 <= chunk.step <= steps, chunk.step
        elif _LATER_KIND.fullmatch(chunk.kind):
            continue  # a kind a newer lmscope writes: skipped
        else:
            fits = False  # a flipped byte
        if not fits:
            return chunks[:index]
    return chunks


def damage_at(file: TraceFile, at: int, itemsize: int = 4) -> str | None:
    """Why the chunk at ``at``, where the reading stopped, was changed, in words ("" where there
    is nothing more to say than that it was); None where it is cut short, as a recorder
    stopped while writing it leaves it (the file ends inside it, its header and JSON as written).

    A whole chunk (the file holds every byte its header says it has) failed its checksum or came
    out of order: "". Where the file ends inside the rows its header says it has, but its JSON is
    whole, the JSON tells: a recorder writes the header, the JSON and the rows it lays out at
    once, so a JSON that fails its checksum, or lays out rows of another length, was changed (a
    header whose rows length is past the end of the file is damaged, not cut). Where the file ends
    inside the JSON, nothing tells a recorder stopped from a JSON length changed: cut short."""
    if at + CHUNK_HEADER.size > file.size:
        return None
    _, body_len, rows_len, crc, _ = CHUNK_HEADER.unpack(file.read(at, CHUNK_HEADER.size))
    rows_at = at + CHUNK_HEADER.size + body_len
    if rows_at + rows_len <= file.size:
        return ""
    if rows_at > file.size:
        return None
    text = file.read(at + CHUNK_HEADER.size, body_len)
    if zlib.crc32(text) != crc:
        return "its JSON, whole, fails its checksum"
    laid_out = _rows_laid_out(text, itemsize)
    if laid_out is None:
        return "its JSON, whole, lays out no rows as lmscope writes them"
    if laid_out != rows_len:
        return f"its header says {rows_len} bytes of rows, past the end of the file, where its JSON lays out {laid_out}"
    return None


def _rows_laid_out(text: bytes, itemsize: int) -> int | None:
    """The length of the rows part that a chunk's JSON lays out (each array padded to 8 bytes,
    as ``trace_writer.TraceWriter._chunk`` writes them), or None where it lays out none that lmscope writes."""
    try:
        rows = json.loads(text)["rows"]
        ends = [spec["offset"] + padded(math.prod(spec["shape"]) * itemsize) for spec in rows.values()]
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return None
    return max(ends, default=0) if all(is_whole(end) for end in ends) else None
