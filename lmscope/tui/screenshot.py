"""One screen of a recorded session as an SVG, rendered headless (``lmscope open FILE --svg``)."""

from __future__ import annotations

from pathlib import Path

from lmscope.engine.errors import UserError

TABS = ("attention", "cross", "kv", "variables")


def parse_size(text: str) -> tuple[int, int]:
    """``120x40`` -> (120, 40); at least 40x10."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 40 or int(height) < 10:
        raise UserError(f"--size {text!r}: use COLUMNSxROWS, at least 40x10, e.g. 120x40")
    return int(width), int(height)


def render_svg(engine, out: str, step: int | None = None, tab: str = "attention", size: str = "120x40") -> Path:
    """Open the app on ``engine`` (a replay) without a terminal and save the screen to ``out``.

    Args:
        engine: a ReplayEngine.
        out: the SVG file to write.
        step: the step to select (0-based); None keeps the newest.
        tab: which lower tab to show.
        size: the terminal size, ``COLUMNSxROWS``.
    """
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app

    if tab not in TABS:
        raise UserError(f"--tab must be one of {', '.join(TABS)}")
    steps = len(engine.trace)
    if step is not None and not 0 <= step < steps:
        raise UserError(f"--step {step}: the session has steps 0 to {steps - 1}")
    target = Path(out)
    app = make_app(lambda: engine, theme="textual-dark")

    async def shoot(pilot) -> None:
        await wait_until_idle(pilot)
        if step is not None:
            app.view = app.view.selecting(step)
        if tab != "attention":
            app.action_show_tab(tab)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        app.save_screenshot(filename=target.name, path=str(target.parent.resolve()))
        app.exit()

    app.run(headless=True, size=parse_size(size), auto_pilot=shoot)
    return target
