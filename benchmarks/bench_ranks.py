"""Tensor parallel under torchrun: SmolLM2's decode step with N ranks against 1, on this machine.

Runs ``torchrun --standalone --nproc-per-node N -m lmscope llama --json`` for each N (rounds
alternate the Ns) and takes the median of the ``elapsed_s`` of every step after the first.
torchrun gives every rank one thread (``OMP_NUM_THREADS=1``), the 1-rank run too, so the
comparison is N threads' worth of CPU against one. It shows that stepping works across ranks and
what it costs here, not that tensor parallel is fast on a CPU: each layer adds two all-reduces.

    python benchmarks/bench_ranks.py [--ranks 1 3] [--tokens 24] [--rounds 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROMPT = "Explain how a transformer generates text, one token at a time."


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=None, help="hub id or folder (default: the offline default Llama)")
    return parser.parse_args()


def run(ranks: int, args) -> tuple[list[float], list[int]]:
    """Seconds of every step after the first, and every step's token id."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "lmscope", "llama", "--prompt", PROMPT, "--max-new-tokens", str(args.tokens),
               "--min-new-tokens", str(args.tokens), "--json"]
    if args.model:
        command += ["--model", args.model]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"{ranks} ranks failed:\n{done.stderr[-2000:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return [line["elapsed_s"] for line in lines[1:]], [line["token_id"] for line in lines]


def main() -> None:
    args = parse_args()
    seconds: dict[int, list[float]] = {ranks: [] for ranks in args.ranks}
    tokens: dict[int, list[int]] = {}
    for _ in range(args.rounds):
        for ranks in args.ranks:
            step_s, tokens[ranks] = run(ranks, args)
            seconds[ranks] += step_s
    base = statistics.median(seconds[args.ranks[0]])
    print(f"SmolLM2 decode step, {args.tokens} tokens x {args.rounds} rounds, cpu cores {os.cpu_count()}")
    for ranks in args.ranks:
        median = statistics.median(seconds[ranks])
        print(f"{ranks} rank{'s' if ranks > 1 else ' '}  median step {median * 1e3:8.1f} ms  "
              f"ratio to {args.ranks[0]} rank {median / base:5.2f}  "
              f"tokens {'equal' if tokens[ranks] == tokens[args.ranks[0]] else 'DIFFER'}")


if __name__ == "__main__":
    main()
