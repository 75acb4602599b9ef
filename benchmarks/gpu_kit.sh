#!/usr/bin/env bash
# Builds .gpu/, what a lent GPU machine needs to run benchmarks/gpu_check.sh: it reaches no
# package index, and its image already holds torch, transformers, numpy, rich, pytest and most of
# their needs (Python 3.12). Run here, where pip reaches PyPI, after `make setup`:
#
#     bash benchmarks/gpu_kit.sh        # then: device run, carry [".gpu"], command "bash benchmarks/gpu_check.sh"
#
# .gpu/whl: wheels of the packages that image lacks, or holds too old for lmscope, each at the
# version this checkout's .venv has (the versions its tests pass with). .gpu/smollm2: the default
# Llama's config and tokenizer, for a random twin of it there (benchmarks/random_twin.py: its
# 260 MB of weights exceed what a call may carry, 64 MiB). .gpu is ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KIT=.gpu
if [ ! -x "$PY" ]; then
    echo "no $PY here: run make setup first (the wheels are this checkout's .venv versions)" >&2
    exit 2
fi
# What the image lacks and the GPU check imports: the TUI (textual, its Markdown plugins,
# textual-plotext, plotext), gguf, and the asyncio plugin of the tests. The CLI's typer and the
# snapshot tests' plugins are left out: the check runs neither.
PACKAGES=(textual textual-plotext plotext platformdirs mdit-py-plugins linkify-it-py gguf pytest-asyncio)

rm -rf "$KIT"
mkdir -p "$KIT/whl" "$KIT/smollm2"
pins=()
for name in "${PACKAGES[@]}"; do
    pins+=("$name==$("$PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name")")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$KIT/whl" "${pins[@]}"

llama=$("$PY" -c 'from lmscope.engine.session import SessionOptions, model_source; print(model_source(SessionOptions(family="llama", prompt="x")))')
for file in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
    if [ -f "$llama/$file" ]; then cp "$llama/$file" "$KIT/smollm2/"; fi
done
du -sh "$KIT"
