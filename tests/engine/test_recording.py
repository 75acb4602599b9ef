"""Recorded sessions: the round trip, a killed recorder, and every kind of bad file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from lmscope.cli import main
from lmscope.engine.trace import prompt_to_dict, step_to_dict
from lmscope.engine.trace_format import FORMAT_VERSION, TraceError
from lmscope.engine.trace_reader import Trace
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_lens, make_session


def record_fake(path, family="llama", steps=5, dtype="float32", n_prompt=None):
    session = make_session(family, steps=steps, n_prompt=n_prompt)
    began(path, session, len(session.steps), dtype, {"family": family}).close()
    return session


def began(path, session, steps: int, dtype="float32", options=None) -> TraceWriter:
    """A writer of ``session`` to ``path`` that has written its meta, prompt and first ``steps`` steps."""
    writer = TraceWriter(path, dtype)
    writer.meta(session.info, options or {})
    writer.prompt(session.prompt)
    for record in session.steps[:steps]:
        writer.step(record)
    return writer


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_records_come_back_equal(tmp_path, family):
    session = record_fake(tmp_path / "s.lmscope", family)
    trace = Trace(tmp_path / "s.lmscope")
    assert asdict(trace.info) == asdict(session.info) and len(trace) == len(session.steps)
    assert prompt_to_dict(trace.prompt(), True) == prompt_to_dict(session.prompt, True)
    for index, record in enumerate(session.steps):
        assert step_to_dict(trace.step(index), True) == step_to_dict(record, True)
        np.testing.assert_array_equal(trace.step(index).attention.probs, record.attention.probs)


def test_float16_rows_are_half_the_size_and_within_1e_3(tmp_path):
    session = record_fake(tmp_path / "a.lmscope", steps=8, n_prompt=600)  # rows outweigh the JSON, as at 2k
    record_fake(tmp_path / "b.lmscope", steps=8, dtype="float16", n_prompt=600)
    full, half = (tmp_path / "a.lmscope").stat().st_size, (tmp_path / "b.lmscope").stat().st_size
    assert half < 0.65 * full
    trace = Trace(tmp_path / "b.lmscope")
    for index, record in enumerate(session.steps):
        np.testing.assert_allclose(trace.step(index).attention.probs, record.attention.probs, atol=1e-3)


def test_a_rewound_recording_opens_on_the_branch_live_at_the_end(tmp_path):
    session = make_session("llama", steps=6)
    writer = began(tmp_path / "r.lmscope", session, 5)
    for record in session.steps[2:4]:  # rewound to step 2, stepped again
        writer.step(record)
    writer.close()
    assert [r.step for r in (Trace(tmp_path / "r.lmscope").step(i) for i in range(4))] == [0, 1, 2, 3]
    assert len(Trace(tmp_path / "r.lmscope")) == 4
    # the steps the rewind left behind are a branch of the replay, forked at step 2
    from lmscope.engine.recording import ReplayEngine

    replay = ReplayEngine(Trace(tmp_path / "r.lmscope"))
    live = [record for record, _ in replay.recorded_steps()]
    tree = replay.recorded_branches()
    assert tree.live_branch.steps == tuple(live) and all(a is b for a, b in zip(tree.live_branch.steps, live))
    left = tree.branches[1]
    assert (left.parent, left.fork_step, [s.step for s in left.steps]) == (0, 2, [0, 1, 2, 3, 4])
    assert left.steps[:2] == tuple(live[:2]) and left.steps[3] is not live[3]  # step 3 of each its own record


def write_resumed(path, places=(1, 2, 3), reruns=3):
    """Steps 0-3, then a force at step 1 (a branch of its own), then branch 0 resumed at step 1:
    its tokens re-run, forced (``reruns`` of them), and a RSUM naming ``places``; then step 4."""
    from dataclasses import replace

    session = make_session("llama", steps=5)
    steps = session.steps
    writer = began(path, session, 4)  # steps at places 0-3
    writer.lens(2, make_lens(steps[2], session.info.layers))  # step 2's, while its branch is live
    writer.step(replace(steps[1], token_id=7, chosen_by="forced"))  # place 4: branch 0 set aside
    for record in steps[1:1 + reruns]:
        writer.step(replace(record, chosen_by="forced"))  # places 5-7: the re-run
    writer.resume(1, list(places))
    writer.step(steps[4])
    writer.close()
    return session


def test_a_resumed_branch_opens_as_its_own_steps(tmp_path):
    """The RSUM chunk puts the branch's own steps back in place of their forced re-run: the
    live steps, the lens written beside one of them while it was first live, and the tree
    (the forced branch kept whole, no branch of re-run steps)."""
    from lmscope.engine.recording import ReplayEngine

    session = write_resumed(tmp_path / "r.lmscope")
    trace = Trace(tmp_path / "r.lmscope")
    assert [trace.step(i).chosen_by for i in range(len(trace))] == [s.chosen_by for s in session.steps]
    assert [trace.step(i).token_id for i in range(len(trace))] == [s.token_id for s in session.steps]
    assert [trace.has_lens(i) for i in range(len(trace))] == [False, False, True, False, False]
    replay = ReplayEngine(trace)
    live = [record for record, _ in replay.recorded_steps()]
    tree = replay.recorded_branches()
    assert sorted(tree.branches) == [0, 1] and tree.live == 1 and tree.live_branch.steps == tuple(live)
    forced = tree.branches[0]  # the force kept the branch's id, its first run was set aside as branch 1
    assert [s.token_id for s in forced.steps] == [session.steps[0].token_id, 7] and forced.steps[0] is live[0]


@pytest.mark.parametrize("places, reruns", [((1, 3, 2), 3), ((1, 2, 3), 2), ((1, 2, 9), 3), ((0, 1, 2), 3)])
def test_a_resume_that_does_not_hold_is_passed_over(places, reruns, tmp_path):
    """A RSUM naming steps of other numbers, more steps than were re-run, a place never written:
    passed over as an older lmscope passes it, the re-run steps standing as the live ones."""
    session = write_resumed(tmp_path / "r.lmscope", places, reruns)
    trace = Trace(tmp_path / "r.lmscope")
    shown = [trace.step(i).chosen_by for i in range(len(trace))]
    assert shown == [session.steps[0].chosen_by] + ["forced"] * reruns + [session.steps[4].chosen_by][:reruns == 3]


def test_a_restarted_recording_opens_on_the_session_after_its_last_restart(tmp_path, capsys):
    """A restart (``r``) writes the prompt again and the session begins again: the TUI shows
    the new prompt, no step and no branch. The reader took the first prompt and read the
    steps after the second as a rewind to step 0: the file opened on the steps made before the
    restart, with their branches (tests/engine/test_random_ops.py found it)."""
    from dataclasses import replace

    from lmscope.engine.recording import ReplayEngine

    session = make_session("llama", steps=4)
    again = replace(session.prompt, elapsed_s=session.prompt.elapsed_s + 1)
    writer = began(tmp_path / "r.lmscope", session, 3)
    writer.step(replace(session.steps[1], token_id=7, chosen_by="forced"))  # a force at step 1: a branch
    writer.prompt(again)  # r
    trace = Trace(tmp_path / "r.lmscope")
    assert len(trace) == 0 and trace.prompt().elapsed_s == again.elapsed_s and not trace.has_branches
    assert ReplayEngine(trace).recorded_branches() is None
    for record in session.steps[:2]:  # n n after the restart: the session's one branch
        writer.step(record)
    writer.close()
    replay = ReplayEngine(Trace(tmp_path / "r.lmscope"))
    assert [record.step for record, _ in replay.recorded_steps()] == [0, 1] and replay.recorded_branches() is None
    assert main(["open", str(tmp_path / "r.lmscope"), "--json"]) == 0
    assert [json.loads(line)["token_id"] for line in capsys.readouterr().out.splitlines()] == \
        [record.token_id for record in session.steps[:2]]


def test_a_rewind_is_recorded_whether_or_not_a_step_follows(tmp_path):
    """``n`` x4, ``u`` on step 2, ``u`` on step 1, then nothing; then ``t``, ``r`` on the branch
    the first ``u`` set aside; then ``u`` on step 2 and ``t``, ``r`` on the branch it set aside
    (no step between). A rewind wrote nothing, the next STEP's number was all that said where
    it went back to: the file opened on the 4 steps the rewinds had set aside, a rewind that no
    step followed made no branch, and a resume right after a rewind could not find the branch
    it resumed (tests/engine/test_random_ops.py found them). Each state is the app's tree."""
    from lmscope.engine.branches import BranchTree
    from lmscope.engine.recording import RecordingEngine, ReplayEngine
    from lmscope.testing import FakeEngine

    path, tree = tmp_path / "r.lmscope", BranchTree()
    writer = TraceWriter(path)
    engine = RecordingEngine(FakeEngine(make_session("llama", steps=6)), writer, {})

    def shape(tree) -> tuple:
        return tree.live, {number: (branch.parent, branch.fork_step, branch.forced, [r.token_id for r in branch.steps])
                           for number, branch in tree.branches.items()}

    def rewind(step):  # u: the app's tree forks where steps are set aside
        engine.rewind(step)
        if step < len(tree.live_branch.steps):
            tree.fork(step, None)

    def resume(branch):  # t, then r: the workers' control
        common, records = tree.steps_to_replay(branch)
        engine.rewind(common)
        for record in records:
            engine.step(force=record.token_id)
        engine.note_resumed(common, records)
        tree.switch(branch)

    def replayed() -> tuple:
        replay = ReplayEngine(Trace(path))
        live = [record for record, _ in replay.recorded_steps()]
        recorded = replay.recorded_branches()
        assert [r.token_id for r in live] == [r.token_id for r in tree.live_branch.steps]
        return shape(recorded) if recorded is not None else (0, {0: (None, 0, None, [r.token_id for r in live])})

    engine.start()
    for _ in range(4):
        tree.append(engine.step())
    rewind(2)
    rewind(1)
    assert replayed() == shape(tree) and len(tree.branches) == 3
    resume(1)
    assert replayed() == shape(tree)
    rewind(2)
    resume(3)
    assert replayed() == shape(tree) and tree.live == 3
    tree.append(engine.step())
    writer.close()
    assert replayed() == shape(tree)


