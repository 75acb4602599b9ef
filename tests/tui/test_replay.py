"""A recorded session in the TUI: every browsing key works, the stepping keys are greyed."""

from __future__ import annotations

from lmscope import testing
from lmscope.engine.recording import ReplayEngine
from lmscope.engine.trace_reader import Trace
from lmscope.testing import make_session, screen_text
from lmscope.tui.app import make_app
from tui_harness import settle


def write_trace(path, family="llama", steps=8):
    return testing.write_trace(path, make_session(family, steps=steps))


def replay_app(path):
    engine = ReplayEngine(Trace(path))
    return make_app(lambda: engine, theme="textual-dark"), engine


async def test_replay_shows_every_step_and_greys_stepping(tmp_path):
    session = write_trace(tmp_path / "s.lmscope")
    app, engine = replay_app(tmp_path / "s.lmscope")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert len(app.view.steps) == len(session.steps) and app.view.state == "finished"
        for action in ("step", "continue", "restart", "rewind", "force_text"):
            assert app.check_action(action, ()) is None
        assert screen_text(app).splitlines()[0].count("replay of s.lmscope, recorded ") == 1
        await pilot.press("home", "right", "right", "right_square_bracket", "h", "3", "4", "i")
        await pilot.pause()
        assert app.view.index == 1 and app.view.layer == 1 and app.view.head is None
        await pilot.press("n", "c", "u")
        await settle(app, pilot)
        assert len(app.view.steps) == len(session.steps) and app.view.index == 1


async def test_w_writes_the_session_so_far(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from tui_harness import running

    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        written = list(tmp_path.glob("*.lmscope"))
        assert len(written) == 1 and len(Trace(written[0])) == 3
        name = repr(written[0].name)  # quoted, as the command line quotes paths
        assert any(f"to {name} (lmscope open {name})" in n.message for n in app._notifications)


async def test_a_second_w_in_the_same_second_keeps_the_first_file(tmp_path, monkeypatch):
    """The name has the time to the second: `w`, a rewind and `w` again within it wrote the
    shorter session over the first file, which was lost."""
    import datetime

    class Frozen(datetime.datetime):  # every `w` in the same second, however slow the machine
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 10, 4, 5)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datetime, "datetime", Frozen)
    from tui_harness import running

    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n", "n")
        await settle(app, pilot)
        (tmp_path / "notes.lmscope").write_text("")  # nothing else in the folder is touched either
        await pilot.press("w")
        await settle(app, pilot)
        await pilot.press("left", "u")
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        written = sorted((p for p in tmp_path.glob("*.lmscope") if p.name != "notes.lmscope"),
                         key=lambda p: p.stat().st_mtime_ns)
        assert [len(Trace(p)) for p in written] == [3, 1, 1], [p.name for p in written]
        assert (tmp_path / "notes.lmscope").read_text() == ""


async def test_w_during_a_recording_quotes_its_path():
    """``w`` while ``--record`` writes: the notification names the file as the command line does,
    its trailing space seen. Before: ``recorded to my run .lmscope  as it runs``."""
    from lmscope.testing import FakeEngine, engine_factory

    app = make_app(engine_factory(FakeEngine(make_session(steps=2))), theme="textual-dark",
                   record_path="my run.lmscope ")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("w")
        await pilot.pause()
        assert [n.message for n in app._notifications] == [
            "the session is being recorded to 'my run.lmscope ' as it runs"]


