"""A trace truncated while ``lmscope open`` has it open (``cp`` or ``truncate`` onto its path, a
copy in progress, a tool that rewrites files in place). Its mapped pages past the new end are
gone: touching one ended the process with SIGBUS, which Python cannot catch. Every read of the
file is now an ``os.pread`` that returns what is left, and a short read is one TraceError line.
What the trace read and checked as it opened (each chunk's JSON) is kept until it is read once.

Each test runs in a process of its own, so that a SIGBUS fails the test instead of ending pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from lmscope.testing import make_session, write_trace

SHRUNK = "was truncated while it was open"


def trace_file(tmp_path, steps=6):
    """A llama trace of some pages (its rows past the first page, where a truncation leaves none)."""
    path = tmp_path / "s.lmscope"
    write_trace(path, make_session("llama", steps=steps, n_prompt=120), lens_steps=(1,))
    assert path.stat().st_size > 16 * 4096
    return path


def run(code: str, *args, cwd=None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr[-2000:]}"
    return done


READER = """
    import os, sys
    from lmscope.engine.mapped_rows import read_ahead
    from lmscope.engine.trace_format import TraceError
    from lmscope.engine.trace_reader import Trace
    from lmscope.engine.trace_writer import write_session

    path = sys.argv[1]
    trace = Trace(path)
    records = [trace.step(i) for i in range(len(trace))]  # the TUI's history: rows mapped, not read
    os.truncate(path, 100)
    print("lens", len(trace.lens(1)))  # its JSON, read and checked as the trace opened, is not read again
    reads = {
        "step_data": lambda: trace.step_data(3),  # read once already: read again from the file
        "step": lambda: trace.step(3),
        "rows": lambda: trace.rows(2),
        "prompt rows": lambda: read_ahead(trace.prompt().attention.probs[0, 0]),
        "step rows": lambda: read_ahead(records[4].attention.probs[1][:, 0]),
        "written again": lambda: write_session(path + ".copy", trace.info, trace.prompt(), records),
    }
    for name, read in reads.items():
        try:
            read()
            print(name, "read")
        except TraceError as error:
            print(name, "refused:", error)
"""


def test_reads_of_a_trace_truncated_while_open_are_one_error_each_not_sigbus(tmp_path):
    """Before: SIGBUS at the first read (the step's JSON, through the mapping), exit -7."""
    path = trace_file(tmp_path)
    done = run(READER, path)
    lens, *lines = done.stdout.splitlines()
    assert done.returncode == 0 and lens == "lens 4" and len(lines) == 6, done.stderr
    for line in lines:
        assert " refused: " in line and SHRUNK in line and "(it now holds 100 of its " in line, line
    assert str(path) in lines[0] and "\n" not in lines[0]


def test_a_trace_recorded_again_to_its_path_while_open_still_reads_as_it_was(tmp_path):
    """``--record`` to the path of an open trace writes a new file and renames it there: the
    open one keeps the file it opened (its bytes stay while they are open), whole."""
    path = trace_file(tmp_path)
    done = run("""
        import sys
        from lmscope.engine.mapped_rows import read_ahead
        from lmscope.engine.trace_reader import Trace
        from lmscope.testing import make_session, write_trace

        trace = Trace(sys.argv[1])
        write_trace(sys.argv[1], make_session("llama", steps=2))
        print(len(trace), [trace.step_data(i)["step"] for i in range(len(trace))],
              float(read_ahead(trace.step(5).attention.probs[0, 0, 0]).sum()) > 0, len(Trace(sys.argv[1])))
    """, path)
    assert done.stdout.split("\n")[0] == "6 [0, 1, 2, 3, 4, 5] True 2", done.stderr


OPEN = """
    import os, sys
    import lmscope.cli, lmscope.headless, lmscope.tui.screenshot

    def truncating(function):
        def call(*args, **kwargs):  # the trace is open and checked; its steps are not read yet
            os.truncate(sys.argv[1], 100)
            return function(*args, **kwargs)
        return call

    lmscope.headless.print_trace = truncating(lmscope.headless.print_trace)
    lmscope.tui.screenshot.render_svg = truncating(lmscope.tui.screenshot.render_svg)
    sys.exit(lmscope.cli.main(["open", *sys.argv[1:]]))
"""


def test_open_of_a_trace_truncated_while_open_is_one_line_and_exit_2(tmp_path):
    """What reads rows ends with the line; ``--json`` and ``--headless`` print every step, from
    the JSON the trace read and checked as it opened. Before: SIGBUS, each of them."""
    path = trace_file(tmp_path)
    whole = path.read_bytes()
    for flags in (["--json", "--attention"], ["--svg", "shot.svg"]):
        path.write_bytes(whole)
        done = run(OPEN, path, *flags, cwd=tmp_path)
        assert done.returncode == 2, (flags, done.stderr)
        assert done.stderr.startswith("lmscope: error: ") and done.stderr.count("\n") == 1, (flags, done.stderr)
        assert SHRUNK in done.stderr, (flags, done.stderr)
    assert not (tmp_path / "shot.svg").exists()
    for flags in (["--json"], ["--headless"]):
        path.write_bytes(whole)
        printed = run("import sys, lmscope.cli; sys.exit(lmscope.cli.main(['open', *sys.argv[1:]]))", path, *flags)
        done = run(OPEN, path, *flags, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "" and done.stdout == printed.stdout, done.stderr
        assert len(printed.stdout.splitlines()) >= 6


TUI = """
    import asyncio, os, sys
    from lmscope.engine.recording import ReplayEngine
    from lmscope.engine.trace_reader import Trace
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app

    async def main():
        app = make_app(lambda: ReplayEngine(Trace(sys.argv[1])), theme="textual-dark")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until_idle(pilot)
            steps = len(app.view.steps)
            os.truncate(sys.argv[1], 100)
            for key in ("]", "left", "h", "2", "1"):  # rows of another layer, step, the head mean: unread
                await pilot.press(key)
                await pilot.pause()
            errors = [n.message for n in app._notifications if n.severity == "error"]
            print(app.is_running, steps, len(app.view.steps), app.view.state, len(errors))
            print(errors[0] if errors else "")
            print(app.view.notice)
            await pilot.press("q")
        print("exit", app.return_code)

    asyncio.run(main())
"""


def test_the_replay_tui_says_the_trace_was_truncated_and_stays_open(tmp_path):
    """The replay's panes read the rows of a step, layer or head when they first show them: a
    trace truncated after it was loaded ended the app with SIGBUS at the next such key. Now the
    pane that cannot read its rows says so, as a step that does not read says so (an error
    notification, the status bar's "truncated while open"), and the history stays browsable;
    quitting then exits 2, as the error's one line does elsewhere."""
    path = trace_file(tmp_path)
    done = run(TUI, path)
    state, error, notice, code = done.stdout.splitlines()
    assert state == "True 6 6 error 1", done.stderr
    assert SHRUNK in error and str(path) in error
    assert notice.startswith("replay of s.lmscope (truncated while open), recorded ")
    assert code == "exit 2"  # quit in the error state: as the one line of --svg or --json --attention
