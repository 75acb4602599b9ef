"""Fast steps: generate() against lmscope's Stepper against the TUI's continue, tokens per second.

For each model, in one process and alternating rounds: ``model.generate`` (plain SDPA), the bare
Stepper loop with full capture (every stage's top-k, attention rows, cache stats, tensors),
stepping as the TUI's continue without breakpoints does (the attention rows and records wait
and are completed at each hand-over, and decode steps capture no layers, which are replayed when
asked: ``continue_loop.py``), and the real app (``make_app``, headless) pressing ``c`` on the
same Stepper until generation ends.
Each run makes exactly ``--tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``). Prints the
table and, last, ``stepper_ratio=... tui_ratio=...``: the worst of the rows of Stepper/generate
and TUI/Stepper (best round of each), then ``paired_stepper_ratio=... paired_tui_ratio=...``: the
worst of the rows' medians of each round's own ratios (a round runs them back to back, so
its ratios do not pair a fast minute of one with a slow minute of another; on a noisy machine
these are the figures to compare across runs).

    python benchmarks/bench_fast_steps.py [--rounds 3] [--device cpu] [--dtype float32]

The TUI's figure runs from the key to the frame that shows the finished run (stamped as that frame
is drawn, before the app's memory settles), and TUI/Stepper sets it against the bare loop from
``start()``'s return (the app ran ``start()`` when it loaded); TUI/paused sets it against the
bare loop run after a sleep as long as the app's pause between ``start()`` and its key (a first
step after a pause is slower without the app too: ``--timeline``), printed before the last line
as ``tui_after_pause_ratio=... paired_tui_after_pause_ratio=...``; Stepper/generate times the bare
loop from ``start()``, as ``generate()`` prefills too (the table's "started" column is the bare
loop after ``start()``). The stepping
column compares the rates between the first and the last step's end, inside the continue and in
the bare loop, without the fixed costs (the start, the first step, the first and last frames,
and Textual's 60 frames a second, which a short continue cannot hide).

``--threads`` steps the bare loop of the demo T5 on the engine thread alone, then on a new
thread and the engine thread in turn (why every engine call runs on one thread).

``--ops`` counts, per decode step, the aten operations (torch's dispatcher: kernels and views)
and the torch calls from Python of generate() (as it ships, and under inference mode, as the
Stepper runs) and of each capture: figures no load can move.

``--rows-later`` alternates the bare loop with each step making its own attention rows, layer
capture and record and the loop as a continue makes them (waiting for the hand-over), ``--rounds`` times,
and prints the medians' and the bests' ratios.

``--timeline`` times one short T5 continue in the app, ``--rounds`` times: from the key to the
first step, the first step, the other steps, and from the last step to the frame that shows it;
then the bare loop's first step straight after ``start()`` and after half a second's idle
(alternated, medians): what a first step after a pause costs without the app.

``--ui-cpu`` times the UI thread's CPU in one short T5 continue, ``--rounds`` times (medians): in
the frame after the key, in the frame that shows the end, and from the key to that frame. The
engine thread waits for the interpreter while the UI thread runs Python, so this is what the
app's drawing takes from the continue, in a figure the machine's load hardly moves. Then, in the
same app, the panes that frame repainted are repainted with nothing new to draw
(``ui_repaint_cached_ms``): Textual's own share of such a frame.

``--keys`` presses history, layer and head keys during a long continue of the demo T5 and
reports key to frame (p50, p95), then presses ``p`` and counts the steps that ended after it.

``--breakdown`` measures instead where the Stepper's time goes: on each model, ``generate()`` on
the Stepper's own model (also under ``torch.inference_mode``, as the Stepper runs) against
Steppers that capture more and more (nothing; attention rows; the lens' residual stream; the
TUI's full layer capture), each stepping as a continue (whose decode steps capture no layers:
the last two rows show that a continue pays nothing for the capture mode), and the full capture
again with every step making its own attention rows and layer capture (no waiting),
alternating, best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # before transformers reads it

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from lmscope.engine import engine_thread, models
from lmscope.engine.session import SessionOptions, model_source
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from bench_args import positive_int
from continue_loop import continue_to_end, run_to_end, steps_then_complete

T5_PROMPT = "translate English to German: the woman laughs because the man opens the door"
CASES = (
    ("demo T5, 64 tokens", "t5", T5_PROMPT, 64),
    # A 64-token continue lasts 0.4 s on a CPU, so a fixed cost (the last frame, ~0.1 s) weighs
    # like a per-step one; 256 tokens show the steady state.
    ("demo T5, 256 tokens", "t5", T5_PROMPT, 256),
    ("SmolLM2, short prompt", "llama", "The capital of France is", 24),
)


def tokens_per_s(run, tokens: int) -> float:
    """``run()`` on the engine thread, as the TUI runs every engine call (``engine/engine_thread.py``):
    torch gives each thread that calls it a parallel team of its own, and a second team slows
    every step, so the three runs compared here must all step on the same thread."""
    began = time.perf_counter()
    engine_thread.run(run)
    return tokens / (time.perf_counter() - began)


def generate_run(plain, ids, settings):
    return lambda: plain.generate(ids, **settings.config_kwargs())


def in_inference_mode(run):
    def run_in_inference_mode():
        with torch.inference_mode():
            run()
    return run_in_inference_mode


def stepper_run(stepper: Stepper):
    """The bare loop, stepping as the TUI's continue does (``continue_loop.run_to_end``: the
    attention rows and records wait and are completed at each hand-over, and no layer is
    captured), without the app."""
    return lambda: run_to_end(stepper)


def bare_loop_seconds(stepper: Stepper, pause: float = 0.0) -> tuple[float, float]:
    """The bare loop (:func:`stepper_run`) on the engine thread: seconds from ``start()`` to the
    end, which ``generate()`` is measured against (it prefills too), and from ``start()``'s
    return (or the end of a ``pause`` after it) to the end, which the app's continue is measured
    against (the app's load ran ``start()`` before the key).

    ``pause``: seconds of sleep between ``start()`` and the steps, the pause the app had before
    its key. A first step after a pause is slower without the app too (the caches and cores
    are cold: ``--timeline``), and the app's continue always comes after one."""
    def run() -> tuple[float, float]:
        began = time.perf_counter()
        stepper.start()
        if pause:
            time.sleep(pause)
        started = time.perf_counter()
        continue_to_end(stepper)
        ended = time.perf_counter()
        return ended - began, ended - started
    return engine_thread.run(run)


def made_in_each_step(stepper: Stepper):
    """The bare loop as before anything could wait: every step makes its attention rows, layer
    capture and record itself."""
    def run():
        stepper.start()
        while not stepper.finished:
            stepper.step()
    return run


def continue_in_app(stepper: Stepper, clock=time.perf_counter) -> dict[str, float]:
    """The app on this Stepper: load (start), then ``c`` to the end. Returns ``clock()`` read at
    ``"started"`` (the load's ``PromptEncoded`` arrives: ``start()`` has returned), at ``"key"``,
    at ``"key's frame"`` (the first frame handed to the driver after it), at ``"stopped"``
    (``RunStopped`` arrives, before the app handles it) and at ``"frame"`` (the frame that shows
    the finished run)."""
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app
    from lmscope.tui.messages import PromptEncoded, RunStopped

    async def drive() -> dict[str, float]:
        shown = asyncio.Event()
        stamps: dict[str, float] = {}

        def on_frame() -> None:
            # Stamped here, not after ``shown.wait()``: that resumes only when the callbacks
            # queued after this one have run, the app's memory settling (a gc.collect) among them.
            stamps["frame"] = clock()
            shown.set()

        def hook(message) -> None:
            if isinstance(message, PromptEncoded):  # start() has returned, on the engine thread
                stamps["started"] = clock()
            if isinstance(message, RunStopped):  # called before the app handles it
                stamps["stopped"] = clock()
                app.call_after_refresh(on_frame)  # after the frame that handling makes

        app = make_app(lambda: stepper, theme="textual-dark")
        async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
            display = app._display

            def displayed(screen, update):  # where a terminal app writes each frame
                result = display(screen, update)
                if "key" in stamps:
                    stamps.setdefault("key's frame", clock())
                return result

            app._display = displayed
            await wait_until_idle(pilot)
            # The load's after-frame work (timing the prompt's frame, then settling memory: a full
            # collection of ~240 ms) can still be queued here; callbacks run in order, so once
            # this one has run, the key comes to an app at rest, as a person's would.
            settled = asyncio.Event()
            app.call_after_refresh(settled.set)
            await settled.wait()
            stamps["key"] = clock()
            # A key as the terminal sends it. Not pilot.press: that polls every 20 ms until the
            # whole process is idle, i.e. until the continue has ended, and adds 20-45 ms to it.
            app.simulate_key("c")
            await shown.wait()
            await app.workers.wait_for_complete()
            await wait_until_idle(pilot)
            assert app.view.state == "finished" and len(app.view.steps) == stepper.settings.max_new_tokens
            return stamps

    return asyncio.run(drive())


def tui_run(stepper: Stepper):
    """The app's ``c`` to the end (:func:`continue_in_app`): seconds from the key to the frame,
    and the pause from ``start()``'s return (in the load) to the key."""
    def run() -> tuple[float, float]:
        stamps = continue_in_app(stepper)
        return stamps["frame"] - stamps["key"], stamps["key"] - stamps["started"]
    return run


def setup(family: str, prompt: str, tokens: int, args):
    """The Stepper, a plain copy of its model with SDPA, the prompt ids and the settings."""
    source = model_source(SessionOptions(family=family, prompt=prompt))
    loaded = models.load(source, family, args.device, args.dtype)
    auto = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    plain = auto.from_pretrained(source, attn_implementation="sdpa", local_files_only=True,
                                 dtype=loaded.model.dtype).to(args.device).eval()
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens)
    ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids.to(args.device)
    return Stepper(loaded, prompt, settings), plain, ids, settings


