"""Opening a recorded session: time to the first frame, memory, and bytes per step.

A 500-step session of SmolLM2's shape (30 layers, 9 heads, 3 key-value heads) at a 2048-token
context is built with lmscope.testing's record builders (the engine's shapes, synthetic values:
running the model for 500 steps at 2k would take half an hour on a 2-core CPU) and recorded in
float32 and float16. Each open runs in its own process: the real app, headless, until its first
frame with the prompt and every step in the history; then RSS is read.

    python benchmarks/bench_replay.py [--steps 500] [--context 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmscope.engine.recording import TraceWriter
from lmscope.testing import make_prompt, make_session, make_step

SHAPE = dict(layers=30, heads=9, kv_heads=3)


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
import resource, sys, time
began = time.perf_counter()
from lmscope.engine.recording import ReplayEngine, Trace
from lmscope.tui.app import make_app
from lmscope.testing import wait_until_idle
engine = ReplayEngine(Trace(sys.argv[1]))
app = make_app(lambda: engine, theme="textual-dark")
async def first_frame(pilot):
    while not app.view.steps:  # the first frame that shows the prompt and recorded steps
        await pilot.pause(0.005)
    await pilot.pause()
    first = time.perf_counter() - began
    await wait_until_idle(pilot)
    await pilot.pause()
    seconds = time.perf_counter() - began
    rss = int(open("/proc/self/statm").read().split()[1]) * 4096
    print(f"{first} {seconds} {rss} {len(app.view.steps)} {'torch' in sys.modules}")
    app.exit()
app.run(headless=True, size=(120, 40), auto_pilot=first_frame)
"""


def open_once(path: Path) -> tuple[float, float, int, int, bool]:
    out = subprocess.run([sys.executable, "-c", OPEN, str(path)], capture_output=True, text=True, check=True)
    first, seconds, rss, steps, torch = out.stdout.split()
    return float(first), float(seconds), int(rss), int(steps), torch == "True"


IMPORT = "import time; began = time.perf_counter(); import lmscope.tui.app; print(time.perf_counter() - began)"


def import_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        print(f"{args.steps} steps, SmolLM2 shape (30 layers, 9 heads), context {args.context}")
        imports = sorted(import_seconds() for _ in range(args.repeats))[args.repeats // 2]
        print(f"importing the app alone (median): {imports:.2f} s")
        print(f"{'rows':<9}{'file':>10}{'per step':>11}{'first frame':>13}{'all steps':>11}{'RSS':>9}  steps")
        for dtype in ("float32", "float16"):
            path = Path(folder) / f"{dtype}.lmscope"
            write(path, args.steps, args.context, dtype)
            runs = sorted(open_once(path) for _ in range(args.repeats))
            first, seconds, rss, steps, torch = runs[len(runs) // 2]
            size = path.stat().st_size
            print(f"{dtype:<9}{size / mib:>7.0f}MiB{size / args.steps / 1024:>8.0f}KiB{first:>11.2f} s{seconds:>9.2f} s"
                  f"{rss / mib:>6.0f}MiB  {steps}{'  (torch imported!)' if torch else ''}")
            if dtype == "float32":
                result = (first, seconds, rss, size / args.steps)
    first, seconds, rss, per_step = result
    print(f"open_first_frame_s={first:.2f} open_all_steps_s={seconds:.2f} open_rss_mib={rss / mib:.0f} "
          f"bytes_per_step={per_step:.0f}")


if __name__ == "__main__":
    main()
