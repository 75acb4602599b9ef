"""SIGTERM/SIGINT during a continue: the app exits through Textual (terminal restored) with
128 + signal, and the engine stops at the next step boundary (issue 12 item 4)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from lmscope.testing import FakeEngine, engine_factory, make_session
from lmscope.tui.app import make_app
from lmscope.tui.signals import exit_on_signals


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_signal_during_continue_exits_cleanly(signum, code):
    engine = FakeEngine(make_session("llama", steps=400), delay_s=0.01)
    app = make_app(engine_factory(engine), theme="textual-dark")
    before = signal.getsignal(signum)
    with exit_on_signals(app):
        async with app.run_test(size=(100, 30)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.press("c")
            while engine.step_calls < 3:
                await asyncio.sleep(0.01)
            os.kill(os.getpid(), signum)
            for _ in range(300):
                if app.return_code is not None:
                    break
                await asyncio.sleep(0.01)
        assert app.return_code == code
        await asyncio.sleep(0.1)  # the worker thread finishes the step it was in, then stops
        stopped_at = engine.step_calls
        await asyncio.sleep(0.2)
        assert engine.step_calls == stopped_at < 400
    assert signal.getsignal(signum) is before
