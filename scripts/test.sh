#!/usr/bin/env bash
# The test suite (GPU tests skip without CUDA). Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
"$PY" -c "import torch, cnnkern; print(f'[cnnkern] torch {torch.__version__}, cuda kernels built: {cnnkern.cuda_built()}, GPU: {torch.cuda.is_available()}')"
exec "$PY" -m pytest -q "$@"
