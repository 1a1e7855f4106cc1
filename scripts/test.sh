#!/usr/bin/env bash
# The test suite, in two pytest processes:
#   1. every test but the emulated CUDA ones (GPU tests skip without a GPU);
#   2. the emulated CUDA tests (marker cuda_emu): cnnkern's CUDA backend -- the same glue and
#      kernels a GPU runs -- executed on the CPU by the CUDA emulator (csrc/testing/cuda_emu),
#      built with AddressSanitizer (scripts/cuda_emu.sh asan).
# Extra arguments go to both runs; a marker expression (-m EXPR) is combined with each run's,
# so `bash scripts/test.sh -m cuda_emu` runs the emulated tests alone.
source "$(dirname "$0")/env.sh"
"$PY" -c "import torch, cnnkern; print(f'[cnnkern] torch {torch.__version__}, cuda kernels built: {cnnkern.cuda_built()}, GPU: {torch.cuda.is_available()}')"

marker=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) marker="$2"; shift 2 ;;
    -m*) marker="${1#-m}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
with_marker() { if [ -n "$marker" ]; then echo "$1 and ($marker)"; else echo "$1"; fi; }

# pytest exits with 5 when a run selects no test: fine for one of the two runs.
status=0
set +e
"$PY" -m pytest -q -m "$(with_marker "not cuda_emu")" "${args[@]}"
rc1=$?
set -e
[ "$rc1" = 0 ] || [ "$rc1" = 5 ] || status=$rc1

set +e
bash "$(dirname "$0")/cuda_emu.sh" asan -m "$(with_marker "cuda_emu")" "${args[@]}"
rc2=$?
set -e
[ "$rc2" = 0 ] || [ "$rc2" = 5 ] || status=$rc2
if [ "$rc1" = 5 ] && [ "$rc2" = 5 ]; then status=5; fi
exit "$status"