class StepEnds:
    """Notes when each of a Stepper's steps begins and ends (the benchmark owns the Stepper), so a
    run's stepping rate can be read without its fixed costs: the start, the first step, the first
    and last frames of a continue."""

    def __init__(self, stepper: Stepper):
        self.starts: list[float] = []
        self.ends: list[float] = []
        step = stepper.step

        def timed(*args, **kwargs):
            self.starts.append(time.perf_counter())
            record = step(*args, **kwargs)
            self.ends.append(time.perf_counter())
            return record

        stepper.step = timed

    def rate(self) -> float:
        """Steps per second from the first step's end to the last's; then forgets them."""
        ends = self.ends
        self.forget()
        return (len(ends) - 1) / (ends[-1] - ends[0])

    def forget(self) -> None:
        self.starts, self.ends = [], []


def measure(family: str, prompt: str, tokens: int, args) -> tuple[tuple[float, ...], tuple[float, float, float]]:
    """``args.rounds`` rounds of generate(), the bare loop, the TUI's continue and the bare loop
    after the app's pause, back to back.

    Returns:
        ``(best, paired)``: the best of the rounds of generate(), the bare loop from ``start()``,
        the TUI's continue (key to frame), the bare loop's and the continue's stepping rates (see
        :class:`StepEnds`), the bare loop from ``start()``'s return and the bare loop after the
        same pause as the app had between ``start()`` and its key (tokens/s each); and the
        medians over the rounds of each round's own Stepper/generate(), TUI/Stepper (the
        continue against the bare loop after ``start()``: both step a started Stepper) and TUI
        against the bare loop after the pause. A round's runs follow each other within a second
        or two, so its ratios see the same machine; the best of each taken from different rounds
        can pair a fast hour of one with a slow hour of the other.
    """
    stepper, plain, ids, settings = engine_thread.run(setup, family, prompt, tokens, args)
    ends = StepEnds(stepper)
    best = [0.0] * 7
    stepper_ratios, tui_ratios, paused_ratios = [], [], []
    for index in range(args.rounds):
        # generate() and the bare loop each go first in every other round: the second of two
        # runs back to back can be slower for being second (bench_engine.in_turn)
        if index % 2 == 0:
            generate = tokens_per_s(generate_run(plain, ids, settings), tokens)
        whole, after_start = bare_loop_seconds(stepper)
        stepping = ends.rate()
        if index % 2 == 1:
            generate = tokens_per_s(generate_run(plain, ids, settings), tokens)
        seconds, pause = tui_run(stepper)()
        tui, tui_stepping = tokens / seconds, ends.rate()
        paused_rate = tokens / bare_loop_seconds(stepper, pause)[1]
        ends.forget()
        stepper_rate, started_rate = tokens / whole, tokens / after_start
        rates = [generate, stepper_rate, tui, stepping, tui_stepping, started_rate, paused_rate]
        best = [max(old, new) for old, new in zip(best, rates)]
        stepper_ratios.append(stepper_rate / generate)
        tui_ratios.append(tui / started_rate)
        paused_ratios.append(tui / paused_rate)
    return tuple(best), tuple(statistics.median(ratios) for ratios in (stepper_ratios, tui_ratios, paused_ratios))


