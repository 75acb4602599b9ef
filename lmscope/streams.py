"""What the standard streams can take: read by the CLI at start and by the ``--json`` printer,
with nothing heavy imported (``lmscope open`` must start fast); and lmscope's own lines on stderr."""

from __future__ import annotations

import sys


def takes_utf8(stream) -> bool:
    """Whether ``stream`` encodes UTF-8 (one without an encoding, a test's StringIO, takes any
    text). Not under ``PYTHONIOENCODING=latin-1`` or a C locale with Python's UTF-8 mode off."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def terminal_safe(line: str) -> str:
    """``line`` with each character that is not printable (ESC and the other C0 and C1 controls,
    DEL, a lone surrogate, a bidi override, a space other than " ") written as ``repr`` writes
    it, ``\\x1b``.

    A user's text reaches error lines quoted by lmscope (``{name!r}``, already escaped this way)
    and by libraries (huggingface_hub quotes a repo id as it is): a raw ESC there would make the
    terminal change colour or worse. Backslashes are left alone, so what ``repr`` escaped stays
    as it was, escaped once.
    """
    if line.isprintable():
        return line
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in line)


def say(line: str) -> None:
    """Print one of lmscope's own lines (an error, a warning, a stage of the first run) on
    stderr, safe for a terminal (:func:`terminal_safe`), at once."""
    print(terminal_safe(line), file=sys.stderr, flush=True)
