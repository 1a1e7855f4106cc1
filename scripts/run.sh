#!/usr/bin/env bash
# The main job: the benchmark + correctness table on whatever device is here.
# Extra arguments go to the `cnnkern` command (see `cnnkern --help`).
source "$(dirname "$0")/env.sh"
exec "$PY" -m cnnkern "$@"
