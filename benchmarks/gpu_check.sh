#!/usr/bin/env bash
# The checks that need an NVIDIA GPU (issue 19), in under 8 minutes, every figure into one file:
#   1. grading throughput on lab 3 (LeNet, Fashion-MNIST) with kernel_start = fork and fresh
#      (benchmarks/kernel_start.py: submissions/min, overhead, PSS per kernel, verdicts equal);
#   2. the GPU-only tests: a memory hog killed at its share, one visible GPU per slot (fresh
#      and forked kernels, CUDA initialised after the fork), CPU-vs-GPU verdicts equal on labs 1
#      and 3 (tests/test_gpu_watchdog.py) and forked GPU kernels against fresh CPU ones on labs
#      1, 3 and 5 (tests/test_zygote.py).
#
#   benchmarks/gpu_check.sh [OUT]        (default: gpu_check.txt in the repository root)
#
# Needs what `make test` needs on that machine: .venv from scripts/setup.sh (torch with CUDA),
# bubblewrap, Debian's dataset-fashion-mnist, the NVIDIA driver (nvidia-smi, NVML). No network.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check.txt}
PY=.venv/bin/python
BEGAN=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, its output and exit into OUT
    local name=$1 limit=$2
    shift 2
    local left=$((470 - ($(date +%s) - BEGAN)))
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit} s)"
    if ((limit < 20)); then
        echo "   skipped: the 8 minutes are spent"
        return
    fi
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | grep -v "^\[IPKernelApp\]"
    local code=${PIPESTATUS[0]}
    echo "   exit $code after $((SECONDS - t0)) s$( ((code == 124)) && echo ' (TIMED OUT)')"
}

{
    echo "== machine: $(hostname), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1
    echo "   $(uptime)"
    step "throughput, lab 3, fork vs fresh (4 jobs per GPU, 2 kernels ahead)" 200 \
        "$PY" benchmarks/kernel_start.py --lab lab3_mnist_lenet -n 16 --skip-nbgrader --ahead 2 --jobs-per-gpu 4
    step "GPU-only tests" 250 \
        "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu_watchdog.py tests/test_zygote.py -k gpu
    echo "== done after $(($(date +%s) - BEGAN)) s"
} | tee "$OUT"
