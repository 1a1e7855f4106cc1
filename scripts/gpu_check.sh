#!/usr/bin/env bash
# The whole GPU check in one command, for a lent GPU machine: build (for the GPU that is
# there), the full test suite (GPU tests against cuDNN included), then the benchmark on CUDA.
# Logs and results go to $OUT when set (the device tool brings that folder back), else to
# bench/results/. Commit the results JSON as it came back.
set -uo pipefail
DEST="${OUT:-$(cd "$(dirname "$0")/.." && pwd)/bench/results}"
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  nvcc --version | tail -2 || true
} 2>&1 | tee "$DEST/gpu_env.txt"

source "$(dirname "$0")/env.sh"   # sets -e: a failed build stops here
set +e
"$PY" -c "import torch, cnnkern; assert cnnkern.cuda_available(), 'CUDA kernels not usable'; print(torch.cuda.get_device_name())"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
"$PY" -m pytest -q -rs tests 2>&1 | tee "$DEST/tests_$stamp.log"
tests_rc=${PIPESTATUS[0]}
"$PY" -m cnnkern --device cuda --passes all --no-progress --json "$DEST/bench_gpu_$stamp.json" \
  2>&1 | tee "$DEST/bench_$stamp.txt"
# Memory safety of the CUDA kernels: compute-sanitizer memcheck over a slice of the GPU tests
# (bounded: the sanitizer slows kernels ~10-100x).
if command -v compute-sanitizer > /dev/null; then
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$PY" -m pytest -q -x tests/test_cuda.py -k "direct and not bf16" 2>&1 \
    | tail -20 | tee "$DEST/memcheck_$stamp.log"
  # The implicit-GEMM / Winograd kernels: every curated shape in float32 NCHW (all three
  # passes), float16 too, and the split-K grad-weight.
  timeout 600 compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$PY" -m pytest -q -x tests/test_cuda_gemm.py \
    -k "(curated_f32 and nchw) or (curated_low_precision and f16) or (bitwise and f32 and not 64x64)" \
    2>&1 | tail -20 | tee -a "$DEST/memcheck_$stamp.log"
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "[gpu_check] memcheck of test_cuda_gemm.py failed"; tests_rc=1; }
fi
echo "[gpu_check] tests exit code: $tests_rc; results in $DEST"
exit "$tests_rc"
