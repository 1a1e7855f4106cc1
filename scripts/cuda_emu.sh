#!/usr/bin/env bash
# The emulated CUDA tests (pytest marker cuda_emu): cnnkern's CUDA backend -- the glue and the
# kernels of csrc/cuda, as a GPU runs them -- executed on the CPU by the CUDA emulator
# (csrc/testing/cuda_emu), against one build flavour of it:
#
#   bash scripts/cuda_emu.sh asan [pytest args]      AddressSanitizer: what scripts/test.sh runs
#   bash scripts/cuda_emu.sh plain [pytest args]     no sanitizer: the quickest
#   bash scripts/cuda_emu.sh tsan [pytest args]      ThreadSanitizer: races between barriers by
#                                                    happens-before, whatever the thread order
#   bash scripts/cuda_emu.sh coverage [pytest args]  then the line coverage of csrc/cuda/*.cu and
#                                                    *.cuh (csrc/testing/cuda_emu/coverage.py)
#
# Without a -m argument, -m cuda_emu is added. Python output is captured as usual, native
# output is not (--capture=sys): a sanitizer report that stops the run must reach the log. The library is rebuilt when a source changed.
# The summary lists failures and errors only: the skips are the CUDA rules refusing shapes
# (e.g. Winograd on a 5x5 kernel), as on a GPU.
source "$(dirname "$0")/env.sh"
flavour="${1:?usage: scripts/cuda_emu.sh asan|plain|tsan|coverage [pytest args]}"
shift
has_marker=0
for a in "$@"; do case "$a" in -m|-m*) has_marker=1 ;; esac; done
marker=()
[ "$has_marker" = 1 ] || marker=(-m cuda_emu)

echo "[cnnkern] building the CUDA emulator ($flavour)" >&2
start=$(date +%s)
runtime_env="$("$PY" csrc/testing/cuda_emu/build.py --flavour "$flavour" --shell-env)"
echo "[cnnkern] CUDA emulator ready in $(( $(date +%s) - start )) s" >&2
if [ "$flavour" = coverage ]; then
  find build/cuda_emu/coverage -name '*.gcda' -delete  # counts from this run only
fi
set +e
( eval "$runtime_env"; export CNNKERN_EMU_FLAVOUR="$flavour"
  exec "$PY" -m pytest -q -rfE --capture=sys "${marker[@]}" "$@" )
rc=$?
set -e
if [ "$flavour" = coverage ]; then
  "$PY" csrc/testing/cuda_emu/coverage.py || rc=1
fi
exit "$rc"
