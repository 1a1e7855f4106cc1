# Sourced by the other scripts: picks a Python with torch, installs what is missing, and
# (re)builds cnnkern when its sources changed. Sets PY.
#
#   CNNKERN_PYTHON=/path/to/python   use that interpreter as it is
#   (unset)  a python3 that already has torch (the GPU machine: no network, torch preinstalled)
#            is used directly; otherwise a virtual environment .venv is made and filled from
#            requirements.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ -n "${CNNKERN_PYTHON:-}" ]; then
  PY="$CNNKERN_PYTHON"
elif [ -x .venv/bin/python ]; then
  PY="$ROOT/.venv/bin/python"
elif python3 -c "import torch" 2>/dev/null; then
  PY="$(command -v python3)"
else
  echo "[cnnkern] creating .venv and installing requirements.txt" >&2
  python3 -m venv .venv
  PY="$ROOT/.venv/bin/python"
fi

# pip's output goes to a log (its index warnings are noise), shown only if it fails.
quiet() {
  local log; log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

if ! "$PY" -c "import torch, ninja, pytest, hypothesis, torchvision, sklearn, tqdm, matplotlib, rich, expecttest" 2>/dev/null; then
  echo "[cnnkern] installing requirements.txt into $PY" >&2
  quiet "$PY" -m pip install -r requirements.txt
fi

# Rebuild only when a source or the build script changed since the last build.
stamp_file="$ROOT/cnnkern/.build_stamp"
stamp="$( (cat setup.py pyproject.toml; find csrc -path csrc/testing -prune -o -type f -print | LC_ALL=C sort | xargs cat) | sha1sum | cut -d' ' -f1)"
stamp="$stamp $("$PY" -c 'import torch; print(torch.__version__)') ${CNNKERN_CUDA:-}"
if [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$stamp" ] || ! "$PY" -c "import cnnkern" 2>/dev/null; then
  echo "[cnnkern] building the extension (a few minutes; CUDA sources add more)" >&2
  start=$(date +%s)
  MAX_JOBS="${MAX_JOBS:-$(nproc)}" quiet "$PY" -m pip install --no-build-isolation --no-deps -e .
  echo "[cnnkern] built in $(( $(date +%s) - start )) s" >&2
  echo "$stamp" > "$stamp_file"
fi
export PY
