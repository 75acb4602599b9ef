"""Where a Stepper step's time goes, measured in place: each part timed inside real steps.

A profiler's per-operation table misleads on this machine (it showed the KV cache's ``cat``
twice as slow in lmscope's loop as in a bare one; timed in place, the two are equal), and a
part replayed on its own runs from warm caches (the kept attention rows' ``baddbmm`` took half
its in-step time when replayed). So this script wraps each part of the Stepper with a clock and
reads it during ordinary steps, alternated with the baseline's steps:

* ``--family llama`` (SmolLM2, a ``--context``-token natural-text prompt): bench_engine's bare
  KV-cached SDPA loop against the Stepper (the TUI's capture), step by step, medians;
* ``--family t5`` (the demo T5, ``--tokens`` tokens): ``generate()`` on the Stepper's own model
  against the Stepper's loop, best of ``--rounds``, per step.

Each row is milliseconds a step and its share of the baseline's step. The parts nest
(``model forward`` holds the attention rows), so the rows do not add up to the total.

``--continue`` steps the Stepper as a continue does (``continue_loop.py``: the attention rows
wait and are made at each hand-over, and decode steps capture no layers; SmolLM2 in blocks of
four steps, each against four bare steps), and the completions are timed as parts of their own.

``--key`` (SmolLM2) steps as the TUI's ``n`` does (``continue_loop.single_step``: the rows and the
record wait for the call's end, no layer is captured; ``prepare_next`` untimed after each).

``--rows-order`` alternates, step by step on one SmolLM2 Stepper at ``--context``, lmscope's
attention function (the kept rows computed before SDPA) with a copy that computes them after
SDPA, and prints both orders' step and rows times.

``--compiled-summary`` times instead the stage summary (``processors.summarise``) eager and
under ``torch.compile``, at the two models' vocabulary sizes: what compiling the capture alone
would save.

    python benchmarks/profile_step.py [--family llama|t5] [--continue | --key] [--context 2048] [--steps 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from lmscope.engine import (
    attention, deferred_rows, layers, models, row_store, stepper as stepper_module, waiting_records,
)
from lmscope.engine.session import SessionOptions, model_source
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

from continue_loop import run_to_end, single_step, steps_then_complete

T5_PROMPT = "translate English to German: the woman laughs because the man opens the door"


class PartClock:
    """Seconds spent in each wrapped function since the last :meth:`take` (re-entrant calls
    of one part are counted once, at the outermost)."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self._depth: dict[str, int] = {}
        self._undo = []
        self.order: list[str] = []

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            depth = self._depth.get(part, 0)
            self._depth[part] = depth + 1
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth[part] = depth
                if depth == 0:
                    self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - began

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def take(self) -> dict[str, float]:
        spent, self.spent = self.spent, {}
        return spent

    @contextmanager
    def installed(self, model):
        """Wrap the Stepper's parts (and the model's forward) for the block."""
        parts = (
            (type(model), "forward", "model forward"),
            (attention, "kept_probs", "  attention rows: computed"),
            (attention.AttentionRecorder, "keep", "  attention rows: kept"),
            (stepper_module, "attention_rows", "attention rows: stacked"),
            (layers._StepCapture, "finish", "layer capture: stacked"),
            (Stepper, "_choose", "processors, stages, choice"),
            (stepper_module, "run_stages", "  processors and stage summary"),
            (Stepper, "_record_fields", "record"),
            (stepper_module, "stages_from", "stages read back"),
            (Stepper, "_cache_stats", "  cache stats"),
            (stepper_module.HostCopy, "copy", "host copy (rows to the store)"),
            (row_store.RowStore, "write_array", "  store writes"),
            (Stepper, "complete_waiting", "completing waiting steps"),
            (deferred_rows.DeferredRows, "complete", "  attention rows"),
            (waiting_records.WaitingRecords, "complete", "  records"),
        )
        for owner, name, part in parts:
            self.wrap(owner, name, part)
        self.order = [part for _, _, part in parts]
        try:
            yield self
        finally:
            for owner, name, original in reversed(self._undo):
                setattr(owner, name, original)
            self._undo.clear()


