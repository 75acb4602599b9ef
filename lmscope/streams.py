"""What the standard streams can take: read by the CLI at start and by the ``--json`` printer,
with nothing heavy imported (``lmscope open`` must start fast); lmscope's own lines on stderr,
and no one else's progress bars there."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager


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


class Terminated(BaseException):
    """SIGTERM outside the TUI (whose own handler stops it at a step boundary). Not an Exception:
    nothing on the way out may take it for an error of its own."""


_printing = False
"""True while :func:`print_line` writes: a SIGTERM or SIGINT then waits for the line's end."""
_after_line: type[BaseException] | None = None
"""What to raise once the line being printed is whole."""

_RAISED = {signal.SIGTERM: Terminated, signal.SIGINT: KeyboardInterrupt}


def print_line(text: str, out) -> None:
    """Print one output line (a ``--json`` step, a table row) whole: a SIGTERM or a Ctrl+C that
    comes while it is being written ends the run after it, not inside it."""
    global _printing
    _printing = True
    try:
        _write_line(text, out)
    finally:
        _printing = False
    if _after_line is not None:
        raise _after_line


def _write_line(text: str, out) -> None:
    """``text`` and a newline, written to ``out``'s file descriptor until every byte is out.

    Not ``print``: Python's buffered writer can return with a line cut short when a signal whose
    handler returns comes during a write that only part of the line fit in (a lagging reader's
    full pipe, a line over the pipe's atomic 4 kB): a temporary script writing 4.3 kB lines cut
    one in 40 SIGTERMs that way, buffered or not, and none of 40 with this loop. A stream without
    a descriptor (a test's capture) gets ``print``.
    """
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        print(text, file=out, flush=True)
        return
    out.flush()  # what was printed before goes first
    view = memoryview(f"{text}\n".encode(out.encoding or "utf-8", out.errors or "strict"))
    while view:
        view = view[os.write(fd, view):]


@contextmanager
def signals_as_exceptions():
    """While inside, SIGTERM raises :class:`Terminated` and SIGINT KeyboardInterrupt in the main
    thread, so a run ends through the CLI's way out (exit 143 or 130) with its output whole.

    With SIGTERM's default action the process died by the signal, and a ``--json`` line longer
    than the pipe's atomic write could be cut short where a lagging reader left room for part of
    it; an exception raised inside that write would drop the rest of it too, so a line being
    printed (:func:`print_line`) is finished first. The first signal puts the default action
    back: a second one still ends a process whose write waits for a reader that never reads.
    """
    global _after_line
    _after_line = None

    def handler(signum, frame):
        global _after_line
        signal.signal(signum, signal.SIG_DFL)
        if _printing:
            _after_line = _RAISED[signum]
            return
        raise _RAISED[signum]

    try:
        previous = {signum: signal.signal(signum, handler) for signum in _RAISED}
    except ValueError:  # not the main thread (a test calling main() from a worker): keep the defaults
        yield
        return
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
