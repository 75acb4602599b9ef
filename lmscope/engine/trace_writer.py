"""Writing a trace: a session appended chunk by chunk as it runs (:class:`TraceWriter`), or a
whole one at once (:func:`write_session`). The format: :mod:`lmscope.engine.trace_format`."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import weakref
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lmscope import __version__
from lmscope.engine.checks import check_overwrite
from lmscope.engine.errors import UserError
from lmscope.engine.mapped_rows import read_ahead
from lmscope.engine.records import AttentionRows, PromptRecord, SessionInfo, StepRecord
from lmscope.engine.trace import lens_to_list, prompt_to_dict, step_to_dict
from lmscope.engine.trace_format import CHUNK_HEADER, FILE_HEADER, FORMAT_VERSION, MAGIC, ROW_DTYPES, padded


def check_record_path(path: str | os.PathLike) -> None:
    """Refuse a path a recording must not go to: no name, or one where it would lose something
    lmscope did not write (:func:`~lmscope.engine.checks.check_overwrite`: a folder, a device, a
    link to anything but a trace, a file that is not a trace and not empty). A trace already
    there is replaced, once the new session has begun (:class:`TraceWriter`)."""
    if not str(path).strip():
        raise UserError("--record needs a file name: it was given empty")
    check_overwrite(path, f"cannot record to {str(path)!r}", "an lmscope trace", _is_trace_start, "run.lmscope")


def _is_trace_start(start: bytes) -> bool:
    return start.startswith(MAGIC)


class TraceWriter:
    """Appends a session to ``path`` as it runs; every chunk reaches the OS before the next begins.

    The chunks go to a new file beside ``path`` until the prompt's is written: only then, the
    model loaded and the prompt encoded, does it take ``path``'s place (``os.replace``; a link
    there is replaced, not what it points to). A session that fails before that leaves
    ``path`` as it was, and :meth:`close` removes the new file.

    Args:
        path: the file: new, empty, or an lmscope trace (:func:`check_record_path`).
        rows_dtype: ``float32`` or ``float16`` for the attention rows.
    """

    def __init__(self, path: str | os.PathLike, rows_dtype: str = "float32"):
        if rows_dtype not in ROW_DTYPES:
            raise UserError(f"--record-dtype must be one of {', '.join(ROW_DTYPES)}")
        check_record_path(path)
        self.path, self.rows_dtype = Path(path), np.dtype(rows_dtype).newbyteorder("<")
        self._pending = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        """The new file, until it takes ``path``'s place (then ``_discard`` is no longer alive)."""
        try:
            # os.open's mode: the file gets the permissions the umask gives (mkstemp's are 0600)
            self._file = os.fdopen(os.open(self._pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        except OSError as error:
            raise UserError(f"cannot record to {str(path)!r}: {error.strerror}") from None
        # Whoever never closes the writer (the TUI's, when the model fails to load): the new file
        # goes when the writer does, or when the process exits.
        self._discard = weakref.finalize(self, self._pending.unlink, missing_ok=True)
        self.steps_written = 0
        """STEP chunks written so far: the next one's place, by which a RSUM chunk names it."""
        self._write(FILE_HEADER.pack(MAGIC, FORMAT_VERSION))

    def meta(self, info: SessionInfo, options: dict) -> None:
        """The session: model, settings, when, and the options it ran with."""
        self._chunk(b"META", {"format": FORMAT_VERSION, "lmscope": __version__,
                              "recorded": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "info": asdict(info), "options": options, "rows_dtype": self.rows_dtype.name})

    def prompt(self, record: PromptRecord) -> None:
        self._chunk(b"PRMT", prompt_to_dict(record), {"attention": record.attention})
        if self._discard.alive:  # the session has begun: the recording takes its place
            try:
                os.replace(self._pending, self.path)
            except OSError as error:
                raise UserError(f"cannot record to {str(self.path)!r}: {error.strerror}") from None
            self._discard.detach()

    def step(self, record: StepRecord) -> int:
        """One step, as ``--json`` prints it without attention, its rows beside it. Returns its
        place among the STEP chunks written (0 for the first), which :meth:`resume` takes."""
        self._chunk(b"STEP", step_to_dict(record), {"attention": record.attention,
                                                    "cross_attention": record.cross_attention}, record.step)
        self.steps_written += 1
        return self.steps_written - 1

    def resume(self, step: int, places: list[int]) -> None:
        """A branch resumed at ``step``: the STEP chunks written just before this one re-ran its
        tokens, forced, to rebuild the cache; the steps written at ``places`` (what :meth:`step`
        returned for them) are the live steps again from ``step``."""
        self._chunk(b"RSUM", {"step": step, "steps": places}, step=step)

    def rewind(self, step: int) -> None:
        """The session went back before ``step`` (a rewind, a force there, a branch resumed),
        setting aside the live steps from ``step`` on: written at once, since no step may follow
        (the session ends there, or another rewind goes further back)."""
        self._chunk(b"RWND", {"step": step}, step=step)

    def note(self, step: int, data: dict) -> None:
        """Fields added to the latest record of ``step`` (a breakpoint hit)."""
        self._chunk(b"NOTE", {"step": step, **data}, step=step)

    def lens(self, step: int, lens) -> None:
        """The logit lens (``LayerLens`` per layer) of the latest record of ``step``, as ``--json
        --layers`` prints it."""
        self._chunk(b"LENS", {"step": step, "layers": lens_to_list(lens)}, step=step)

    def close(self) -> None:
        """Close the file; a session that never began leaves nothing behind."""
        self._file.close()
        self._discard()  # the new file, if it never took the path's place (once: then a no-op)

    def _write(self, data: bytes) -> None:
        """``data`` appended and handed to the OS (a full disk or a failing one: one line)."""
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as error:
            raise UserError(f"cannot write the recording {str(self.path)!r}: {error.strerror}") from None
        except ValueError:  # Python's "write to closed file"
            raise UserError(f"the recording {str(self.path)!r} is closed: open a new TraceWriter to record again") \
                from None

    def _chunk(self, kind: bytes, data: dict, rows: dict[str, AttentionRows | None] | None = None,
               step: int = -1) -> None:
        blobs, layout, offset = [], {}, 0
        for name, row in (rows or {}).items():
            if row is None:
                continue
            # read_ahead: a replay's rows (``w``) are read from its trace, which may have been truncated
            array = np.ascontiguousarray(read_ahead(row.probs), dtype=self.rows_dtype)
            layout[name] = {"kind": row.kind, "query_start": row.query_start, "shape": list(array.shape),
                            "offset": offset}
            blob = array.tobytes()
            blobs.append(blob + b"\0" * (padded(len(blob)) - len(blob)))
            offset += padded(len(blob))
        body = json.dumps({"data": data, "rows": layout}, ensure_ascii=False).encode()
        body += b" " * (padded(len(body)) - len(body))  # rows start on an 8-byte boundary
        header = CHUNK_HEADER.pack(kind, len(body), offset, zlib.crc32(body), step)
        self._write(header + body + b"".join(blobs))  # flushed: a killed process loses at most its step


def write_session(path: str | os.PathLike, info: SessionInfo, prompt: PromptRecord, steps,
                  rows_dtype: str = "float32", lenses: dict | None = None, hits: dict | None = None) -> None:
    """A whole session at once, as ``--record`` writes it step by step: meta, prompt, every step
    (and its breakpoint hit and its logit lens, where ``hits`` and ``lenses`` have one by step
    number; a hit as ``breakpoints.hit_note`` keeps it)."""
    writer = TraceWriter(path, rows_dtype)
    lenses, hits = lenses or {}, hits or {}
    try:
        writer.meta(info, {})
        writer.prompt(prompt)
        for record in steps:
            writer.step(record)
            if record.step in hits:
                writer.note(record.step, hits[record.step])
            if record.step in lenses:
                writer.lens(record.step, lenses[record.step])
    finally:
        writer.close()
