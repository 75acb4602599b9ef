"""What watching costs: lmscope's instrumented loop against bare SDPA and against generate().

Every ratio compares two things measured in this run, on this machine, on the same model
(the offline default SmolLM2-135M-Instruct unless --model is given). Prints a table and, as
its last line: step_ratio=X inplace_step_ratio=X continue_step_ratio=X prefill_time_ratio=X prefill_mem_ratio=X
run_ratio=X bytes_per_step=N

    python benchmarks/bench_engine.py [--model PATH] [--device cpu|cuda] [--context 2048]
        [--torch-threads N] [--only rng|rows|continue|step] [--unprepared]

``step_ratio`` is the TUI's ``n`` (``continue_loop.single_step``: the step's rows and record are
completed at the call's end, its layers replayed only if the Layers pane asks), and
``inplace_step_ratio`` a ``Stepper.step()`` that makes everything in the step, full layer
capture included. Each single step is followed, untimed, by ``prepare_next``, as the app calls it
once the step is handed over (``--unprepared``: without it). The full run prints each measure's raw
figures (seconds, bytes) to stderr as the measure ends, so a run stopped by a time limit keeps them.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import statistics
import sys
import time
import tracemalloc

import torch
from transformers import AutoModelForCausalLM

from lmscope.engine import models
from lmscope.engine.session import SessionOptions, model_source
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper
from bench_args import positive_int
from continue_loop import continue_segment, run_to_end, single_step
from peak_memory import PeakMemory

GREEDY = GenerationSettings(max_new_tokens=10_000)
SAMPLING = GenerationSettings(max_new_tokens=10_000, do_sample=True, temperature=0.8, top_k=50, top_p=0.95, seed=0)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id or folder (default: the offline default Llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens for prefill and decode steps")
    parser.add_argument("--steps", type=int, default=16, help="decode steps timed per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run-tokens", type=int, default=48, help="tokens for the generate() comparison")
    parser.add_argument("--only", choices=("rng", "rows", "continue", "step"),
                        help="run just this measure (rng: generator state per step; rows: what the kept "
                             "attention rows cost a decode step; continue: a continue's step with its rows "
                             "written behind and written in the hand-over; step: the single decode step)")
    parser.add_argument("--unprepared", action="store_true",
                        help="single steps without prepare_next between them (the row store's next "
                             "pages are then made in the step, as before the app prepared them)")
    parser.add_argument("--torch-threads", type=positive_int, default=None,
                        help="torch's CPU threads (default: torch's own choice); fewer than the cores "
                             "leaves one free, as a GPU's host has")
    parser.add_argument("--only-layers", action="store_true", help="measure layer capture only")
    parser.add_argument("--prefill-child", choices=("sdpa", "capture"), help=argparse.SUPPRESS)
    return parser.parse_args()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def long_prompt(tokenizer, tokens: int) -> str:
    """A natural-text prompt of exactly ``tokens`` tokens (repeated prose, cut by ids)."""
    text = ("The cache grows by one position every step, and each head attends to earlier tokens. " * 400)
    ids = tokenizer(text, add_special_tokens=False).input_ids[: tokens - 1]
    return tokenizer.decode(ids)


class BareLoop:
    """A KV-cached SDPA forward loop on a separate plain model: no recording of any kind.

    With ``processors`` it also applies them and samples, as ``generate`` does per step.
    """

    def __init__(self, model, prompt_ids, processors=None):
        from transformers import DynamicCache

        self.model, self.processors = model, processors
        self.ids = prompt_ids
        self.cache = DynamicCache(config=model.config)
        # transformers 5.24 renamed the forward's past_key_values to cache (the old name warns).
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        with torch.no_grad():
            out = model(prompt_ids, **{self._cache_kwarg: self.cache}, use_cache=True, logits_to_keep=1)
        self._choose(out.logits)

    def step(self) -> None:
        with torch.no_grad():
            out = self.model(self.ids[:, -1:], **{self._cache_kwarg: self.cache}, use_cache=True)
        self._choose(out.logits)

    def _choose(self, logits) -> None:
        scores = logits[:, -1].float()
        if self.processors is None:
            next_id = scores.argmax(-1, keepdim=True)
        else:
            scores = self.processors(self.ids, scores)
            next_id = torch.multinomial(torch.softmax(scores, -1), 1)
        self.ids = torch.cat([self.ids, next_id], dim=-1)
        next_id.item()


def in_turn(items: tuple, index: int) -> tuple:
    """``items`` in the order the ``index``-th round times them: rotated by one a round, so each
    comes first (and last) equally often. The second of two steps timed back to back took
    0.5-1% longer here (a sampling step with and without its generator state kept, timed in
    both orders, read 1.0144, 1.0018 and 1.0192 with the state second, 0.9936 and 1.0036 with
    it first), a bias of the order, not of what is measured."""
    turn = index % len(items)
    return items[turn:] + items[:turn]


def timed(step, device: str) -> float:
    sync(device)
    began = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - began


CONTINUE_BLOCK = 4
"""Steps per hand-over in the continue measure: a continue completes the waiting rows every
``STEPS_MESSAGE_S`` (1/4 s), which at 2k context on the 2-core CPU is 3-4 steps."""
HAND_OVERS = 3
"""Hand-overs per timed continue segment: each one's rows are written while the next one's steps
run, and the segment waits for its last one's, so no write of it runs into a bare block."""


