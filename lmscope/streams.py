"""What the standard streams can take: read by the CLI at start and by the ``--json`` printer,
with nothing heavy imported (``lmscope open`` must start fast); lmscope's own lines on stderr,
and no one else's progress bars there."""

from __future__ import annotations

import os
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


def quiet_progress_bars() -> None:
    """Turn tqdm's progress bars off in this process, unless ``TQDM_DISABLE`` is set already.

    The first run's lines are lmscope's stages (``lmscope.engine.defaults``). transformers' GGUF
    converter draws its own tqdm bar, which transformers' ``disable_progress_bar`` does not
    reach, and tqdm reads ``TQDM_DISABLE`` once, when it is first imported (``import torch``
    imports it): so a command calls this first, before torch. Called later it does nothing.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
