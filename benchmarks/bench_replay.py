"""Opening a recorded session: time to the first frame, memory, and bytes per step.

A 500-step session of SmolLM2's shape (30 layers, 9 heads, 3 key-value heads) at a 2048-token
context is built with lmscope.testing's record builders (the engine's shapes, synthetic values:
running the model for 500 steps at 2k would take half an hour on a 2-core CPU) and recorded in
float32 and float16. Each open is the real ``lmscope open FILE`` command in its own process
(``lmscope.cli.main``, typer included), with the app run headless at 120x40 instead of on the
terminal. The first frame is the first whole screen the app hands to the terminal
(``App._display``) with recorded steps in it: the prompt, the first steps in every pane, the
footer's keys; the history then fills in batches, and "all steps" is the first frame with every
recorded step in it. RSS is read once the app is idle. Times are from the launch of the
process (the interpreter's start included); CPU is the process's CPU time until the first frame
(both threads; less sensitive to other jobs on the machine than the wall clock). A warm open
finds the file in the operating system's page cache (just written, or just opened); a cold one
(Linux only) is opened after the file was dropped from it, as a session recorded last week is.

    python benchmarks/bench_replay.py [--steps 500] [--context 2048] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmscope.engine.trace_writer import TraceWriter
from lmscope.testing import make_prompt, make_session, make_step

SHAPE = dict(layers=30, heads=9, kv_heads=3)
COLD = hasattr(os, "posix_fadvise")
"""Cold opens need the page cache to be told to drop a file (Linux)."""


def write(path: Path, steps: int, context: int, dtype: str) -> None:
    prompt = make_prompt("llama", n_tokens=context, keep_rows=16, **SHAPE)
    session = make_session("llama", steps=2, **SHAPE)
    writer = TraceWriter(path, dtype)
    writer.meta(session.info, {})
    writer.prompt(prompt)
    previous = ()
    for index in range(steps):
        record = make_step(index, " Paris", prompt=prompt, previous=previous[-4:], **SHAPE)
        writer.step(record)
        previous += (record,)
    writer.close()


OPEN = """
import asyncio, sys, time
import lmscope.cli

shown, every_step = {}, []

def run_headless(app):  # instead of the terminal; the app was imported by the command, as it is there
    from lmscope.testing import wait_until_idle
    from lmscope.tui.widgets.footer import DebuggerFooter

    display_frame = app._display

    def display(screen, renderable):  # where a terminal app writes each frame (headless: skipped)
        if renderable is not None and app.view.steps and screen.query(DebuggerFooter):  # a whole screen, with steps
            shown.setdefault("first", (time.time(), time.process_time()))
            if len(app.view.steps) == len(app.engine.trace) and "all" not in shown:
                shown["all"] = time.time()
                every_step[0].set()
        display_frame(screen, renderable)

    async def all_steps(pilot):  # waits without polling: a Pilot.pause() walks the DOM and forces a frame
        every_step.append(asyncio.Event())
        await every_step[0].wait()
        await wait_until_idle(pilot)
        rss = int(open("/proc/self/statm").read().split()[1]) * 4096
        (first, cpu), done = shown["first"], shown["all"]
        print(f"{first} {cpu} {done} {rss} {len(app.view.steps)} {'torch' in sys.modules}")
        app.exit()

    app._display = display
    app.run(headless=True, size=(120, 40), auto_pilot=all_steps)

lmscope.cli._run_app = run_headless
sys.exit(lmscope.cli.main(["open", sys.argv[1]]))
"""


def drop_from_page_cache(path: Path) -> None:
    """Evict the file's pages, so the next open reads it from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def open_once(path: Path, cold: bool = False) -> dict:
    """One ``lmscope open`` in a fresh process: seconds from launch, CPU seconds, RSS, steps shown."""
    if cold:
        drop_from_page_cache(path)
    launched = time.time()
    out = subprocess.run([sys.executable, "-c", OPEN, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    first, cpu, done, rss, steps, torch = out.stdout.split()
    return {"first": float(first) - launched, "cpu": float(cpu), "all": float(done) - launched, "rss": int(rss),
            "steps": int(steps), "torch": torch == "True"}


IMPORT = "import time; began = time.perf_counter(); import lmscope.tui.app; print(time.perf_counter() - began)"


def import_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True)
    return float(out.stdout)


def spread(values: list[float]) -> str:
    """``median [min-max]``."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        print(f"{args.steps} steps, SmolLM2 shape (30 layers, 9 heads), context {args.context}; "
              f"median [min-max] of {args.repeats} opens, seconds from launch")
        print(f"importing the app alone: {spread([import_seconds() for _ in range(args.repeats)])} s")
        paths = {}
        for dtype in ("float32", "float16"):
            paths[dtype] = Path(folder) / f"{dtype}.lmscope"
            write(paths[dtype], args.steps, args.context, dtype)
        kinds = [(dtype, cold) for dtype in paths for cold in (False, True) if not cold or COLD]
        runs = {kind: [] for kind in kinds}
        for _ in range(args.repeats):  # interleaved, so a busy spell on the machine hits every kind
            for dtype, cold in kinds:
                runs[dtype, cold].append(open_once(paths[dtype], cold))
        print(f"{'rows':<9}{'file':>9}{'per step':>10}  {'open':<6}{'first frame':<18}{'CPU':<18}{'all steps':<18}"
              f"{'RSS':>7}  steps")
        for (dtype, cold), done in runs.items():
            size = paths[dtype].stat().st_size
            rss = statistics.median(run["rss"] for run in done)
            print(f"{dtype:<9}{size / mib:>6.0f}MiB{size / args.steps / 1024:>7.0f}KiB  {'cold' if cold else 'warm':<6}"
                  f"{spread([r['first'] for r in done]):<18}{spread([r['cpu'] for r in done]):<18}"
                  f"{spread([r['all'] for r in done]):<18}{rss / mib:>4.0f}MiB  {done[0]['steps']}"
                  f"{'  (torch imported!)' if any(r['torch'] for r in done) else ''}")
        figures = {"warm": runs["float32", False]} | ({"cold": runs["float32", True]} if COLD else {})
        print(" ".join(f"open_{name}_first_frame_s={statistics.median(r['first'] for r in done):.2f} "
                       f"open_{name}_first_frame_max_s={max(r['first'] for r in done):.2f}"
                       for name, done in figures.items()),
              f"open_all_steps_s={statistics.median(r['all'] for r in runs['float32', False]):.2f} "
              f"open_rss_mib={max(r['rss'] for done in runs.values() for r in done) / mib:.0f} "
              f"bytes_per_step={paths['float32'].stat().st_size / args.steps:.0f}")


if __name__ == "__main__":
    main()