def measure_steps(loaded, bare_model, prompt: str, settings, args, in_continue: bool = False) -> dict[str, float]:
    """Median seconds of a bare step, of the ``n`` key's step and of a step made in place, and
    with ``in_continue`` of a bare step and a step in a continue, at ``--context``.

    ``key``: the TUI's ``n`` (``continue_loop.single_step``: the rows and record wait for the
    call's end, which completes them; the layers are replayed if the Layers pane asks).
    ``in place``: ``Stepper.step()``, its rows, record and full layer capture made in the step
    (a forced token's step in the TUI; ``--headless`` steps so with its lighter layer capture).
    Each has its own Stepper, so all three contexts grow alike. Single steps alternate one by
    one, so whatever else the machine does hits all of them alike, and each of a pair goes
    first in every other round (:func:`in_turn`). The continue's steps alternate in blocks of
    CONTINUE_BLOCK with as many bare steps: the block's rows wait and are completed at its end,
    as at a continue's hand-over, and a step's time is the block's over its steps.
    """
    key_stepper, in_place = Stepper(loaded, prompt, settings), Stepper(loaded, prompt, settings)
    for stepper in (key_stepper, in_place):
        stepper.start()
        stepper.step()
    processors = in_place._state.processors if settings.do_sample else None
    ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids.to(bare_model.device)
    bare = BareLoop(bare_model, ids, processors)
    seconds = {"bare": [], "key": [], "in place": [], "bare block": [], "continue": []}
    singles = (("key", key_stepper, lambda: single_step(key_stepper)), ("in place", in_place, in_place.step))
    for index in range(args.steps * args.rounds):
        for name, stepper, step in singles:
            for which in in_turn(("bare", name), index):
                seconds[which].append(timed(bare.step if which == "bare" else step, args.device))
            if not args.unprepared:
                stepper.prepare_next()  # untimed: the app calls it once the step is handed over
    segment = CONTINUE_BLOCK * HAND_OVERS
    blocks = {"bare block": lambda: [bare.step() for _ in range(segment)],
              "continue": lambda: continue_segment(key_stepper, CONTINUE_BLOCK, HAND_OVERS)}
    rounds = max(4, 2 * args.steps * args.rounds // segment) if in_continue else 0
    for index in range(rounds + rounds % 2):  # as many in each order
        for which in in_turn(tuple(blocks), index):
            seconds[which].append(timed(blocks[which], args.device) / segment)
    return {name: statistics.median(values) for name, values in seconds.items() if values}


def measure_rng(loaded, prompt: str, args) -> tuple[float, float]:
    """Median seconds of a sampling step without and with the generator state kept for rewind.

    Two Steppers on the same model and prompt, stepped alternately; in the first, saving the
    state is switched off, so the difference is what rewinding's bookkeeping costs a step.
    """
    without, with_state = Stepper(loaded, prompt, SAMPLING), Stepper(loaded, prompt, SAMPLING)
    without._rng.save = lambda step: None
    for stepper in (without, with_state):
        stepper.start()
        stepper.step()
    seconds = {without: [], with_state: []}
    for index in range(args.steps * args.rounds):
        for stepper in in_turn((without, with_state), index):
            seconds[stepper].append(timed(stepper.step, args.device))
    return statistics.median(seconds[without]), statistics.median(seconds[with_state])


ROW_PARTS = ("no rows", "rows computed", "rows computed and stored")


def measure_rows(loaded, prompt: str, args) -> dict[str, float]:
    """Median seconds of a decode step (layer capture off) without attention rows, with the
    kept rows computed but dropped, and computed and written to the row store, alternated step
    by step on one Stepper: what the rows themselves cost, apart from the rest of the step."""
    from lmscope.engine import attention

    part = [ROW_PARTS[2]]
    compute, keep = attention.kept_probs, attention.AttentionRecorder.keep
    attention.kept_probs = lambda *a, **k: None if part[0] == ROW_PARTS[0] else compute(*a, **k)
    attention.AttentionRecorder.keep = lambda self, module, probs: (
        keep(self, module, probs) if part[0] == ROW_PARTS[2] else None)
    try:
        stepper = Stepper(loaded, prompt, GREEDY, layer_capture="off")
        stepper.start()
        stepper.step()
        seconds = {name: [] for name in ROW_PARTS}
        for index in range(args.steps * args.rounds):
            for name in in_turn(ROW_PARTS, index):
                part[0] = name
                seconds[name].append(timed(stepper.step, args.device))
    finally:
        attention.kept_probs, attention.AttentionRecorder.keep = compute, keep
    return {name: statistics.median(values) for name, values in seconds.items()}


def measure_continue(loaded, bare_model, prompt: str, args) -> tuple[dict[str, float], bool]:
    """Median seconds of a step in a continue segment (as in :func:`measure_steps`) with the rows
    written behind, as the TUI's continue writes them where that pays, and written in each
    hand-over instead, with bare steps between: what writing behind takes off the step. Also
    whether this machine writes behind (``row_store.writing_behind_pays``, for a hand-over's rows)."""
    from lmscope.engine.row_store import writing_behind_pays

    segment = CONTINUE_BLOCK * HAND_OVERS
    behind, inline = (Stepper(loaded, prompt, GREEDY) for _ in range(2))
    # Whatever the machine would choose:
    behind.writes_behind, inline.writes_behind = True, False
    for stepper in (behind, inline):
        stepper.start()
        stepper.step()
    bare = BareLoop(bare_model, loaded.tokenizer(prompt, return_tensors="pt").input_ids.to(bare_model.device))
    runs = {"bare": lambda: [bare.step() for _ in range(segment)],
            "behind": lambda: continue_segment(behind, CONTINUE_BLOCK, HAND_OVERS),
            "in hand-over": lambda: continue_segment(inline, CONTINUE_BLOCK, HAND_OVERS)}
    seconds = {name: [] for name in runs}
    segments, written = max(3, 2 * args.steps * args.rounds // segment), inline._rows.bytes_written
    for index in range(segments):
        for name in in_turn(tuple(runs), index):
            seconds[name].append(timed(runs[name], args.device) / segment)
    hand_over_bytes = (inline._rows.bytes_written - written) // (segments * HAND_OVERS)
    chooses_behind = writing_behind_pays(behind._rows, torch.device(args.device), hand_over_bytes)
    return {name: statistics.median(values) for name, values in seconds.items()}, chooses_behind


def print_continue(medians: dict[str, float], chooses_behind: bool) -> None:
    chosen = "behind" if chooses_behind else "in hand-over"
    base = medians["bare"]
    print(f"torch threads {torch.get_num_threads()}: a continue writes its rows {chosen}")
    for name, value in medians.items():
        label = "bare SDPA" if name == "bare" else f"rows written {name}"
        print(f"decode step in a continue, {label:<28} {value * 1e3:7.1f} ms  {value / base:.3f}")
    print(f"continue_behind_ratio={medians['behind'] / base:.3f} "
          f"continue_in_hand_over_ratio={medians['in hand-over'] / base:.3f} "
          f"continue_step_ratio={medians[chosen] / base:.3f}")


def print_rows(medians: dict[str, float]) -> None:
    base = medians[ROW_PARTS[0]]
    for name, value in medians.items():
        print(f"decode step, {name:<26} {value * 1e3:7.1f} ms  {value / base:.3f}")
    print(f"rows_compute_ratio={medians[ROW_PARTS[1]] / base:.3f} rows_store_ratio={medians[ROW_PARTS[2]] / base:.3f}")


def prefill_child(source: str, capture: bool, args) -> dict:
    """Run in a fresh process: seconds and peak extra bytes of one start() at ``--context``."""
    loaded = models.load(source, "llama", args.device, args.dtype)
    if not capture:
        loaded.model.set_attn_implementation("sdpa")
    prompt = long_prompt(loaded.tokenizer, args.context)
    peak = PeakMemory(args.device)
    gc.collect()
    peak.reset()
    began = time.perf_counter()
    Stepper(loaded, prompt, GREEDY, capture_attention=capture).start()
    sync(args.device)
    return {"seconds": time.perf_counter() - began, "bytes": peak.extra_bytes()}


FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
"""The prefill children's environment (glibc's malloc reads it; other allocators ignore it).
glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, and blocks below
it then come from the heap, which keeps them after they are freed; when that happens depends on
which thread frees what first, so either prefill, SDPA's or lmscope's, peaked at about 150-290
MiB in some processes and 430-700 MiB in others (2026-12-06: 500 MiB more still resident after
``start()``). At the default fixed threshold every large block is mapped and unmapped, and both
measure 148-150 MiB in every process."""


def measure_prefill(source: str, args):
    """Median (seconds, bytes) without and with capture, each prefill in its own process
    (:data:`FIXED_MMAP_THRESHOLD`)."""
    import os
    import subprocess

    results = {False: [], True: []}
    for _ in range(args.rounds):
        for capture in (False, True):
            command = [sys.executable, __file__, "--prefill-child", "capture" if capture else "sdpa",
                       "--model", source, "--device", args.device, "--dtype", args.dtype,
                       "--context", str(args.context)] + (
                           ["--torch-threads", str(args.torch_threads)] if args.torch_threads else [])
            done = subprocess.run(command, capture_output=True, text=True, check=True,
                                  env={**os.environ, **FIXED_MMAP_THRESHOLD})
            results[capture].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return tuple(
        (statistics.median(r["seconds"] for r in results[c]), statistics.median(r["bytes"] for r in results[c]))
        for c in (False, True)
    )


def measure_run(loaded, bare_model, args) -> tuple[float, float]:
    """Tokens per second of generate() (plain SDPA model) and of the lmscope loop, alternated."""
    settings = GenerationSettings(max_new_tokens=args.run_tokens, min_new_tokens=args.run_tokens)
    prompt = "Explain how a transformer generates text, one token at a time."
    ids = loaded.tokenizer(prompt, return_tensors="pt").input_ids.to(bare_model.device)

    def generate():
        bare_model.generate(ids, **settings.config_kwargs())

    def lmscope():
        run_to_end(Stepper(loaded, prompt, settings))  # as the TUI's continue steps

    generate_s, lmscope_s = [], []
    for _ in range(args.rounds):
        generate_s.append(timed(generate, args.device))
        lmscope_s.append(timed(lmscope, args.device))
    return args.run_tokens / statistics.median(generate_s), args.run_tokens / statistics.median(lmscope_s)


def measure_retained(loaded, prompt, args) -> tuple[float, float]:
    """Python-heap bytes the history retains per step, and attention bytes written per step."""
    stepper = Stepper(loaded, prompt, SAMPLING)
    stepper.start()
    history = [stepper.step()]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    written_before = stepper._rows.bytes_written
    for _ in range(args.steps):
        history.append(stepper.step())
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / args.steps, (stepper._rows.bytes_written - written_before) / args.steps


def timed_mode(stepper: Stepper, device: str) -> float:
    """Seconds of ``stepper.step`` with exactly its capture mode's hooks on the shared model.

    The Steppers share one model and so one set of hooks: switching them happens before the
    clock starts, so no step pays for another's registration.
    """
    stepper._layers._hooks.use(stepper._layers.mode)
    return timed(stepper.step, device)


def measure_layers(loaded, prompt, args) -> dict:
    """Median step seconds and Python-heap bytes retained per step for each layer capture mode.

    Three greedy Steppers at ``--context`` (``off``: no hooks at all; ``residual``: what the
    logit lens reads; ``full``: that and the tensors every layer saw, as the TUI runs), stepped
    in turn, each first in every third round (attention capture on in all, as in the TUI); the heap is traced over ``--steps``
    steps of each, the history kept.
    """
    steppers = {mode: Stepper(loaded, prompt, GREEDY, layer_capture=mode) for mode in ("off", "residual", "full")}
    for stepper in steppers.values():
        stepper._layers._hooks.use(stepper._layers.mode)
        stepper.start()
        stepper.step()
    seconds = {mode: [] for mode in steppers}
    for index in range(args.steps * args.rounds):
        for mode in in_turn(tuple(steppers), index):
            seconds[mode].append(timed_mode(steppers[mode], args.device))
    heap = {}
    for mode, stepper in steppers.items():
        stepper._layers._hooks.use(mode)
        history = []
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(args.steps):
            history.append(stepper.step())
        gc.collect()
        heap[mode] = (tracemalloc.get_traced_memory()[0] - before) / args.steps
        tracemalloc.stop()
    return {"seconds": {mode: statistics.median(values) for mode, values in seconds.items()}, "heap": heap}


def print_layers(loaded, args, layers: dict) -> None:
    seconds, heap = layers["seconds"], layers["heap"]
    print(f"layer capture ({loaded.model.config.num_hidden_layers} layers), context {args.context}, "
          f"device {args.device}, {args.steps * args.rounds} steps of each mode in turn")
    print(f"{'decode step (median), no hooks':<44}{seconds['off'] * 1e3:>8.1f} ms")
    for mode, what in (("residual", "residual stream (lens)"), ("full", "+ tensors each layer saw (TUI)")):
        ratio = seconds[mode] / seconds["off"]
        extra = (heap[mode] - heap["off"]) / 1024
        print(f"{'decode step, ' + what:<44}{seconds[mode] * 1e3:>8.1f} ms  {ratio:6.3f}"
              f"{'  <= 1.02' if mode == 'residual' else '':<10}  extra heap {extra:5.2f} KiB/step  <= 16 KiB")
    print(f"layers_step_ratio={seconds['residual'] / seconds['off']:.3f} "
          f"layers_full_step_ratio={seconds['full'] / seconds['off']:.3f} "
          f"layers_extra_bytes_per_step={heap['full'] - heap['off']:.0f}")


def main() -> None:
    args = parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    options = SessionOptions(family="llama", prompt="x", model=args.model, device=args.device, dtype=args.dtype)
    source = model_source(options)
    if args.prefill_child:
        print(json.dumps(prefill_child(source, args.prefill_child == "capture", args)))
        return
    loaded = models.load(source, "llama", args.device, args.dtype)
    bare_model = AutoModelForCausalLM.from_pretrained(
        source, attn_implementation="sdpa", dtype=loaded.model.dtype, local_files_only=True
    ).to(args.device).eval()
    prompt = long_prompt(loaded.tokenizer, args.context)
    if args.only == "rng":
        rng = measure_rng(loaded, prompt, args)
        print_rng(rng)
        print(f"rng_ratio={rng[1] / rng[0]:.4f}")  # a last line of figures, as every measure prints
        return
    if args.only == "rows":
        print_rows(measure_rows(loaded, prompt, args))
        return
    if args.only == "step":
        steps = measure_steps(loaded, bare_model, prompt, GREEDY, args)
        print(f"single decode step at {args.context} tokens ({'un' if args.unprepared else ''}prepared): "
              f"bare {steps['bare'] * 1e3:.1f} ms, the n key's {steps['key'] * 1e3:.1f} ms, "
              f"in place {steps['in place'] * 1e3:.1f} ms")
        print(f"step_ratio={steps['key'] / steps['bare']:.4f} "
              f"inplace_step_ratio={steps['in place'] / steps['bare']:.4f}")
        return
    if args.only == "continue":
        print_continue(*measure_continue(loaded, bare_model, prompt, args))
        return
    if args.only_layers:
        print_layers(loaded, args, measure_layers(loaded, prompt, args))
        return
    measures = {
        "greedy": lambda: measure_steps(loaded, bare_model, prompt, GREEDY, args, in_continue=True),
        "sampling": lambda: measure_steps(loaded, bare_model, prompt, SAMPLING, args),
        "prefill": lambda: measure_prefill(source, args),
        "run": lambda: measure_run(loaded, bare_model, args),
        "retained": lambda: measure_retained(loaded, prompt, args),
        "rng": lambda: measure_rng(loaded, prompt, args),
        "layers": lambda: measure_layers(loaded, prompt, args),
    }
    results = {}
    for name, measure in measures.items():
        began = time.perf_counter()
        results[name] = measure()
        # Each measure's raw figures as it ends (stderr): a run stopped by a time limit, as on a
        # lent GPU machine (gpu_check.sh), keeps what it had measured.
        print(f"measured {name} in {time.perf_counter() - began:.0f} s: {_rounded(results[name])}",
              file=sys.stderr, flush=True)
    print_table(loaded, args, results)
    print_layers(loaded, args, results["layers"])


def _rounded(value):
    """``value`` (nested dicts, tuples and lists of numbers) with floats to four significant digits."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_rounded(item) for item in value)
    return value


def print_table(loaded, args, results) -> None:
    mib = 1024 * 1024
    config = loaded.model.config
    greedy, sampling = results["greedy"], results["sampling"]
    bare_g, ours_g, bare_gc, ours_gc = greedy["bare"], greedy["key"], greedy["bare block"], greedy["continue"]
    bare_s, ours_s = sampling["bare"], sampling["key"]
    (sdpa_s, sdpa_mem), (capture_s, capture_mem) = results["prefill"]
    generate_tps, lmscope_tps = results["run"]
    retained, written = results["retained"]
    print(f"model {loaded.source} ({config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
          f"{config.num_key_value_heads} kv heads), device {args.device}, dtype {args.dtype}, "
          f"context {args.context}, torch threads {torch.get_num_threads()}")
    rows = [
        ("decode step, greedy, n key", f"bare SDPA {bare_g * 1e3:.1f} ms", f"lmscope {ours_g * 1e3:.1f} ms",
         ours_g / bare_g, "<= 1.10"),
        ("decode step, greedy, in place", f"bare SDPA {bare_g * 1e3:.1f} ms",
         f"lmscope {greedy['in place'] * 1e3:.1f} ms", greedy["in place"] / bare_g, ""),
        ("decode step in a continue", f"bare SDPA {bare_gc * 1e3:.1f} ms", f"lmscope {ours_gc * 1e3:.1f} ms",
         ours_gc / bare_gc, "<= 1.10"),
        ("decode step, sampling, n key", f"+processors {bare_s * 1e3:.1f} ms", f"lmscope {ours_s * 1e3:.1f} ms",
         ours_s / bare_s, ""),
        ("prefill time (median)", f"SDPA {sdpa_s:.2f} s", f"capture {capture_s:.2f} s", capture_s / sdpa_s, "<= 1.25"),
        ("prefill peak extra memory", f"SDPA {sdpa_mem / mib:.0f} MiB", f"capture {capture_mem / mib:.0f} MiB",
         capture_mem / sdpa_mem, "<= 1.25"),
        ("run to the end, tokens/s", f"generate {generate_tps:.1f}", f"lmscope {lmscope_tps:.1f}",
         lmscope_tps / generate_tps, ">= 0.95"),
    ]
    print(f"{'measure':<32}{'baseline':<26}{'lmscope':<22}{'ratio':>7}  target")
    for name, base, ours, ratio, target in rows:
        print(f"{name:<32}{base:<26}{ours:<22}{ratio:>7.3f}  {target}")
    print(f"{'heap retained per step':<32}{'':<26}{retained / 1024:<18.1f}KiB{'':>8}<= 256 KiB")
    print(f"{'attention rows written per step':<32}{'':<26}{written / 1024:<18.1f}KiB  (to the mapped row store)")
    print_rng(results["rng"])
    print(f"step_ratio={ours_g / bare_g:.3f} inplace_step_ratio={greedy['in place'] / bare_g:.3f} "
          f"continue_step_ratio={ours_gc / bare_gc:.3f} "
          f"rng_ratio={results['rng'][1] / results['rng'][0]:.4f} prefill_time_ratio={capture_s / sdpa_s:.3f} "
          f"prefill_mem_ratio={capture_mem / sdpa_mem:.3f} run_ratio={lmscope_tps / generate_tps:.3f} "
          f"bytes_per_step={retained:.0f}")


def print_rng(rng: tuple[float, float]) -> None:
    without, with_state = rng
    print(f"{'sampling step + RNG kept':<32}{f'without {without * 1e3:.1f} ms':<26}"
          f"{f'with {with_state * 1e3:.1f} ms':<22}{with_state / without:>7.4f}  <= 1.01")


if __name__ == "__main__":
    main()