async def test_w_writes_the_lens_of_the_steps_stepped_into(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lmscope.engine.trace import lens_to_list
    from tui_harness import running

    async with running(steps=6) as (app, pilot, engine):
        await pilot.press("n", "n", "n", "left", "s")  # step into step 2 (index 1)
        await settle(app, pilot)
        await pilot.pause()
        await settle(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        trace = Trace(next(tmp_path.glob("*.lmscope")))
        assert [trace.has_lens(i) for i in range(3)] == [False, True, False]
        assert trace.lens_data(1) == lens_to_list(engine.lens(1))


def _record_lenses(loaded, path, lens_steps) -> None:
    """A real tiny-model session of 6 steps recorded to ``path`` as the TUI records it, the lens
    of each of ``lens_steps`` asked for after the steps (as stepping into them, ``s``, asks)."""
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.engine.trace_writer import TraceWriter

    settings = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    engine = RecordingEngine(Stepper(loaded, "the quick brown fox", settings), TraceWriter(path), {})
    try:
        engine.start()
        while not engine.finished:
            engine.step()
        for step in lens_steps:
            engine.lens(step)
    finally:
        engine.writer.close()


async def _replay_and_write(path) -> list:
    """``path`` opened in the replay TUI and ``w`` pressed at once (the Layers pane never shown);
    returns the notifications."""
    app, engine = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert len(app.view.steps) == len(engine.trace)
        await pilot.press("w")
        await settle(app, pilot)
        return list(app._notifications)


async def test_w_during_a_replay_writes_every_recorded_lens(tmp_path, monkeypatch, tiny_llama_dir):
    """A replay's ``w`` writes every lens its recording kept, read from the file, not only the
    lenses the Layers pane happened to load: the written file has the same lens on the same
    steps, value for value, and none where none was recorded."""
    from lmscope.engine import models

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    source = tmp_path / "source.lmscope"
    _record_lenses(loaded, source, (1, 2, 4))
    original = Trace(source)
    assert [original.has_lens(i) for i in range(6)] == [False, True, True, False, True, False]
    monkeypatch.chdir(tmp_path)
    notes = await _replay_and_write(source)
    written = Trace(next(path for path in tmp_path.glob("*.lmscope") if path != source))
    assert len(written) == 6 and written.lens_steps == 3
    assert [written.lens_data(i) for i in range(6)] == [original.lens_data(i) for i in range(6)]
    assert [written.step_data(i) for i in range(6)] == [original.step_data(i) for i in range(6)]
    assert not [note for note in notes if note.severity != "information"]


async def test_w_during_a_replay_leaves_out_a_lens_that_does_not_read(tmp_path, monkeypatch):
    """A recorded lens that does not read (a damaged chunk) is left out of what ``w`` writes,
    and a warning says which: the steps and the other lenses are written."""
    from trace_chunks import chunks, rebuilt

    source = tmp_path / "source.lmscope"
    testing.write_trace(source, make_session("llama", steps=5), lens_steps=(1, 3))
    data = source.read_bytes()
    index = [i for i, chunk in enumerate(chunks(data)) if chunk["kind"] == b"LENS"][0]
    source.write_bytes(rebuilt(data, index, body={"data": {"step": 1, "layers": "x"}, "rows": {}}))
    monkeypatch.chdir(tmp_path)
    notes = await _replay_and_write(source)
    written = Trace(next(path for path in tmp_path.glob("*.lmscope") if path != source))
    assert len(written) == 5 and [written.has_lens(i) for i in range(5)] == [False, False, False, True, False]
    assert written.lens_data(3) == Trace(source).lens_data(3)
    warnings = [note for note in notes if note.severity == "warning"]
    assert len(warnings) == 1 and "step 2's lens" in warnings[0].message
    assert "not a list of layers" in warnings[0].message


async def test_ctrl_s_saves_an_svg_screenshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from tui_harness import running

    async with running(steps=4) as (app, pilot, engine):
        await pilot.press("ctrl+s")
        await pilot.pause()
        shots = list(tmp_path.glob("*.svg"))
        assert len(shots) == 1 and shots[0].read_text().startswith("<svg")


async def test_a_cut_recording_says_what_it_does_not_show(tmp_path):
    path = tmp_path / "s.lmscope"
    write_trace(path, steps=8)
    path.write_bytes(path.read_bytes()[:-10])  # the last step's chunk torn, as a killed recorder leaves it
    app, engine = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert len(app.view.steps) == 7
        warnings = [n for n in app._notifications if n.severity == "warning"]
        assert len(warnings) == 1 and "the 7 whole steps before it are shown" in warnings[0].message
        assert "replay of s.lmscope (cut short), recorded " in screen_text(app).splitlines()[0]


async def test_a_whole_recording_opens_without_a_warning(tmp_path):
    write_trace(tmp_path / "s.lmscope")
    app, engine = replay_app(tmp_path / "s.lmscope")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert not [n for n in app._notifications if n.severity == "warning"]


async def test_a_session_recorded_before_it_ended_replays_as_paused(tmp_path):
    from dataclasses import replace

    session = make_session("llama", steps=8)
    testing.write_trace(tmp_path / "s.lmscope", replace(session, steps=session.steps[:3]))
    app, engine = replay_app(tmp_path / "s.lmscope")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert len(app.view.steps) == 3 and app.view.state == "paused" and not engine.finished
        assert "paused" in screen_text(app).splitlines()[0]
        for action in ("step", "continue", "pause"):
            assert app.check_action(action, ()) is None


def _tree_shape(tree) -> dict:
    """Each branch of ``tree`` as (parent, fork step, forced id, its tokens), by id."""
    return {branch.id: (branch.parent, branch.fork_step, branch.forced, [s.token_id for s in branch.steps])
            for branch in tree.branches.values()}


async def test_a_replay_shows_the_branches_the_session_made(tmp_path):
    """Recorded live with a rewind and a forced token, a session replays with the same branch
    tree: ``t`` lists every branch, ``enter`` shows one in every pane with the breakpoint marks
    and the lenses recorded while it was live (a left-behind step's, not the live step's of that
    number); ``r`` cannot resume one (no model)."""
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.trace import lens_to_list
    from lmscope.engine.trace_writer import TraceWriter
    from lmscope.tui.widgets.branches import BranchesScreen
    from lmscope.tui.widgets.layers import LayersPane

    path = tmp_path / "branched.lmscope"
    recorder = RecordingEngine(testing.FakeEngine(make_session("llama", steps=8)), TraceWriter(path), {})
    live_app = make_app(lambda: recorder, theme="textual-dark")
    async with live_app.run_test(size=(120, 40)) as pilot:
        await settle(live_app, pilot)
        await pilot.press("b")
        await pilot.pause()
        await pilot.press(*"step == 5", "enter")
        await pilot.pause()
        await pilot.press("c")  # held after step 5
        await settle(live_app, pilot)
        await pilot.press("5")  # step 5's lens, computed and recorded while its branch is live
        await settle(live_app, pilot)
        await pilot.press("1", "c")
        await settle(live_app, pilot)
        assert live_app.view.marks == {5} and len(live_app.view.steps) == 8
        await pilot.press("home", "right", "right", "u")  # rewind before step 1: branch 1 keeps steps 1-7
        await settle(live_app, pilot)
        for _ in range(2):
            await pilot.press("n")
            await settle(live_app, pilot)
        await pilot.press("left", "f")  # force at step 1: branch 2 keeps the two new steps
        await pilot.pause()
        await pilot.press(*"Paris", "enter")
        await settle(live_app, pilot)
        live_shape = _tree_shape(live_app.branch_tree)
        assert live_app.view.steps[1].chosen_by == "forced"
        live_lens = lens_to_list(live_app.screen.query_one(LayersPane)._lenses[
            live_app.view.prompt, live_app.branch_tree.branches[1].steps[5]][0])
    recorder.writer.close()
    assert len(live_shape) == 3, live_shape

    app, engine = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert _tree_shape(app.branch_tree) == live_shape
        assert app.view.steps == app.branch_tree.live_branch.steps  # the history's own records
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, BranchesScreen)
        text = screen_text(app)
        assert "branch 1 · fork at step 1" in text and "branch 2 · fork at step 1" in text
        assert "a replay: none resumes" in text
        await pilot.press("down", "enter")  # branch 1: the first run's steps 1-7
        await pilot.pause()
        assert app.view.branch == 1 and [s.token_id for s in app.view.steps] == live_shape[1][3]
        assert app.view.marks == {5}  # where the breakpoint held in that branch
        first_line = screen_text(app).splitlines()[0]
        assert "viewing branch 1 (not live)" in first_line and "resumes" not in first_line
        await pilot.press("5")  # Layers, on a step the live branch numbers too: its own lens
        await settle(app, pilot)
        layers = app.screen.query_one(LayersPane)
        assert app.view.index == 7  # not the live branch's step 7:
        assert all(app.view.selected is not record for record in app.branch_tree.live_branch.steps)
        assert "keeps no logit lens" in layers._not_held(app.view)  # step 7: none recorded
        await pilot.press("left", "left")
        await settle(app, pilot)
        assert app.view.selected is app.branch_tree.branches[1].steps[5] and layers._not_held(app.view) is None
        assert lens_to_list(layers._lenses[app.view.prompt, app.view.selected][0]) == live_lens
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("r")
        await settle(app, pilot)
        assert app.view.branch == 1 and app.branch_tree.live == 0
        assert any("cannot resume" in str(note.message) for note in app._notifications)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("up", "up", "enter")  # the live branch again: the replay's label is back
        await pilot.pause()
        assert app.view.branch == 0 and "replay of branched.lmscope" in screen_text(app).splitlines()[0]


def _tree_steps(tree) -> dict:
    """Each branch of ``tree`` as its steps' (token id, how chosen), by id."""
    return {branch.id: [(s.token_id, s.chosen_by) for s in branch.steps] for branch in tree.branches.values()}


async def test_a_replay_shows_a_resumed_branch_as_its_own_steps(tmp_path):
    """Resumed live (``t``, ``r``), a branch's steps are its own again, not the forced re-run
    that rebuilt the cache: the replay shows them, with the tree the session had (branch 1
    live, branch 0 kept whole beside it, no branch of re-run steps), and later steps follow
    them; an older reader's view of the same file (its RSUM chunk skipped) is the re-run."""
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import TraceWriter

    path = tmp_path / "resumed.lmscope"
    fake = testing.FakeEngine(make_session("llama", steps=8))
    recorder = RecordingEngine(fake, TraceWriter(path), {})
    live_app = make_app(lambda: recorder, theme="textual-dark")
    async with live_app.run_test(size=(120, 40)) as pilot:
        await settle(live_app, pilot)
        for _ in range(5):
            await pilot.press("n")
            await settle(live_app, pilot)
        await pilot.press("home", "right", "right", "f")  # force at step 1: branch 1 keeps steps 1-4
        await pilot.pause()
        await pilot.press(*"Paris", "enter")
        await settle(live_app, pilot)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("down", "r")  # resume branch 1: steps 1-4 forced again on the cache
        await settle(live_app, pilot)
        assert live_app.branch_tree.live == 1
        await pilot.press("n")  # step 5, after the resumed steps
        await settle(live_app, pilot)
        live_tree = _tree_steps(live_app.branch_tree)
        live_steps = [(s.token_id, s.chosen_by) for s in live_app.view.steps]
    recorder.writer.close()
    assert fake.rewind_calls == 2 and len(live_steps) == 6
    assert "forced" not in {by for _, by in live_steps} and sorted(live_tree) == [0, 1]
    assert live_tree[0][1] == (fake.first_token("Paris")[0], "forced")

    app, engine = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert [(s.token_id, s.chosen_by) for s in app.view.steps] == live_steps
        assert _tree_steps(app.branch_tree) == live_tree and app.branch_tree.live == 1
        assert app.view.steps == app.branch_tree.live_branch.steps  # the history's own records
        assert app.view.branch == 1 and app.view.live
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("up", "enter")  # branch 0, the forced one: shown, not live
        await pilot.pause()
        assert app.view.branch == 0 and not app.view.live and app.view.steps[1].chosen_by == "forced"
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("down", "enter")  # branch 1 again: live, the replay's label back
        await pilot.pause()
        assert app.view.branch == 1 and app.view.live and "replay of resumed.lmscope" in screen_text(app)

    older = Trace(path)
    older._chunks = [chunk for chunk in older._chunks if chunk.kind != b"RSUM"]
    older._steps = older._live_steps()
    assert [older.step(i).chosen_by for i in range(len(older))] == [live_steps[0][1]] + ["forced"] * 4 + [live_steps[5][1]]


async def test_a_real_session_resumed_replays_with_its_own_steps(tiny_llama_dir, tmp_path):
    """The same with a real Stepper, whose steps complete later (a continue's rows wait) and
    whose re-run makes new records: the trace names the branch's own steps, and the replay's
    live branch is the session's, step for step (tokens and how each was chosen)."""
    from lmscope.engine import models
    from lmscope.engine.recording import RecordingEngine
    from lmscope.engine.settings import GenerationSettings
    from lmscope.engine.stepper import Stepper
    from lmscope.engine.trace_reader import Resumed, Trace
    from lmscope.engine.trace_writer import TraceWriter

    loaded = models.load(str(tiny_llama_dir), "llama", device="cpu", dtype="float32")
    stepper = Stepper(loaded, "the quick brown fox", GenerationSettings(max_new_tokens=6, min_new_tokens=6))
    path = tmp_path / "real.lmscope"
    recorder = RecordingEngine(stepper, TraceWriter(path), {})
    live_app = make_app(lambda: recorder, theme="textual-dark")
    async with live_app.run_test(size=(120, 40)) as pilot:
        await settle(live_app, pilot)
        await pilot.press("n")
        await settle(live_app, pilot)
        await pilot.press("c")  # the rest in a continue: rows and records wait, then are written
        await settle(live_app, pilot)
        await pilot.press("home", "right", "right")  # step 1
        live_app.screen.query_one("#stages").focus()
        await pilot.press("down", "enter")  # force its second candidate: branch 1 keeps the first run
        await settle(live_app, pilot)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("down", "r")
        await settle(live_app, pilot)
        assert live_app.branch_tree.live == 1 and len(live_app.view.steps) == 6
        live_tree = _tree_steps(live_app.branch_tree)
        live_steps = [(s.token_id, s.chosen_by) for s in live_app.view.steps]
    recorder.writer.close()
    assert "forced" not in {by for _, by in live_steps}
    assert [item for item in Trace(path).every_step() if isinstance(item, Resumed)] == [Resumed(1, (1, 2, 3, 4, 5))]

    app, engine = replay_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert [(s.token_id, s.chosen_by) for s in app.view.steps] == live_steps
        assert _tree_steps(app.branch_tree) == live_tree and app.branch_tree.live == 1


async def test_a_replay_without_rewinds_builds_no_second_tree(tmp_path):
    write_trace(tmp_path / "s.lmscope")
    app, engine = replay_app(tmp_path / "s.lmscope")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert engine.recorded_branches() is None and list(app.branch_tree.branches) == [0]
        assert app.branch_tree.live_branch.steps == app.view.steps
