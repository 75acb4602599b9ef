"""The real app on a FakeEngine at 120x40, for the TUI tests: no sleeps, wait for workers.

Imported by the test modules as ``tui_harness`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from lmscope.testing import FakeEngine, engine_factory, make_session
from lmscope.tui.app import make_app


async def settle(app, pilot) -> None:
    """Wait for engine workers, then for their messages to be handled and the screen refreshed."""
    await app.workers.wait_for_complete()
    await pilot.pause()


@asynccontextmanager
async def running(family: str = "llama", *, steps: int = 6, size=(120, 40), load_gate=None, **engine_kwargs):
    """Start the app on a FakeEngine; yields ``(app, pilot, engine)`` once the prompt is encoded."""
    engine = FakeEngine(make_session(family, steps=steps), **engine_kwargs)
    app = make_app(engine_factory(engine, load_gate=load_gate), theme="textual-dark")
    async with app.run_test(size=size) as pilot:
        if load_gate is None:
            await settle(app, pilot)
        yield app, pilot, engine
        app.pause_requested.set()
