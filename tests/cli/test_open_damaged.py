"""``lmscope open FILE`` on a real recording whose 3rd step does not read (its JSON changed with
its CRC recomputed, as a buggy or hostile writer leaves it): the two steps before it are shown,
and the step's error said."""

from __future__ import annotations

import pytest

from lmscope.cli import main
from trace_chunks import with_step_changed


@pytest.fixture
def no_stages(t5_recording, tmp_path):
    """The recording with a 3rd step that has no stages (every pane and the table show some)."""
    return with_step_changed(t5_recording, tmp_path / "t5.lmscope", 2, stages=[])


def test_the_tui_stays_open_on_the_steps_before_it_and_quits_with_0(no_stages, capsys, monkeypatch, terminal):
    """The app shows the error and keeps the two steps; ``q`` ends it with exit code 0, as after
    a live step that failed. Before: the app ended at once, one error line, exit 2."""
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import LmscopeApp

    seen = {}

    async def browse(pilot):
        app = pilot.app
        await wait_until_idle(pilot)
        seen.update(running=app.return_code is None, steps=len(app.view.steps), state=app.view.state,
                    errors=[n.message for n in app._notifications if n.severity == "error"])
        await pilot.press("q")

    run = LmscopeApp.run
    monkeypatch.setattr(LmscopeApp, "run",
                        lambda self, **kwargs: run(self, headless=True, size=(120, 40), auto_pilot=browse))
    assert main(["open", str(no_stages)]) == 0
    assert capsys.readouterr().err == ""
    assert seen["running"] and seen["steps"] == 2 and seen["state"] == "error"
    assert len(seen["errors"]) == 1 and "step 2's chunk" in seen["errors"][0]