@pytest.mark.parametrize("written", ["another step in its JSON", "past the steps"])
def test_a_rewind_a_recorder_never_writes(written, tmp_path):
    """A RWND whose JSON names another step than its header (outside the CRC) is passed over,
    as an older lmscope passes every RWND; one past the steps made is a damaged chunk, where the
    reading stops."""
    session = make_session("llama", steps=4)
    writer = began(tmp_path / "r.lmscope", session, 3)
    if written == "past the steps":
        writer.rewind(4)
        writer.step(session.steps[3])
    else:
        writer._chunk(b"RWND", {"step": 0}, step=1)
    writer.close()
    trace = Trace(tmp_path / "r.lmscope")
    assert (len(trace), trace.tail) == (3, "damaged" if written == "past the steps" else "")


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_open_json_prints_what_the_live_run_printed(family, tiny_llama_dir, tiny_t5_dir, tmp_path, capsys):
    folder = tiny_llama_dir if family == "llama" else tiny_t5_dir
    path = str(tmp_path / "run.lmscope")
    argv = [family, "--model", str(folder), "--prompt", "the quick brown fox", "--max-new-tokens", "6",
            "--do-sample", "--seed", "2", "--break", "step == 4"]
    assert main([*argv, "--json", "--attention", "--record", path]) == 0
    live = capsys.readouterr().out
    assert main(["open", path, "--json", "--attention"]) == 0
    assert capsys.readouterr().out == live
    assert json.loads(live.splitlines()[-1])["breakpoint"]["expr"] == "step == 4"
    assert main(["open", path, "--json"]) == 0
    without = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all("attention" not in line for line in without) and len(without) == 5


