"""The trace file's format: one append-only file that a later ``lmscope open`` reads lazily, anywhere.

Layout: a 16-byte header (``LMSCOPE-TRACE`` magic, then the format version as a little-endian
``uint16`` and a reserved byte), then chunks. Each chunk is a 24-byte header (``kind``: 4 ASCII
bytes; the JSON part's length; the rows part's length; the JSON part's CRC-32; the step number,
-1 for none, so opening a file reads no JSON to index it), the JSON part,
and the rows part: the attention rows of a record as raw little-endian arrays, each starting on
an 8-byte boundary. Kinds: ``META`` (version, date, session info and options), ``PRMT`` (the
prompt; a restart writes it again, and the session shown begins at the last one), ``STEP`` (one
step exactly as ``--json`` prints it, rows apart), ``NOTE`` (a breakpoint hit added to a step),
``LENS`` (the logit lens of a step, its ``"layers"`` exactly as ``--json --layers`` prints them;
written only where the lens was computed: ``--json --layers``, or a step the TUI stepped into
while recording), ``RSUM`` (a branch resumed: ``{"step": S, "steps": [P,
...]}`` says that the STEP chunks written at places ``P`` (0 for the first STEP chunk of the file)
are the live steps again from step ``S``; the STEP chunks just before it are the same tokens
re-run, forced, to rebuild the cache), ``RWND`` (a rewind: ``{"step": S}`` sets the live steps
from step ``S`` on aside, whether or not a step follows; the one right before a resume's re-run
is the resume's own, and sets no branch aside).

Before ``RWND``, a rewind wrote nothing: the next STEP's number, lower than the one before, said
where it went back to (a reader still reads a file without RWND so), and a rewind no step
followed was lost. A reader skips a kind it does not know, and lmscope's readers always have
(format 1): the ``LENS``, ``RSUM`` and ``RWND`` kinds came without a new format version, so an
older lmscope opens a file that has them and shows everything but the lens, a rewind by the next
step's number alone, and a resumed branch's steps as the forced
re-run that rebuilt its cache.

Why this and not SQLite or numpy files: a 500-step session of SmolLM2 at 2k context holds about
a gigabyte of attention rows, and ``open`` must show its first frame in a second within 300 MB.
Rows here are mapped read-only straight from the file and read where a pane shows them (only
those bytes), which SQLite's blobs cannot be; and appending a chunk, then flushing it to the
operating system before the next step, leaves a file that a killed process cannot corrupt: a
reader stops at the first chunk that is cut short or whose CRC is wrong, and says so
(``Trace.tail_notice``). Every byte is read with ``os.pread``, never through the mapping, which
only lends records their rows as views (see :class:`~lmscope.engine.trace_file.TraceFile`).
Nothing here imports torch.
"""

from __future__ import annotations

import struct

from lmscope.engine.errors import UserError

MAGIC = b"LMSCOPE-TRACE"
FORMAT_VERSION = 1
FILE_HEADER = struct.Struct("<13sHx")
CHUNK_HEADER = struct.Struct("<4sIQIi")
ROW_DTYPES = ("float32", "float16")
ROW_KINDS = ("attention", "cross_attention")


class TraceError(UserError):
    """A file that cannot be opened as a trace; the message is one line for the user."""


def padded(size: int) -> int:
    """``size`` rounded up to a multiple of 8: each array of rows, and the rows part, starts on an
    8-byte boundary."""
    return (size + 7) // 8 * 8
