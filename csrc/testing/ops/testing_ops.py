"""Builds and loads the tests-only ops (`torch.ops.cnnkern_testing.*`): the CPU GEMM with a
kernel-set argument, the CPU emulations of the CUDA implicit-GEMM / Winograd / pooling index
math and their plans (the .cpp files of this folder). They are not in `cnnkern._C`, so no user
installs them; the tests build them on first use with torch's JIT extension builder (ninja,
under build/testing_ops; an unchanged source is not recompiled) and link them against the
`cnnkern._C` that is imported, whose CPU GEMM, plans and op bodies they call.

    python csrc/testing/ops/testing_ops.py      builds, prints the library's path
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent.parent
ROOT = CSRC.parent
NAME = "cnnkern_testing"


def build() -> str:
    """Builds (if needed) and returns the path of the tests-only library."""
    import cnnkern
    from torch.utils import cpp_extension

    main_lib = cnnkern._C.__file__
    out = ROOT / "build" / "testing_ops"
    out.mkdir(parents=True, exist_ok=True)
    # -fno-gnu-unique and a private symbol table keep the library's inline functions and
    # templates its own; the symbols it needs from _C resolve through the DT_NEEDED entry.
    cpp_extension.load(
        name=NAME, sources=sorted(str(p) for p in HERE.glob("*.cpp")),
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O2", "-fopenmp", f"-DCNNKERN_WITH_CUDA={int(bool(cnnkern.cuda_built()))}"],
        extra_ldflags=[main_lib, f"-Wl,-rpath,{os.path.dirname(main_lib)}", "-fopenmp"],
        build_directory=str(out), is_python_module=False, verbose=False)
    return str(out / f"{NAME}.so")


_loaded = False


def load():
    """torch.ops.cnnkern_testing, built and loaded once per process."""
    global _loaded
    import torch

    if not _loaded:
        build()  # cpp_extension.load also loads the library into this process
        torch.library.register_fake(f"{NAME}::gemm", _gemm_fake)
        _loaded = True
    return getattr(torch.ops, NAME)


def _gemm_fake(a, b, c, trans_a, trans_b, prepack_a=False, custom_b=False, row_bias=None,
               isa=""):
    """gemm's shape (tests/internals/test_gemm.py opchecks it)."""
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    return a.new_empty((m, n))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(build())
