"""One screen of a recorded session as an SVG, rendered headless (``lmscope open FILE --svg``)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from lmscope.engine.checks import check_overwrite, stat_or_none
from lmscope.engine.errors import UserError
from lmscope.streams import print_line

TABS = ("attention", "cross", "kv", "variables", "layers")
"""The lower tabs ``--tab`` names, as keys 1 to 5 bring them to the front. Layers shows the lens
recorded with the step (the pane says so of a step recorded without one)."""

DEFAULT_TAB = "attention"
DEFAULT_SIZE = "120x40"
MIN_SIZE = (40, 10)
MAX_SIZE = (500, 200)
"""A big terminal: a 4K screen full of a small font. Rendering grows with the cell count (a
textual widget per cell row and a span per run), so a larger size would only take long."""


def parse_size(text: str) -> tuple[int, int]:
    """``120x40`` -> (120, 40); at least 40x10, at most 500x200, in ASCII digits (as ``--step``:
    ``isdigit`` also passes ``１２０``, which ``int`` reads as 120, and ``¹²⁰``, which it refuses)."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and text.isascii()):
        raise UserError(f"--size {text!r}: use COLUMNSxROWS, e.g. {DEFAULT_SIZE}")
    (low_w, low_h), (high_w, high_h) = MIN_SIZE, MAX_SIZE
    if not (low_w <= int(width) <= high_w and low_h <= int(height) <= high_h):
        raise UserError(f"--size {text!r}: COLUMNSxROWS from {low_w}x{low_h} to {high_w}x{high_h}, "
                        f"e.g. {DEFAULT_SIZE}")
    return int(width), int(height)


def check_svg_options(out: str, trace_file: str, tab: str = DEFAULT_TAB, size: str = DEFAULT_SIZE) -> Path | None:
    """Refuse a bad ``--svg`` path, ``--tab`` or ``--size`` before the trace is read or the screen rendered.

    The path must be a new file, an empty one or an SVG (re-running a screenshot writes over the
    last one), never another file: notes, a trace, a link to a model's weights
    (:func:`~lmscope.engine.checks.check_overwrite`).

    Returns:
        the SVG file to write; None for ``-``, stdout.
    """
    if not out.strip():
        raise UserError("--svg needs a file name, such as step.svg: it was given empty")
    if out == "-":  # stdout, as for most tools: ``lmscope open F --svg - > step.svg``, or a pipe
        _check_view(tab, size)
        return None
    target = Path(out).expanduser()
    folder = target.parent
    found = stat_or_none(folder, f"--svg {out!r}")
    if found is None or not stat.S_ISDIR(found.st_mode):
        what = "is not a folder" if found else "does not exist"
        raise UserError(f"--svg {out!r}: the folder {str(folder)!r} {what}")
    if _same_file(target, trace_file):
        raise UserError(f"--svg {out!r} is the recording being opened: give the SVG another name")
    check_overwrite(target, f"--svg {out!r}", "an SVG", is_svg_start, "step.svg")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UserError(f"--svg {out!r} cannot be written (permission denied): give another path")
    _check_view(tab, size)
    return target


def _check_view(tab: str, size: str) -> None:
    """Refuse a ``--tab`` or ``--size`` the screen cannot be rendered with."""
    if tab not in TABS:
        raise UserError(f"--tab must be one of {', '.join(TABS)}")
    parse_size(size)


def _check_tab_fits(tab: str, family: str) -> None:
    """Refuse ``--tab cross`` for a session without cross-attention: the app would notify that,
    and the SVG would show the attention tab under the notification, exit code 0."""
    if tab == "cross" and family != "t5":
        *others, last = (name for name in TABS if name != "cross")
        raise UserError(f"--tab cross: cross-attention exists only in encoder-decoder models (T5), and this is a "
                        f"{family} session: choose {', '.join(others)} or {last}")


def is_svg_start(start: bytes) -> bool:
    """Whether a file's first bytes are an SVG's: ``<svg`` (what :func:`render_svg` and ``ctrl+s``
    write), or an XML declaration before one."""
    start = start.lstrip(b"\xef\xbb\xbf \t\r\n")  # a byte order mark, blank lines
    return start.startswith(b"<svg") or (start.startswith(b"<?xml") and b"<svg" in start)


def _same_file(target: Path, trace_file: str) -> bool:
    """Whether ``target`` is the trace itself; a path that cannot be looked at is not (a trace
    that cannot be opened is refused when it is)."""
    try:
        return os.path.samefile(target, trace_file)
    except OSError:
        return False


def render_svg(engine, target: Path | None, step: int | None = None, tab: str = DEFAULT_TAB,
               size: str = DEFAULT_SIZE) -> Path | None:
    """Open the app on ``engine`` (a replay) without a terminal and save the screen to ``target``
    (None: write it to stdout, for ``--svg -``). Returns ``target``.

    Args:
        engine: a ReplayEngine.
        target: the SVG file to write, ``tab`` and ``size`` as :func:`check_svg_options` returned
            and checked them (before the trace was read).
        step: the step to select (0-based); None keeps the newest.
        tab: which lower tab to show.
        size: the terminal size, ``COLUMNSxROWS``.
    """
    from textual.worker import WorkerCancelled

    from lmscope import testing
    from lmscope.tui.app import make_app

    _check_tab_fits(tab, engine.info.family)
    steps = len(engine.trace)
    if step is not None and not steps:
        raise UserError(f"--step {step}: the session has no steps, only its prompt: leave --step out")
    if step is not None and not 0 <= step < steps:
        raise UserError(f"--step {step}: the session has steps 0 to {steps - 1}")
    app = make_app(lambda: engine, theme="textual-dark")
    screen: list[str] = []

    async def shoot(pilot) -> None:
        try:
            await testing.wait_until_idle(pilot)
        except WorkerCancelled:  # the app exited while this waited: a failed load's error is its result
            if isinstance(app.return_value, BaseException):
                return
            raise
        if engine.failure is None:  # else no screen: the step's error is the command's (below)
            if step is not None:
                app.view = app.view.selecting(step)
            if tab != "attention":
                app.action_show_tab(tab)
                await pilot.pause()  # the tab shows, and its pane starts reading what it shows
                await testing.wait_until_idle(pilot)  # the Layers pane reads its lens in a worker
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            screen.append(app.export_screenshot())
        app.exit()

    result = app.run(headless=True, size=parse_size(size), auto_pilot=shoot)
    if isinstance(result, BaseException):  # the replay failed to load: the app gave its error back
        raise result
    if engine.failure is not None:
        # A recorded step did not read. The app stays open on the steps before it, for a person to
        # browse; a picture of them would hide the error, which --json and --headless end with too.
        raise engine.failure
    if not screen:
        raise RuntimeError("the app ended before the screen was rendered")
    if target is None:
        print_line(screen[0].rstrip("\n"), sys.stdout)
        return None
    try:
        target.write_text(screen[0], encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot write --svg {str(target)!r} ({error.strerror or type(error).__name__})") from None
    return target