def profile_llama(args) -> None:
    from bench_engine import GREEDY, BareLoop, long_prompt
    from transformers import AutoModelForCausalLM

    source = model_source(SessionOptions(family="llama", prompt="x"))
    loaded = models.load(source, "llama", args.device, args.dtype)
    bare_model = AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa").to(args.device).eval()
    prompt = long_prompt(loaded.tokenizer, args.context)
    stepper = Stepper(loaded, prompt, GREEDY)
    stepper.start()
    stepper.step()
    bare = BareLoop(bare_model, loaded.tokenizer(prompt, return_tensors="pt").input_ids.to(args.device))
    clock = PartClock()
    block = 4 if args.as_continue else 1
    if args.as_continue:
        def ours():
            steps_then_complete(stepper, block)
    elif args.key:
        def ours():
            single_step(stepper)
    else:
        ours = stepper.step

    def bare_steps():
        for _ in range(block):
            bare.step()

    bare_s, ours_s, parts = [], [], []
    with clock.installed(loaded.model):
        for _ in range(args.steps):
            clock.take()
            bare_s.append(_timed(bare_steps) / block)
            bare_parts = clock.take()
            ours_s.append(_timed(ours) / block)
            parts.append({part: value / block for part, value in clock.take().items()})
            if args.key:
                stepper.prepare_next()  # untimed: the app calls it once the step is handed over
            parts[-1]["bare loop: model forward"] = bare_parts.get("model forward", 0.0) / block
    base = statistics.median(bare_s)
    how = (f"{args.steps} blocks of {block} steps of each as a continue" if args.as_continue
           else f"{args.steps} steps of each" + (" as the n key makes them" if args.key else ""))
    print(f"SmolLM2, {args.context}-token prompt, {how}, alternated (medians per step)")
    _print_row("bare loop step", base, base)
    _print_row("Stepper step", statistics.median(ours_s), base)
    _print_parts(parts, base, clock.order)


