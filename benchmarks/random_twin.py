"""A model folder with another's config and tokenizer and random weights, for timing where the
weights cannot go.

Step time depends on the architecture, the dtype and the sequence length, not on the weights'
values, so a random twin of the default Llama times like the default Llama. The GPU figures in the
README were taken on such a twin: the machine lent for them reaches no package index and takes at
most 64 MiB per call, less than the default Llama's weights. Its tokens are not the real model's.

    python benchmarks/random_twin.py SRC DEST   # SRC: config.json and tokenizer files

Point ``LMSCOPE_CACHE`` at DEST's parent with DEST named like the default (SmolLM2-135M-Instruct)
and every lmscope command and benchmark takes the twin as the default Llama.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

KEPT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (args.src / name).is_file():
            shutil.copy(args.src / name, args.dest / name)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.src))
    model.to(torch.float16).save_pretrained(args.dest)  # stored as the default Llama is
    print(f"random twin of {args.src} in {args.dest}")


if __name__ == "__main__":
    main()
