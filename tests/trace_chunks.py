"""Damaging a trace the way a buggy or hostile writer would: a chunk's JSON changed with its CRC
recomputed, or a header field changed outside the CRC. Shared by the reader's fuzz tests and the
tests of what ``lmscope open`` (TUI, ``--json``, ``--headless``, ``--svg``) does with such a file.

Imported as ``trace_chunks`` (the tests' conftest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from lmscope.engine.trace_format import CHUNK_HEADER, FILE_HEADER


def chunks(data: bytes) -> list[dict]:
    """Every chunk of a whole trace: where it starts, its header fields, its JSON."""
    found, at = [], FILE_HEADER.size
    while at < len(data):
        kind, body_len, rows_len, crc, step = CHUNK_HEADER.unpack_from(data, at)
        body = at + CHUNK_HEADER.size
        found.append({"at": at, "kind": kind, "rows_len": rows_len, "step": step,
                      "json": json.loads(data[body:body + body_len]), "rows": data[body + body_len:body + body_len + rows_len],
                      "end": body + body_len + rows_len})
        at = found[-1]["end"]
    return found


def rebuilt(data: bytes, index: int, body=None, **header) -> bytes:
    """``data`` with chunk ``index``'s JSON replaced by ``body`` (its CRC recomputed, as a writer
    computes it) and any header field (``kind``, ``rows_len``, ``step``) set as given."""
    chunk = chunks(data)[index]
    text = json.dumps(chunk["json"] if body is None else body).encode() if not isinstance(body, bytes) else body
    text += b" " * (-len(text) % 8)
    fields = {"kind": chunk["kind"], "rows_len": chunk["rows_len"], "step": chunk["step"], **header}
    head = CHUNK_HEADER.pack(fields["kind"], len(text), fields["rows_len"], zlib.crc32(text), fields["step"])
    return data[:chunk["at"]] + head + text + chunk["rows"] + data[chunk["end"]:]


def with_step_changed(source: Path, target: Path, step: int, **fields) -> Path:
    """``target``: a copy of the trace ``source`` whose ``step``-th STEP chunk has ``fields`` in
    its JSON (``stages=[]``: a step with no stages), its CRC recomputed, so the file opens whole
    and the reader refuses that step only when it reads it."""
    data = source.read_bytes()
    index = [i for i, chunk in enumerate(chunks(data)) if chunk["kind"] == b"STEP"][step]
    body = chunks(data)[index]["json"]
    body["data"].update(fields)
    target.write_bytes(rebuilt(data, index, body))
    return target
