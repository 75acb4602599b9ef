#!/usr/bin/env bash
# Every GPU check and benchmark the README's GPU figures come from, for a lent GPU machine (a
# session has 15 minutes of it, the machine's start included). Build .gpu/ here first
# (benchmarks/gpu_kit.sh), then run this there from the repository's root with .gpu carried:
#
#     bash benchmarks/gpu_check.sh [PART...]     # PARTs: fidelity transfers fast engine (default: all)
#
# The four parts' time limits add up to 10.6 minutes, besides the install and the twin (under a
# minute): about one device call; "fidelity transfers fast" (at most 5.6) and then "engine" (5)
# split it into two calls on the same warm machine. Each part writes its log to $OUT as it goes, so a part that
# fails or runs out leaves the others' figures:
#
#   device.txt          the GPU, driver, torch and transformers
#   fidelity.txt        tests/engine/test_fidelity.py and test_architectures.py on cuda (tokens,
#                       stages, rows against generate; a forced token's draw; every named architecture)
#   transfers.txt       device-to-host copies and synchronisations per step (both models)
#   fast_float32.txt, fast_bfloat16.txt     bench_fast_steps.py
#   engine_float32.txt, engine_bfloat16.txt bench_engine.py (its table at its end; each measure's
#                       raw figures as the measure ends, so a part cut short keeps those)
#
# SmolLM2 runs as a random twin of the default Llama (same config and tokenizer, random weights:
# a step's time does not depend on the weights' values); its tokens are not the real model's.
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS=${*:-fidelity transfers fast engine}
for name in $PARTS; do
    case $name in
        fidelity | transfers | fast | engine) ;;
        *) echo "unknown part: $name (fidelity, transfers, fast, engine)" >&2; exit 2 ;;
    esac
done
if [ ! -d .gpu/whl ]; then
    echo "no .gpu/whl here: build it with benchmarks/gpu_kit.sh and carry .gpu" >&2
    exit 2
fi
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lmscope-site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/lmscope-site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
export LMSCOPE_CACHE=${LMSCOPE_CACHE:-/tmp/lmscope-cache}
DEVICE=${DEVICE:-cuda}

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a time limit, its output to $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    local began=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local status=$?
    echo "   exit $status after $((SECONDS - began))s; last lines:"
    tail -n 4 "$OUT/$name.txt" | sed 's/^/   /'
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    "$PYTHON" -c 'import torch, transformers, textual; print("torch", torch.__version__, "transformers", transformers.__version__, "textual", textual.__version__); print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")'
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
twin="$LMSCOPE_CACHE/SmolLM2-135M-Instruct"
if [ ! -f "$twin/model.safetensors" ]; then
    "$PYTHON" benchmarks/random_twin.py .gpu/smollm2 "$twin" || exit 1
fi

for name in $PARTS; do
    case $name in
        fidelity)
            part fidelity 150 env LMSCOPE_TEST_DEVICE="$DEVICE" "$PYTHON" -m pytest -q -p no:cacheprovider tests/engine/test_fidelity.py tests/engine/test_architectures.py ;;
        transfers)
            part transfers 45 sh -c "\"$PYTHON\" benchmarks/count_transfers.py --family t5 --steps 5 && \"$PYTHON\" benchmarks/count_transfers.py --family llama --steps 5" ;;
        fast)
            for dtype in float32 bfloat16; do
                part "fast_$dtype" 70 "$PYTHON" benchmarks/bench_fast_steps.py --device "$DEVICE" --dtype "$dtype" --rounds 3
            done ;;
        engine)
            for dtype in float32 bfloat16; do
                part "engine_$dtype" 150 "$PYTHON" benchmarks/bench_engine.py --device "$DEVICE" --dtype "$dtype" --rounds 2
            done ;;
    esac
done
