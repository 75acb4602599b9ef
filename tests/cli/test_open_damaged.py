"""``lmscope open FILE`` on a real recording whose 3rd step does not read (its JSON changed with
its CRC recomputed, as a buggy or hostile writer leaves it): every output shows the two steps
before it and says why in the same words."""

from __future__ import annotations

import pytest

from lmscope.cli import main
from trace_chunks import with_step_changed


@pytest.fixture
def no_stages(t5_recording, tmp_path):
    """The recording with a 3rd step that has no stages (every pane and the table show some)."""
    return with_step_changed(t5_recording, tmp_path / "t5.lmscope", 2, stages=[])


def error_line(capsys) -> tuple[str, str]:
    """``(stdout, the one line on stderr)``."""
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("lmscope: error: ") and "Traceback" not in err, err
    return out, err.strip()


def test_json_headless_and_svg_end_with_the_same_error_after_the_steps_before_it(no_stages, tmp_path, capsys):
    """Before: ``--json`` checked a step's keys only and printed the step with no stages (and
    the steps after it), exit 0, where ``--headless`` and the TUI refused it."""
    assert main(["open", str(no_stages), "--json"]) == 2
    out, json_error = error_line(capsys)
    assert [line[:12] for line in out.splitlines()] == ['{"step": 0, ', '{"step": 1, ']
    assert "is damaged: step 2's chunk" in json_error and "stages is []" in json_error
    assert main(["open", str(no_stages), "--json", "--attention"]) == 2
    assert len(error_line(capsys)[0].splitlines()) == 2
    assert main(["open", str(no_stages), "--headless"]) == 2
    out, headless_error = error_line(capsys)
    assert [line.split()[0] for line in out.splitlines()[-2:]] == ["0", "1"]
    assert main(["open", str(no_stages), "--svg", str(tmp_path / "s.svg")]) == 2
    out, svg_error = error_line(capsys)
    assert out == "" and not (tmp_path / "s.svg").exists()
    assert json_error == headless_error == svg_error


def test_the_tui_stays_open_on_the_steps_before_it_and_quits_with_2(no_stages, capsys, monkeypatch, terminal):
    """The app shows the error and keeps the two steps; ``q`` ends it as ``--json`` and
    ``--headless`` end: their error line (once) and exit code 2, as after a live step that failed.
    Before: the app ended at once, one error line, exit 2; then ``q`` ended it with exit code 0
    and nothing on stderr."""
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
    assert main(["open", str(no_stages)]) == 2
    tui_error = error_line(capsys)[1]
    assert main(["open", str(no_stages), "--json"]) == 2
    assert tui_error == error_line(capsys)[1]
    assert seen["running"] and seen["steps"] == 2 and seen["state"] == "error"
    assert len(seen["errors"]) == 1 and "step 2's chunk" in seen["errors"][0]
