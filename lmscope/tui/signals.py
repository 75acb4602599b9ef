"""SIGTERM and SIGINT while the TUI runs: leave through Textual's own exit, never mid-screen.

Textual draws in raw mode, so Ctrl+C is a key; a signal comes only from ``kill``. Python's
defaults would end the process without restoring the terminal (SIGTERM: alternate screen,
mouse reporting and a hidden cursor left behind) or raise KeyboardInterrupt wherever the main
thread happens to be while the engine worker keeps generating. Instead the handler asks the
running continue to stop at its next step boundary and makes the app exit with 128 + signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

HANDLED = (signal.SIGTERM, signal.SIGINT)


def request_exit(app, signum: int) -> None:
    """Stop the engine at the next step boundary and exit the app with ``128 + signum``."""
    app.pause_requested.set()
    code = 128 + int(signum)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # the signal came before or after the app's loop ran
        loop = None
    if loop is None:
        app.exit(return_code=code)
    else:  # call_soon_threadsafe wakes the loop, the safe way out of a signal handler
        loop.call_soon_threadsafe(lambda: app.exit(return_code=code))


@contextlib.contextmanager
def exit_on_signals(app):
    """While inside, SIGTERM and SIGINT end ``app`` cleanly (its return_code is 143 or 130)."""
    previous = {signum: signal.signal(signum, lambda signum, frame: request_exit(app, signum)) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