def test_open_headless_prints_the_live_table(tiny_t5_dir, tmp_path, capsys):
    path = str(tmp_path / "run.lmscope")
    assert main(["t5", "--model", str(tiny_t5_dir), "--prompt", "the dog", "--max-new-tokens", "4",
                 "--headless", "--record", path]) == 0
    live = capsys.readouterr().out
    assert main(["open", path, "--headless"]) == 0
    assert capsys.readouterr().out == live
    assert Trace(path).step(0).cross_attention is not None  # a recording keeps rows, also headless


RECORDER = """
import sys, time
from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_lens, make_session
session = make_session("llama", steps=40)
writer = TraceWriter(sys.argv[1])
writer.meta(session.info, {})
writer.prompt(session.prompt)
for record in session.steps:
    writer.step(record)
    print(record.step, flush=True)
    time.sleep(0.05)
"""


def test_a_killed_recorder_leaves_every_finished_step(tmp_path):
    path = tmp_path / "killed.lmscope"
    process = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)], stdout=subprocess.PIPE, text=True)
    finished = [int(process.stdout.readline()) for _ in range(6)]  # six steps written and flushed
    process.send_signal(signal.SIGKILL)
    process.wait()
    trace = Trace(path)
    assert len(trace) >= len(finished) and trace.step(finished[-1]).step == finished[-1]
    with open(path, "ab") as file:  # a write torn in the middle, as a kill during write() leaves
        file.write(b"STEP\x10\x00\x00\x00")
    assert len(Trace(path)) == len(trace)


