"""A load that fails leaves the app with the error as its result and return code 2 (issue 12)."""

from __future__ import annotations

from lmscope.engine.errors import UserError
from lmscope.tui.app import make_app


async def test_failed_load_exits_the_app_with_the_error():
    error = UserError("model folder '/nowhere' does not exist")

    def factory():
        raise error

    app = make_app(factory, theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):  # the app exits on its own; wait_for_complete would see the worker cancelled
            if app.return_code is not None:
                break
            await pilot.pause(0.02)
    assert app.return_code == 2 and app.return_value is error