def profile_t5(args) -> None:
    source = model_source(SessionOptions(family="t5", prompt=T5_PROMPT))
    loaded = models.load(source, "t5", args.device, args.dtype)
    settings = GenerationSettings(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    ids = loaded.tokenizer(T5_PROMPT, return_tensors="pt").input_ids.to(args.device)
    stepper = Stepper(loaded, T5_PROMPT, settings)

    def generate():
        with torch.no_grad():
            loaded.model.generate(ids, **settings.config_kwargs())

    def loop():
        if args.as_continue:
            run_to_end(stepper)
            return
        stepper.start()
        while not stepper.finished:
            stepper.step()

    clock = PartClock()
    best = {"generate": (float("inf"), {}), "Stepper": (float("inf"), {})}
    with clock.installed(loaded.model):
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, run in (("generate", generate), ("Stepper", loop)):
                clock.take()
                seconds = _timed(run) / args.tokens
                spent = {part: value / args.tokens for part, value in clock.take().items()}
                if seconds < best[name][0]:
                    best[name] = (seconds, spent)
    base, generate_parts = best["generate"]
    ours, parts = best["Stepper"]
    parts = dict(parts, **{"generate(): model forward": generate_parts.get("model forward", 0.0)})
    how = ", as a continue" if args.as_continue else ""
    print(f"demo T5, {args.tokens} tokens{how}, best of {args.rounds} rounds (per step)")
    _print_row("generate() step", base, base)
    _print_row("Stepper step", ours, base)
    _print_parts([parts], base, clock.order)


def rows_after_sdpa(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """``attention.capture_attention_forward`` with the kept rows computed after SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                       scaling=scaling, **kwargs)
    recorder = attention._RECORDER.get()
    if recorder is not None and id(module) in recorder.kinds:
        rows = recorder.rows_to_keep(query.shape[2], key.shape[2])
        recorder.keep(module, attention.kept_probs(module, query, key, attention_mask, scaling, rows, kwargs))
    return output, None


def rows_order(args) -> None:
    from bench_engine import GREEDY, long_prompt
    from transformers import AttentionInterface

    source = model_source(SessionOptions(family="llama", prompt="x"))
    loaded = models.load(source, "llama", args.device, args.dtype)
    stepper = Stepper(loaded, long_prompt(loaded.tokenizer, args.context), GREEDY, layer_capture="off")
    stepper.start()
    stepper.step()
    orders = (("rows before SDPA (lmscope)", attention.capture_attention_forward),
              ("rows after SDPA", rows_after_sdpa))
    clock = PartClock()
    clock.wrap(attention, "kept_probs", "rows")
    steps = {name: [] for name, _ in orders}
    rows = {name: [] for name, _ in orders}
    try:
        for _ in range(args.steps):
            for name, forward in orders:
                AttentionInterface.register(attention.ATTENTION_NAME, forward)
                clock.take()
                steps[name].append(_timed(stepper.step))
                rows[name].append(clock.take().get("rows", 0.0))
    finally:
        AttentionInterface.register(attention.ATTENTION_NAME, attention.capture_attention_forward)
    print(f"SmolLM2, {args.context}-token prompt, layer capture off, {args.steps} steps of each order, alternated")
    for name, _ in orders:
        print(f"  {name:<28} step {statistics.median(steps[name]) * 1e3:7.1f} ms   "
              f"rows computed {statistics.median(rows[name]) * 1e3:6.2f} ms")


def compiled_summary(args) -> None:
    from lmscope.engine.processors import summarise

    for vocab in (373, 49152):  # the demo T5's and SmolLM2's
        stages = torch.randn(2, vocab, device=args.device)
        stages[1, : vocab // 2] = float("-inf")  # a stage that removed half the vocabulary
        began = time.perf_counter()
        compiled = torch.compile(summarise, dynamic=False)
        compiled(stages, 10)
        compile_s = time.perf_counter() - began
        calls = 2000 if vocab < 1000 else 200
        eager_us = _per_call(lambda: summarise(stages, 10), calls)
        compiled_us = _per_call(lambda: compiled(stages, 10), calls)
        print(f"stage summary, d_vocab {vocab}: eager {eager_us:.1f} us, torch.compile {compiled_us:.1f} us "
              f"a call (compiling took {compile_s:.1f} s)")


def _per_call(call, calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - began) / calls)
    return best * 1e6


def _timed(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _print_parts(parts: list[dict[str, float]], base: float, order: list[str]) -> None:
    seen = {name for spent in parts for name in spent}
    for name in [name for name in order if name in seen] + sorted(seen - set(order)):
        _print_row(name, statistics.median(spent.get(name, 0.0) for spent in parts), base)


def _print_row(name: str, seconds: float, base: float) -> None:
    print(f"  {name:<34} {seconds * 1e3:8.3f} ms  {seconds / base * 100:6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("llama", "t5"), default="llama")
    parser.add_argument("--context", type=int, default=2048, help="prompt tokens (llama)")
    parser.add_argument("--steps", type=int, default=16, help="steps of each, alternated (llama)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per run (t5)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (t5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--compiled-summary", action="store_true", help="the stage summary eager and compiled")
    parser.add_argument("--rows-order", action="store_true", help="kept rows before SDPA against after it")
    parser.add_argument("--key", action="store_true",
                        help="llama: step as the TUI's n key does (rows and record completed at the call's end)")
    parser.add_argument("--continue", dest="as_continue", action="store_true",
                        help="step as a continue does (rows wait, no layer capture)")
    args = parser.parse_args()
    if args.key and (args.family != "llama" or args.as_continue):
        parser.error("--key steps SmolLM2 (--family llama) one step at a time, not with --continue")
    if args.rows_order:
        rows_order(args)
    elif args.compiled_summary:
        compiled_summary(args)
    elif args.family == "t5":
        profile_t5(args)
    else:
        profile_llama(args)


if __name__ == "__main__":
    main()
