#!/usr/bin/env bash
# Builds the CPU kernels with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy
# of the tree and runs the test suite against that build. Any sanitizer report fails the run
# (-fno-sanitize-recover, halt_on_error). Extra arguments go to pytest.
#
#   bash scripts/sanitize.sh                 # the whole suite (slow: ~3x)
#   bash scripts/sanitize.sh -k "conv or pool"
#   bash scripts/sanitize.sh tests/ops/test_winograd.py tests/internals/test_gemm.py   # only these files
#
# Python itself is not instrumented, so the runtimes are preloaded; leak checking is off
# (CPython keeps objects alive at exit by design).
source "$(dirname "$0")/env.sh"
WORK="$(mktemp -d /tmp/cnnkern-sanitize.XXXXXX)"
git ls-files -z | tar -c --null -T - | tar -x -C "$WORK"
cd "$WORK"
echo "[sanitize] building in $WORK" >&2
CNNKERN_CUDA=0 CNNKERN_SANITIZE=address,undefined MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  "$PY" setup.py build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:halt_on_error=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# torch.compile / DDP spawn compilers and processes that do not need the sanitizers
# Test paths among the arguments replace the default (the whole tests/ folder).
targets=(tests)
for arg in "$@"; do [[ "$arg" == tests/* ]] && targets=(); done
PYTHONPATH="$WORK" "$PY" -m pytest -q -p no:cacheprovider \
  -k "not compile and not ddp and not digits" "$@" "${targets[@]}"