def step_chunk_starts(data: bytes) -> list[int]:
    """Where each STEP chunk begins (its kind is the chunk header's first four bytes)."""
    starts, at = [], data.find(b"STEP")
    while at >= 0:
        starts.append(at)
        at = data.find(b"STEP", at + 1)
    return starts


def test_a_cut_or_damaged_end_is_named_with_what_is_shown(tmp_path):
    path = tmp_path / "s.lmscope"
    record_fake(path, steps=5)
    data = path.read_bytes()
    assert Trace(path).unread == 0 and Trace(path).tail_notice == ""
    path.write_bytes(data[:-10])  # the last step's chunk torn
    cut = Trace(path)
    assert len(cut) == 4 and cut.unread == len(data) - step_chunk_starts(data)[4] - 10 and not cut.damaged
    assert "cut short" in cut.tail_notice and "the 4 whole steps before it are shown" in cut.tail_notice
    third = step_chunk_starts(data)[2]
    body = third + 40  # inside the third step's JSON (after the 24-byte header): its checksum fails
    path.write_bytes(data[:body] + bytes([data[body] ^ 0xFF]) + data[body + 1:])
    damaged = Trace(path)
    assert len(damaged) == 2 and damaged.unread == len(data) - third and damaged.damaged
    assert "damaged" in damaged.tail_notice and "the 2 steps before it are shown" in damaged.tail_notice
    second = step_chunk_starts(data)[1] + 40  # one step before the damage: "step", not "steps"
    path.write_bytes(data[:second] + bytes([data[second] ^ 0xFF]) + data[second + 1:])
    assert "the 1 step before it is shown" in Trace(path).tail_notice


@pytest.mark.parametrize("output", [["--json"], ["--headless"]])
def test_open_warns_on_stderr_of_a_cut_recording(output, tmp_path, capsys):
    path = tmp_path / "s.lmscope"
    record_fake(path, steps=5)
    assert main(["open", str(path), *output]) == 0
    whole, err = capsys.readouterr()
    assert err == ""
    path.write_bytes(path.read_bytes()[:-10])  # the last step's chunk torn
    assert main(["open", str(path), *output]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"lmscope: warning: {str(path)!r}: the last ") and err.count("\n") == 1
    assert out.splitlines() == whole.splitlines()[:-1]  # every step but the torn one, as before