CAPTURES = (
    ("no capture", dict(capture_attention=False, layer_capture="off")),
    ("+ attention rows", dict(capture_attention=True, layer_capture="off")),
    ("+ residual stream", dict(capture_attention=True, layer_capture="residual")),
    ("+ full layer capture", dict(capture_attention=True, layer_capture="full")),
)


def breakdown(family: str, prompt: str, tokens: int, args) -> list[tuple[str, float]]:
    """tokens/s of generate() on the Stepper's model, then of a Stepper per capture in CAPTURES."""
    stepper, _plain, ids, settings = engine_thread.run(setup, family, prompt, tokens, args)
    loaded = models.LoadedModel(stepper.model, stepper.tokenizer, family, stepper.info.model)
    runs = [("generate()", generate_run(loaded.model, ids, settings)),
            # The Stepper runs under torch.inference_mode (engine/stepper.py); generate() under its
            # own no_grad. This row shows what inference mode alone gives generate() itself.
            ("generate() in inference mode", in_inference_mode(generate_run(loaded.model, ids, settings)))]
    runs += [(name, stepper_run(Stepper(loaded, prompt, settings, **kwargs))) for name, kwargs in CAPTURES]
    runs.append(("full, made in each step", made_in_each_step(Stepper(loaded, prompt, settings))))
    best = dict.fromkeys([name for name, _ in runs], 0.0)
    for _ in range(args.rounds):
        for name, run in runs:
            best[name] = max(best[name], tokens_per_s(run, tokens))
    return list(best.items())


