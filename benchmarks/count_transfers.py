"""Device-to-host copies and synchronisations per Stepper step, counted by torch's profiler (GPU only).

    python benchmarks/count_transfers.py [--family t5|llama] [--dtype float32] [--steps 10]

Prints, per decode step, the profiler events that copy to the host or wait for the device
(``cudaMemcpyAsync``, ``Memcpy DtoH``, ``cudaStreamSynchronize``, ``aten::item`` ...). On a CPU
``tests/engine/test_host_copy.py`` counts the same reads at the Python level.
"""

from __future__ import annotations

import argparse
import collections
import os

os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from torch.profiler import ProfilerActivity, profile

from lmscope.engine import models
from lmscope.engine.session import SessionOptions, model_source
from lmscope.engine.settings import GenerationSettings
from lmscope.engine.stepper import Stepper

PROMPTS = {"llama": "The capital of France is", "t5": "translate English to German: the woman laughs"}
COUNTED = ("Memcpy", "memcpy", "Synchronize", "_local_scalar_dense", "aten::item")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=tuple(PROMPTS), default="t5")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("count_transfers.py: needs a CUDA device")
    prompt = PROMPTS[args.family]
    loaded = models.load(model_source(SessionOptions(family=args.family, prompt=prompt)),
                         args.family, "cuda", args.dtype)
    stepper = Stepper(loaded, prompt,
                      GenerationSettings(max_new_tokens=args.steps + 20, min_new_tokens=args.steps + 20))
    stepper.start()
    for _ in range(10):  # warm up: the first steps allocate
        stepper.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            stepper.step()
        torch.cuda.synchronize()
    counts = collections.Counter(e.name for e in prof.events() if any(k in e.name for k in COUNTED))
    print(f"{args.family} {args.dtype} on {torch.cuda.get_device_name()}: per step, over {args.steps} steps")
    for name, count in counts.most_common():
        print(f"{count / args.steps:8.1f}  {name}")


if __name__ == "__main__":
    main()