def test_open_svg_warns_on_stderr_of_a_cut_recording(tmp_path, capsys):
    path = tmp_path / "s.lmscope"
    record_fake(path, steps=5)
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["open", str(path), "--svg", str(tmp_path / "shot.svg")]) == 0
    assert capsys.readouterr().err.startswith(f"lmscope: warning: {str(path)!r}: the last ")
    assert (tmp_path / "shot.svg").read_text().startswith("<svg")


def bad_files(tmp_path):
    good = tmp_path / "good.lmscope"
    record_fake(good)
    data = good.read_bytes()
    files = {
        "missing": (tmp_path / "nope.lmscope", "does not exist"),
        "empty": (tmp_path / "empty.lmscope", "is empty"),
        "garbage": (tmp_path / "garbage.lmscope", "is not an lmscope trace"),
        "json": (tmp_path / "lines.jsonl", "is not an lmscope trace"),
        "newer": (tmp_path / "newer.lmscope", f"this lmscope reads format {FORMAT_VERSION}"),
        "truncated": (tmp_path / "cut.lmscope", "has no session in it"),
        "no prompt": (tmp_path / "noprompt.lmscope", "cut before its prompt"),
        "damaged prompt": (tmp_path / "badprompt.lmscope", "has a damaged chunk before its prompt"),
        "folder": (tmp_path, "is a folder"),
    }
    (tmp_path / "empty.lmscope").write_bytes(b"")
    (tmp_path / "garbage.lmscope").write_bytes(os.urandom(4096))
    (tmp_path / "lines.jsonl").write_text('{"step": 0}\n')
    (tmp_path / "newer.lmscope").write_bytes(data[:13] + (FORMAT_VERSION + 1).to_bytes(2, "little") + data[15:])
    (tmp_path / "cut.lmscope").write_bytes(data[:40])
    meta_end = data.index(b"PRMT")
    (tmp_path / "noprompt.lmscope").write_bytes(data[:meta_end])
    flipped = meta_end + 40  # inside the prompt's JSON (the chunk header is 24 bytes)
    (tmp_path / "badprompt.lmscope").write_bytes(data[:flipped] + bytes([data[flipped] ^ 0xFF]) + data[flipped + 1:])
    return files


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "json", "newer", "truncated", "no prompt",
                                  "damaged prompt", "folder"])
