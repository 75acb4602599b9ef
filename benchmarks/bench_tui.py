"""TUI responsiveness on a large history: key-to-frame latency and event-loop stalls.

Setup: a FakeEngine replaying a SmolLM2-sized session (30 layers, 9 heads, 3 kv heads, a 40-token
prompt, attention rows up to ~540 keys). 500 steps are generated through the app's real path
(``c``, then ``p`` at step 500) so the history is preloaded as a user would have it.

1. Key to frame: for ``←``/``→``, ``[``/``]`` and ``{``/``}``, ~100 presses each at 120x40 with
   the attention tab showing. Each sample is the time from handing the key to the app
   (``pilot.press``) to the end of the last frame the compositor produced for it (the screen's
   ``_display`` call), with ``pilot.pause()`` forcing the refresh. It includes handling the key,
   re-rendering the panes and compositing, and the pilot's own round trips to every widget;
   it excludes Textual's 60 fps frame pacing (up to 16.7 ms in a real terminal) and the
   terminal's drawing. ``cpu`` columns: CPU time of the UI thread over the same interval, which
   other processes on a shared machine do not inflate as they do the wall clock.
2. Loop stall: with steps that sleep 200 ms in the worker thread, a ``set_interval(0.01)``
   ticker on the app records the largest gap between ticks, from the key until the step's
   result is shown (so it includes rendering the new step and the Footer's update).

3. RSS growth per step: a second app continues through 700 steps of an already-built recording
   (so the records themselves are not counted); the resident set size is read after step 200 and
   after step 700, with a full collection before each reading. The difference over 500 steps is
   what the TUI itself keeps per step (history view, caches, frozen garbage).

Run: ``.venv/bin/python benchmarks/bench_tui.py``. Last line:
``p95_key_to_frame_ms=X max_loop_stall_ms=Y rss_kib_per_step=Z`` (targets: 30, 50 and 64).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

from lmscope.testing import FakeEngine, engine_factory, make_session
from lmscope.tui.app import make_app

HISTORY, SIZE, PRESSES, STEP_DELAY_S = 500, (120, 40), 100, 0.2
KEYS = {"←/→": ("left", "right"), "[/]": ("left_square_bracket", "right_square_bracket"),
        "{/}": ("left_curly_bracket", "right_curly_bracket")}


def frame_clock(app) -> list[tuple[float, float]]:
    """Record (wall time, UI-thread CPU time) of every frame the screen hands to the driver."""
    frames: list[tuple[float, float]] = []
    display = app._display

    def timed(screen, renderable):
        frames.append((time.perf_counter(), time.thread_time()))
        return display(screen, renderable)

    app._display = timed
    return frames


async def preload(app, pilot, engine: FakeEngine, gate: threading.Event) -> float:
    """Generate HISTORY steps with ``c``; the gate holds step HISTORY so ``p`` stops there."""
    began = time.perf_counter()
    await pilot.press("c")
    while len(app.view.steps) < HISTORY:
        if app._exception is not None or time.perf_counter() - began > 300:
            raise RuntimeError("preloading stopped") from app._exception
        await pilot.pause(0.05)
    await pilot.press("p")
    gate.set()
    await app.workers.wait_for_complete()
    await pilot.pause()
    return time.perf_counter() - began


async def key_latency(app, pilot, frames: list, pair: tuple[str, str]) -> tuple[list[float], list[float]]:
    """Milliseconds from each key press to the last frame it produced (alternating the pair):
    wall clock, and CPU time of the UI thread (which other processes on the machine do not inflate)."""
    wall, cpu = [], []
    for i in range(PRESSES):
        key = pair[(i // 10) % 2]  # ten one way, ten back: stays mid-history, cycles layers/heads
        frames.clear()
        began, began_cpu = time.perf_counter(), time.thread_time()
        await pilot.press(key)
        await pilot.pause()
        if frames:
            wall.append((frames[-1][0] - began) * 1000)
            cpu.append((frames[-1][1] - began_cpu) * 1000)
    return wall, cpu


async def loop_stall(app, pilot, engine: FakeEngine, steps: int = 5) -> float:
    """Largest gap (ms) between ticks of a 10 ms interval while ``steps`` slow steps run and show."""
    engine.delay_s = STEP_DELAY_S
    ticks: list[float] = []
    timer = app.set_interval(0.01, lambda: ticks.append(time.perf_counter()))
    worst = 0.0
    for _ in range(steps):
        ticks.clear()
        count = len(app.view.steps)
        await pilot.press("n")
        while app.busy or len(app.view.steps) == count:
            await asyncio.sleep(0.005)
        await pilot.pause()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        worst = max([worst, *gaps])
    timer.stop()
    return worst * 1000


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def rss_per_step(warm: int = 200, measured: int = 500) -> float:
    """KiB of RSS the TUI keeps per step, over ``measured`` steps after ``warm`` ones."""
    import gc

    recording = make_session("llama", steps=warm + measured + 5, n_prompt=40, layers=30, heads=9, kv_heads=3,
                             finish="max_new_tokens")
    gate = threading.Event()
    engine = FakeEngine(recording, gate=gate, gate_from=warm)
    app = make_app(engine_factory(engine), theme="textual-dark")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await continue_to(app, pilot, gate, warm)
        gc.collect()
        before = rss_bytes()
        engine.gate_from = warm + measured
        gate.clear()
        await continue_to(app, pilot, gate, warm + measured)
        gc.collect()
        after = rss_bytes()
        steps = len(app.view.steps) - warm
    return (after - before) / 1024 / max(steps, 1)


async def rss_only() -> None:
    """``bench_tui.py --rss``: only the memory figure (the latency part takes minutes)."""
    print(f"RSS growth per step in the TUI: {await rss_per_step():.1f} KiB (target <= 64)")


async def continue_to(app, pilot, gate: threading.Event, steps: int) -> None:
    """``c`` until the history holds ``steps`` steps (the gate holds the next), then ``p``."""
    began = time.perf_counter()
    await pilot.press("c")
    while len(app.view.steps) < steps:
        if app._exception is not None or time.perf_counter() - began > 300:
            raise RuntimeError("continuing stopped") from app._exception
        await pilot.pause(0.05)
    await pilot.press("p")
    gate.set()
    await app.workers.wait_for_complete()
    await pilot.pause()


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def main() -> None:
    """Build the session, preload, measure, print the table and the summary line."""
    built = time.perf_counter()
    recording = make_session("llama", steps=HISTORY + 20, n_prompt=40, layers=30, heads=9, kv_heads=3,
                             finish="max_new_tokens")
    print(f"built {HISTORY + 20} records in {time.perf_counter() - built:.1f} s; "
          f"last row has {recording.steps[HISTORY].attention.probs.shape[-1]} keys")
    gate = threading.Event()
    engine = FakeEngine(recording, gate=gate, gate_from=HISTORY)
    app = make_app(engine_factory(engine), theme="textual-dark")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        print(f"preloaded {HISTORY} steps through the app in {await preload(app, pilot, engine, gate):.1f} s")
        app.action_select(HISTORY // 2)
        await pilot.pause()
        frames = frame_clock(app)
        rows = {name: await key_latency(app, pilot, frames, pair) for name, pair in KEYS.items()}
        stall = await loop_stall(app, pilot, engine)
    print(f"\n{'keys':<8}{'presses':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'cpu p50':>9}{'cpu p95':>9}")
    for name, (samples, cpu) in rows.items():
        print(f"{name:<8}{len(samples):>8}{statistics.median(samples):>9.1f}{percentile(samples, 95):>9.1f}"
              f"{max(samples):>9.1f}{statistics.median(cpu):>9.1f}{percentile(cpu, 95):>9.1f}")
    worst_p95 = max(percentile(samples, 95) for samples, _ in rows.values())
    print(f"\nmax event-loop gap while {STEP_DELAY_S * 1000:.0f} ms steps ran and showed: {stall:.1f} ms")
    rss = await rss_per_step()
    print(f"RSS growth per step in the TUI: {rss:.1f} KiB (target <= 64)")
    print(f"p95_key_to_frame_ms={worst_p95:.1f} max_loop_stall_ms={stall:.1f} rss_kib_per_step={rss:.1f}")


if __name__ == "__main__":
    import sys

    asyncio.run(rss_only() if "--rss" in sys.argv else main())