KEY_PAIRS = (("left", "right"), ("left_square_bracket", "right_square_bracket"),
             ("left_curly_bracket", "right_curly_bracket"))
"""History, layer and head keys: ten presses one way, ten back, as a person browses."""


def keys_during_continue(stepper: Stepper, ends: StepEnds, presses: int) -> tuple[list[float], int, float]:
    """Key to frame while ``c`` runs, then ``p``.

    Returns:
        ``(latencies_ms, steps_after_p, p_to_stop_ms)``: for each browsing key, the milliseconds
        from sending it (as a terminal does) to the next frame the screen hands to the driver
        (Textual's 60 frames a second included, the terminal's drawing not); how many steps
        ended after ``p`` was sent; and how long the continue took to stop after it.
    """
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app

    async def drive() -> tuple[list[float], int, float]:
        app = make_app(lambda: stepper, theme="textual-dark")
        drawn = asyncio.Event()
        async with app.run_test(size=(120, 40)) as pilot:
            display = app._display
            app._display = lambda screen, update: (drawn.set(), display(screen, update))[1]
            await wait_until_idle(pilot)
            app.simulate_key("c")
            while len(app.view.steps) < 50:
                await asyncio.sleep(0.01)
            latencies = []
            for i in range(presses):
                drawn.clear()
                began = time.perf_counter()
                app.simulate_key(KEY_PAIRS[(i // 20) % 3][(i // 10) % 2])
                await asyncio.wait_for(drawn.wait(), 5)
                latencies.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(0.03)  # a person's pace, and time for a paced frame to come
            assert app.view.state == "running", "the continue ended before the keys did: raise --key-tokens"
            ends.forget()
            began = time.perf_counter()
            app.simulate_key("p")
            await app.workers.wait_for_complete()
            stopped = time.perf_counter()
            after = sum(end > began for end in ends.ends)
            await wait_until_idle(pilot)
            assert app.view.state == "paused"
            return latencies, after, (stopped - began) * 1000

    return asyncio.run(drive())


def main_keys(args) -> None:
    """Keys during a long continue of the demo T5 (its steps take about a millisecond here)."""
    stepper, *_ = engine_thread.run(setup, "t5", T5_PROMPT, args.key_tokens, args)
    ends = StepEnds(stepper)
    latencies, after, stop_ms = keys_during_continue(stepper, ends, args.presses)
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95) - 1]
    print(f"keys during a continue of the demo T5 ({len(latencies)} presses of ←/→, [/], {{/}}): "
          f"key to frame p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"p: {after} step(s) ended after it, stopped in {stop_ms:.1f} ms")
    print(f"p95_key_to_frame_during_continue_ms={p95:.1f} steps_after_pause={after}")


def ops_per_step(run, steps: int) -> tuple[float, float]:
    """``(aten operations, torch calls)`` per step of ``run()``, which makes ``steps`` steps.

    aten operations are what torch's dispatcher runs (kernels and views: on a GPU the kernels
    are launches); torch calls are every tensor function, method and attribute Python asks
    for, each a round trip through torch's Python layer. Neither depends on the machine's load.
    """
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Aten(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Aten.count += 1
            return func(*args, **(kwargs or {}))

    class Calls(TorchFunctionMode):
        count = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Calls.count += 1
            return func(*args, **(kwargs or {}))

    with Aten(), Calls():
        run()
    return Aten.count / steps, Calls.count / steps


def main_ops(args) -> None:
    """Operations per decode step: generate() and each capture of CAPTURES, both models."""
    for name, family, prompt, tokens in (CASES[0], CASES[2]):
        stepper, _plain, ids, settings = engine_thread.run(setup, family, prompt, tokens, args)
        loaded = models.LoadedModel(stepper.model, stepper.tokenizer, family, stepper.info.model)
        # generate() for 11 tokens less generate() for 1: ten decode steps, without the setup.
        line = []
        # The Stepper runs under inference mode, where the dispatcher sees a composite such as
        # linear as one operation (under no_grad, as generate() ships, it sees t, mm and views):
        # the Stepper's counts compare with the second generate() figure.
        for label, mode in (("generate()", contextlib.nullcontext), ("in inference mode", torch.inference_mode)):
            def generate(n: int, mode=mode):
                with mode():
                    loaded.model.generate(ids, max_new_tokens=n, min_new_tokens=n)
            counts = [engine_thread.run(ops_per_step, lambda n=n: generate(n), 1) for n in (11, 1)]
            line.append(f"{label} {(counts[0][0] - counts[1][0]) / 10:.0f} / {(counts[0][1] - counts[1][1]) / 10:.0f}")
        for capture, kwargs in CAPTURES:
            captured = Stepper(loaded, prompt, settings, **kwargs)
            engine_thread.run(lambda: (captured.start(), captured.step(), captured.step()))
            aten, calls = engine_thread.run(ops_per_step, lambda: [captured.step() for _ in range(10)], 10)
            line.append(f"{capture} {aten:.0f} / {calls:.0f}")
        # As a continue steps: the rows of ten steps wait and are completed together, no layer is captured.
        aten, calls = engine_thread.run(ops_per_step, lambda: steps_then_complete(captured, 10), 10)
        line.append(f"+ full, completed every 10 steps {aten:.0f} / {calls:.0f}")
        print(f"{name.split(',')[0]} (aten operations / torch calls per decode step): " + ", ".join(line))


def main_threads(args) -> None:
    """The bare loop of the demo T5 on the engine thread alone, then on a second thread as
    well, in turn: what a second calling thread (a second OpenMP team) costs both of them."""
    import threading

    stepper, *_ = engine_thread.run(setup, "t5", T5_PROMPT, 256, args)
    run = stepper_run(stepper)

    def on_new_thread() -> float:
        seconds = []
        thread = threading.Thread(target=lambda: seconds.append(timed(run)))
        thread.start()
        thread.join()
        return seconds[0]

    def timed(call) -> float:
        began = time.perf_counter()
        call()
        return time.perf_counter() - began

    alone = [engine_thread.run(timed, run) for _ in range(args.rounds)]
    after = {"engine thread": [], "a second thread": []}
    for _ in range(args.rounds):
        after["a second thread"].append(on_new_thread())
        after["engine thread"].append(engine_thread.run(timed, run))
    print(f"demo T5, 256 tokens, bare loop, best of {args.rounds}: engine thread alone {256 / min(alone):.0f}/s; "
          + ", ".join(f"then {name} {256 / min(seconds):.0f}/s" for name, seconds in after.items()))


def main_breakdown(args) -> None:
    for name, family, prompt, tokens in CASES:
        rates = breakdown(family, prompt, tokens, args)
        generate = rates[0][1]
        print(f"{name}: " + ", ".join(f"{run} {rate:.1f}/s ({rate / generate:.2f}x)" for run, rate in rates))


def continue_timeline(stepper: Stepper, steps: StepEnds) -> dict[str, float]:
    """One ``c`` of the app on ``stepper`` (:func:`continue_in_app`), in seconds: from the key to
    the first step's start, the first step, the other steps, and from the last step's end to the
    frame showing it."""
    steps.forget()
    stamps = continue_in_app(stepper)
    began, frame = stamps["key"], stamps["frame"]
    starts, ends = steps.starts, steps.ends
    return {"key to first step": starts[0] - began, "first step": ends[0] - starts[0],
            "other steps": ends[-1] - ends[0], "last step to frame": frame - ends[-1]}


IDLE_S = 0.5
"""The pause before a bare loop's first step in ``--timeline``: about a person's pause before a key."""


def main_timeline(args) -> None:
    """Where a short T5 continue's time goes, ``--rounds`` times (``--switch-interval``: Python's
    interpreter-lock switch interval, 5 ms by default)."""
    import sys

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    stepper, *_ = engine_thread.run(setup, "t5", T5_PROMPT, 64, args)
    steps = StepEnds(stepper)
    print(f"demo T5, 64 tokens, c in the app (ms), switch interval {sys.getswitchinterval() * 1e3:g} ms")
    for _ in range(args.rounds):
        parts = continue_timeline(stepper, steps)
        print("  " + ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in parts.items()))
    # The app's continue comes after the load and the memory settling: its first step meets a
    # cold machine (caches, cores), which the bare loop, straight after start(), does not.
    first = {idle: [] for idle in (0.0, IDLE_S)}
    for _ in range(args.rounds):
        for idle in first:
            first[idle].append(bare_first_step(stepper, steps, idle))
    print(f"  bare loop's first step, medians of {args.rounds} (ms): straight after start() "
          f"{statistics.median(first[0.0]) * 1e3:.1f}, "
          f"after {IDLE_S:g} s idle {statistics.median(first[IDLE_S]) * 1e3:.1f}")


def bare_first_step(stepper: Stepper, steps: StepEnds, idle_s: float) -> float:
    """Seconds of the bare loop's first step when it starts ``idle_s`` after ``start()``."""
    steps.forget()
    bare_loop_seconds(stepper, idle_s)
    return steps.ends[0] - steps.starts[0]


def ui_cpu_of_continue(stepper: Stepper) -> dict[str, float]:
    """One ``c`` of the app on ``stepper`` to its end (:func:`continue_in_app` on the UI thread's
    CPU clock): milliseconds of the UI thread's CPU from the key to the first frame after it is
    handed to the driver, from ``RunStopped`` to the frame that shows it, and from the key to
    that frame. While the UI thread runs Python the engine thread waits for the interpreter, so
    this is time the continue's steps lose; CPU time is a figure the machine's other load
    hardly moves, unlike the continue's wall time."""
    stamps = continue_in_app(stepper, clock=time.thread_time)
    return {"key's frame": (stamps["key's frame"] - stamps["key"]) * 1e3,
            "last frame": (stamps["frame"] - stamps["stopped"]) * 1e3,
            "key to last frame": (stamps["frame"] - stamps["key"]) * 1e3}


REPAINTED = "#status, #tokens, #stages, #attention-plot, DebuggerFooter"
"""The panes the last frame of a continue repaints (the View's new step and state)."""


def ui_cpu_of_repaints(stepper: Stepper, repaints: int) -> list[float]:
    """After one ``c`` to the end, the panes the last frame repainted (:data:`REPAINTED`) are
    asked to repaint ``repaints`` times, showing the same: milliseconds of the UI thread's CPU
    from the ask to the frame, each. The panes' pictures are cached (lmscope draws nothing), so
    this is what Textual's compositor takes to put those lines on the screen: the least a frame
    that shows a new step can cost on this machine, however fast the panes draw."""
    from lmscope.testing import wait_until_idle
    from lmscope.tui.app import make_app

    async def drive() -> list[float]:
        app = make_app(lambda: stepper, theme="textual-dark")
        costs = []
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until_idle(pilot)
            app.simulate_key("c")
            await app.workers.wait_for_complete()
            await wait_until_idle(pilot)
            panes = list(app.screen.query(REPAINTED))
            assert len(panes) == 5, panes
            for _ in range(repaints):
                shown, began = asyncio.Event(), time.thread_time()
                for pane in panes:
                    pane.refresh()
                app.call_after_refresh(lambda: (costs.append((time.thread_time() - began) * 1e3), shown.set()))
                await shown.wait()
                await wait_until_idle(pilot)
        return costs

    return asyncio.run(drive())


def main_ui_cpu(args) -> None:
    """The UI thread's CPU time in a 64-token continue of the demo T5, ``--rounds`` times, and in
    repaints of the same panes with nothing new to draw: medians."""
    stepper, *_ = engine_thread.run(setup, "t5", T5_PROMPT, 64, args)
    runs = [ui_cpu_of_continue(stepper) for _ in range(args.rounds)]
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    print(f"demo T5, 64 tokens, c in the app: UI thread CPU ms, medians of {args.rounds}: "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in medians.items()))
    repaint = statistics.median(ui_cpu_of_repaints(stepper, 2 * args.rounds))
    print(f"the same panes repainted with their pictures cached (Textual's share), median of "
          f"{2 * args.rounds}: {repaint:.1f}")
    key_frame, last_frame, whole = medians.values()
    print(f"ui_key_frame_ms={key_frame:.2f} ui_last_frame_ms={last_frame:.2f} ui_continue_ms={whole:.2f} "
          f"ui_repaint_cached_ms={repaint:.2f}")


def main_rows_later(args) -> None:
    """The bare loop with rows and layer captures made in each step against the rows waiting for
    the hand-over and the layers replayed when asked (never, here), both models, alternated ``--rounds`` times: medians and bests of tokens/s,
    and their ratios."""

    for name, family, prompt, tokens in (CASES[0], CASES[1], CASES[2]):
        stepper, *_ = engine_thread.run(setup, family, prompt, tokens, args)
        runs = {"made in each step": made_in_each_step(stepper), "waiting": stepper_run(stepper)}
        rates = {label: [] for label in runs}
        for _ in range(args.rounds):
            for label, run in runs.items():
                rates[label].append(tokens_per_s(run, tokens))
        (_, before), (_, after) = rates.items()
        print(f"{name}: made in each step {statistics.median(before):.1f}/s (best {max(before):.1f}), waiting "
              f"{statistics.median(after):.1f}/s (best {max(after):.1f}): median ratio "
              f"{statistics.median(after) / statistics.median(before):.3f}, best {max(after) / max(before):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--breakdown", action="store_true", help="the Stepper's cost by capture (see above)")
    parser.add_argument("--threads", action="store_true", help="the bare loop on one thread, then on two")
    parser.add_argument("--ops", action="store_true", help="aten operations and torch calls per decode step")
    parser.add_argument("--keys", action="store_true", help="key to frame during a continue, then p (see above)")
    parser.add_argument("--presses", type=positive_int, default=120)
    parser.add_argument("--key-tokens", type=positive_int, default=20000, help="the continue's length for --keys")
    parser.add_argument("--timeline", action="store_true", help="where a short T5 continue's time goes")
    parser.add_argument("--switch-interval", type=float, help="seconds, for --timeline (sys.setswitchinterval)")
    parser.add_argument("--rows-later", action="store_true", help="rows and layers made in each step against waiting")
    parser.add_argument("--ui-cpu", action="store_true", help="the UI thread's CPU time in a short continue")
    args = parser.parse_args()
    if args.ui_cpu:
        main_ui_cpu(args)
        return
    if args.rows_later:
        main_rows_later(args)
        return
    if args.timeline:
        main_timeline(args)
        return
    if args.keys:
        main_keys(args)
        return
    if args.ops:
        main_ops(args)
        return
    if args.threads:
        main_threads(args)
        return
    if args.breakdown:
        print(f"device {args.device} {args.dtype}, torch threads {torch.get_num_threads()}, best of {args.rounds} rounds")
        main_breakdown(args)
        return
    print(f"device {args.device} {args.dtype}, torch threads {torch.get_num_threads()}, best of {args.rounds} rounds")
    print(f"{'run':<24}{'generate()':>12}{'Stepper':>10}{'started':>10}{'paused':>10}{'TUI c':>10}{'Stepper/gen':>13}"
          f"{'TUI/started':>13}{'TUI/paused':>12}{'stepping, TUI/Stepper':>23}{'paired: Stepper/gen':>21}"
          f"{'TUI/started':>13}{'TUI/paused':>12}")
    stepper_ratios, tui_ratios, paused_ratios, steady_ratios, paired = [], [], [], [], []
    for name, family, prompt, tokens in CASES:
        (generate, stepper, tui, stepper_steps, tui_steps, started, paused), medians = \
            measure(family, prompt, tokens, args)
        stepper_ratios.append(stepper / generate)
        tui_ratios.append(tui / started)
        paused_ratios.append(tui / paused)
        steady_ratios.append(tui_steps / stepper_steps)
        paired.append(medians)
        print(f"{name:<24}{generate:>10.1f}/s{stepper:>8.1f}/s{started:>8.1f}/s{paused:>8.1f}/s{tui:>8.1f}/s"
              f"{stepper / generate:>12.2f}x{tui / started:>12.2f}x{tui / paused:>11.2f}x"
              f"{tui_steps / stepper_steps:>22.2f}x{medians[0]:>20.2f}x{medians[1]:>12.2f}x{medians[2]:>11.2f}x")
    # worst of all rows: the bests' ratios, the continue's stepping rate against the bare loop's,
    # and the medians of the rounds' own ratios
    paired_stepper, paired_tui, paired_paused = (min(column) for column in zip(*paired))
    print(f"tui_after_pause_ratio={min(paused_ratios):.3f} paired_tui_after_pause_ratio={paired_paused:.3f}")
    print(f"stepper_ratio={min(stepper_ratios):.3f} tui_ratio={min(tui_ratios):.3f} "
          f"tui_stepping_ratio={min(steady_ratios):.3f} paired_stepper_ratio={paired_stepper:.3f} "
          f"paired_tui_ratio={paired_tui:.3f}")


if __name__ == "__main__":
    main()