def test_a_bad_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(TraceError, match=message):
        Trace(path)
    for extra in ([], ["--json"], ["--headless"]):
        assert main(["open", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lmscope: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("how", [["--json"], ["--headless"], ["--svg", "shot.svg"]])
def test_open_never_imports_torch(how, tmp_path):
    """No output of a replay imports torch or transformers: ``--svg`` runs the replay TUI (its
    load asked torch how many threads it runs, for the frame pacing: 1.3 s more to the first
    frame and 180 MiB more, in bench_replay)."""
    path = tmp_path / "s.lmscope"
    record_fake(path)
    code = ("import sys; from lmscope.cli import main; rc = main(['open', *sys.argv[1:]]); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(path), *how], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if how == ["--json"]:
        assert len(done.stdout.splitlines()) == 5
    if how[0] == "--svg":
        assert (tmp_path / "shot.svg").stat().st_size > 0


def test_open_svg_renders_one_screen(tmp_path, capsys):
    path = tmp_path / "s.lmscope"
    record_fake(path, family="t5")
    out = tmp_path / "shot.svg"
    assert main(["open", str(path), "--svg", str(out), "--step", "2", "--tab", "cross", "--size", "100x30"]) == 0
    assert out.read_text().startswith("<svg") and "Cross-attention" in out.read_text().replace("&#160;", " ")
    assert main(["open", str(path), "--svg", str(out), "--size", "10x3"]) == 2
    assert "--size '10x3'" in capsys.readouterr().err


def test_open_svg_dash_writes_the_svg_to_stdout(tmp_path, capsys, monkeypatch):
    """``--svg -`` is stdout, as for most tools: the SVG and nothing else there, no file named
    ``-``; its --tab and --size are checked as for a file."""
    path = tmp_path / "s.lmscope"
    record_fake(path, family="t5")
    monkeypatch.chdir(tmp_path)
    assert main(["open", str(path), "--svg", "-", "--step", "2", "--tab", "cross"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<svg") and out.rstrip().endswith("</svg>") and out.count("<svg") == 1
    assert "Cross-attention" in out.replace("&#160;", " ")
    assert not (tmp_path / "-").exists()
    assert main(["open", str(path), "--svg", "-", "--size", "10x3"]) == 2
    captured = capsys.readouterr()
    assert "--size '10x3'" in captured.err and captured.out == ""


def svg_text(path) -> str:
    """The screen's text in an SVG Textual saved (one ``<text>`` element per run of a style)."""
    import html
    import re

    return html.unescape(" ".join(re.findall(r">([^<]*)</text>", path.read_text()))).replace("\xa0", " ")


@pytest.mark.parametrize("tab, shown", [("attention", "attention · layer"), ("cross", "cross-attention · layer"),
                                        ("kv", "cross-attention (fixed)"), ("variables", "input_ids")])
def test_open_svg_tab_and_step_flags(tab, shown, tmp_path, capsys):
    """``--tab`` brings that tab to the front; ``--step N`` selects step N (the status bar says
    "viewing N+1"), without it the newest step is shown."""
    path = tmp_path / "s.lmscope"
    record_fake(path, family="t5")
    newest, selected = tmp_path / "newest.svg", tmp_path / "step.svg"
    assert main(["open", str(path), "--svg", str(newest), "--tab", tab]) == 0
    assert main(["open", str(path), "--svg", str(selected), "--tab", tab, "--step", "1"]) == 0
    capsys.readouterr()
    assert shown in svg_text(newest) and "viewing" not in svg_text(newest)
    if tab != "cross":
        assert "cross-attention · layer" not in svg_text(newest)
    assert shown in svg_text(selected) and "viewing 2 " in svg_text(selected)


def test_open_svg_size_flag_is_the_terminal_drawn(tmp_path, capsys):
    """``--size COLSxROWS``: the SVG's width follows the columns alone, its height the rows alone."""
    import re

    path = tmp_path / "s.lmscope"
    record_fake(path, family="t5")
    boxes = {}
    for size in ("120x40", "100x40", "120x30"):
        out = tmp_path / f"{size}.svg"
        assert main(["open", str(path), "--svg", str(out), "--size", size]) == 0
        boxes[size] = tuple(map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', out.read_text()).groups()))
    capsys.readouterr()
    assert boxes["100x40"][0] < boxes["120x40"][0] == boxes["120x30"][0]
    assert boxes["120x30"][1] < boxes["120x40"][1] == boxes["100x40"][1]


def test_record_dtype_flag_halves_the_rows(tiny_llama_dir, tmp_path, capsys):
    path = str(tmp_path / "half.lmscope")
    argv = ["llama", "--model", str(tiny_llama_dir), "--prompt", "the quick brown fox", "--max-new-tokens", "3",
            "--json", "--attention", "--record", path, "--record-dtype", "float16"]
    assert main(argv) == 0
    live = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    trace = Trace(path)
    assert trace.rows_dtype == np.float16 and len(trace) == 3
    for index, line in enumerate(live):
        np.testing.assert_allclose(np.asarray(trace.step(index).attention.probs, dtype=np.float32),
                                   np.asarray(line["attention"]["probs"]), atol=1e-3)
    assert main([*argv[:-1], "bfloat16"]) == 2
    assert "--record-dtype must be one of float32, float16" in capsys.readouterr().err
