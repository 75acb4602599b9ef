"""Breakpoint hits of a TUI session that records: written beside their steps, as --headless
writes them, and marked again when the recording is reopened."""

from __future__ import annotations

import json

from test_control_keys import add_breakpoint
from tui_harness import running, settle

from lmscope.engine.breakpoints import note_message, parse


async def test_a_hit_in_a_continue_is_handed_to_the_engine():
    """The continue's worker gives the engine each hit (a recording writes it), with the values
    the breakpoint read and the step, numbered as the app numbers it."""
    async with running(steps=12) as (app, pilot, engine):
        await add_breakpoint(app, pilot, "step == 2")
        await add_breakpoint(app, pilot, "step == 5")
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.marks == {2}
        await pilot.press("c")
        await settle(app, pilot)
        assert app.view.marks == {2, 5}
    assert engine.hits_noted == [
        (2, {"breakpoint": {"expr": "step == 2", "values": {"step": 2}}, "number": 1}),
        (5, {"breakpoint": {"expr": "step == 5", "values": {"step": 5}}, "number": 2}),
    ]


def _record_in_the_app(loaded, path, expr: str) -> tuple[set[int], str]:
    """A TUI session on a real Stepper, recorded to ``path``: ``c`` until a breakpoint holds,
    then ``c`` to the end. Returns the steps the app marked and the hit's status line."""
    import asyncio

    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.engine.trace_writer import TraceWriter
    from lmscope.tui.app import make_app

    settings = GenerationSettings(max_new_tokens=8, min_new_tokens=8)
    engine = RecordingEngine(Stepper(loaded, "the quick brown fox", settings), TraceWriter(path), {})
    app = make_app(lambda: engine, theme="textual-dark", breakpoints=(parse(expr),))

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("c")
            await settle(app, pilot)
            notice = app.view.notice
            await pilot.press("c")
            await settle(app, pilot)
            assert app.view.state == "finished"
            return set(app.view.marks), notice

    try:
        return asyncio.run(drive())
    finally:
        engine.writer.close()


def test_a_recorded_tui_hit_is_in_the_trace_and_marked_in_the_replay(tmp_path, tiny_llama_dir, capsys):
    """The hit a live TUI continue stopped at is in the recording: ``open --json`` prints it on
    its step's line as a live ``--json --break`` run prints it, ``open --headless`` prints its
    line, and the replay TUI marks the step as the live one did."""
    import asyncio

    from lmscope.cli import main
    from lmscope.engine import models
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.tui.app import make_app

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    path = tmp_path / "hit.lmscope"
    marks, notice = _record_in_the_app(loaded, path, "step == 3")
    assert marks == {3} and notice.startswith("breakpoint 1 `step == 3`")

    assert main(["open", str(path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 8
    assert [line.get("breakpoint") for line in lines] == [None] * 3 + [{"expr": "step == 3", "values": {"step": 3}}] + [None] * 4
    assert main(["open", str(path), "--headless"]) == 0
    assert notice in capsys.readouterr().out

    trace = Trace(path)
    note = {"breakpoint": {"expr": "step == 3", "values": {"step": 3}}, "number": 1}
    assert [trace.hit(index) for index in range(len(trace))] == [None] * 3 + [note] + [None] * 4
    assert note_message(note) == notice
    app = make_app(lambda: ReplayEngine(trace), theme="textual-dark")

    async def replay():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            return len(app.view.steps), set(app.view.marks)

    assert asyncio.run(replay()) == (8, {3})


def test_a_hit_waits_for_its_step_in_the_trace(tmp_path, tiny_llama_dir):
    """A continue's steps reach the trace when their rows are complete; a hit noted before that
    is written right after its step (a NOTE belongs to the STEP before it)."""
    from lmscope.engine import models
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import TraceWriter

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    path = tmp_path / "waiting.lmscope"
    engine = RecordingEngine(Stepper(loaded, "hello", GenerationSettings(max_new_tokens=3, min_new_tokens=3)),
                             TraceWriter(path), {})
    engine.start()
    engine.step(rows_later=True)
    record = engine.step(rows_later=True)
    note = {"breakpoint": {"expr": "step == 1", "values": {"step": 1}}, "number": 1}
    engine.note_hit(record.step, note)
    assert not path.exists() or len(Trace(path)) == 0  # nothing of the step is written yet
    engine.complete_waiting()
    engine.writer.close()
    trace = Trace(path)
    assert len(trace) == 2
    assert trace.step_data(1)["breakpoint"] == note["breakpoint"] and "breakpoint" not in trace.step_data(0)


async def test_w_writes_the_hits_of_the_steps_it_writes(tmp_path, monkeypatch):
    """``w`` keeps a breakpoint hit beside its step, as ``--record`` does: ``open --json`` shows
    it on that step's line, and the replay marks the step."""
    from lmscope.engine.trace_reader import Trace

    monkeypatch.chdir(tmp_path)
    async with running(steps=8) as (app, pilot, engine):
        await add_breakpoint(app, pilot, "step == 2")
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
    trace = Trace(next(tmp_path.glob("*.lmscope")))
    assert len(trace) == 3
    assert [trace.hit(index) for index in range(3)] == [
        None, None, {"breakpoint": {"expr": "step == 2", "values": {"step": 2}}, "number": 1}]
    assert trace.step_data(2)["breakpoint"] == {"expr": "step == 2", "values": {"step": 2}}


async def test_w_during_a_replay_keeps_its_recorded_hits(tmp_path, monkeypatch):
    """A replay's ``w`` writes the recorded hits again (the steps it marks)."""
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import write_session
    from lmscope.testing import make_session
    from lmscope.tui.app import make_app

    session = make_session("llama", steps=5)
    note = {"breakpoint": {"expr": "step >= 3", "values": {"step": 3}}, "number": 2}
    write_session(tmp_path / "hit.lmscope", session.info, session.prompt, session.steps, hits={3: note})
    monkeypatch.chdir(tmp_path)
    app = make_app(lambda: ReplayEngine(Trace(tmp_path / "hit.lmscope")), theme="textual-dark")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert app.view.marks == {3}
        await pilot.press("w")
        await settle(app, pilot)
    written = [path for path in tmp_path.glob("*.lmscope") if path.name != "hit.lmscope"]
    trace = Trace(written[0])
    assert [trace.hit(index) for index in range(5)] == [None, None, None, note, None]
