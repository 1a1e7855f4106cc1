"""Builds the CUDA emulator's library: the project's CUDA backend (csrc/cuda: kernels and glue),
the public op schemas and op bodies (csrc/cnnkern.cpp, csrc/ops; csrc/core through them), compiled with g++ against
the emulator (this folder) into build/cuda_emu/<flavour>/libcnnkern_cuda_emu.so, which registers
the ops as `torch.ops.cnnkern_emu.*` on CPU tensors. No nvcc, and the main extension is not
rebuilt; only NVIDIA's headers are needed (a CUDA toolkit's, or those pip's CUDA torch brings).

    python csrc/testing/cuda_emu/build.py [--flavour plain|asan|tsan|coverage] [-v] [--shell-env]

prints the library's path (with --shell-env: the `export` lines that a process loading a
sanitizer flavour needs, for `eval`). Flavours:
  plain     -O1, for a process without sanitizers
  asan      AddressSanitizer (the test suite's default: scripts/test.sh preloads libasan), so
            an out-of-bounds read or write of a kernel stops with the kernel's line
  tsan      ThreadSanitizer (opt-in, see README): races between barriers by happens-before
  coverage  gcov instrumentation for the coverage report (scripts/cuda_emu_coverage.sh)

The .cu/.cuh files pass through translate.py (launch syntax, __shared__ declarations) into the
build folder; everything is compiled by ninja, so an edited kernel recompiles one file. A
content hash of every input skips even ninja when nothing changed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent.parent
ROOT = CSRC.parent
sys.path.insert(0, str(HERE))
import translate  # noqa: E402

LIB_NAME = "libcnnkern_cuda_emu.so"
FLAVOURS = {
    "plain": ["-O1"],
    "asan": ["-O1", "-fsanitize=address", "-fno-omit-frame-pointer"],
    "tsan": ["-O1", "-fsanitize=thread"],
    "coverage": ["-O0", "--coverage"],
}
# The engine's own files under ThreadSanitizer: not instrumented (the scheduler hands its
# bookkeeping from fiber to fiber without synchronisation, by design: only the kernels' memory
# is under test), but making the fiber and happens-before annotations (CUDA_EMU_TSAN).
ENGINE_FLAVOURS = dict(FLAVOURS, tsan=["-O1", "-DCUDA_EMU_TSAN=1"])


def build_dir(flavour: str) -> Path:
    return ROOT / "build" / "cuda_emu" / flavour


def _cuda_include() -> str:
    """A folder with NVIDIA's cuda_runtime.h, cuda_fp16.h, cuda_bf16.h and crt/."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "include"))
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include"))
    candidates += ["/usr/local/cuda/include"] + sorted(glob.glob("/usr/local/cuda-*/include"), reverse=True)
    import torch

    site = os.path.dirname(os.path.dirname(torch.__file__))
    candidates += sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))
    for inc in candidates:
        if os.path.exists(os.path.join(inc, "cuda_runtime.h")) and os.path.exists(
                os.path.join(inc, "crt", "host_defines.h")):
            return inc
    raise SystemExit("cuda_emu: no CUDA headers found (cuda_runtime.h with crt/); set CUDA_HOME")


def _torch_flags() -> tuple[list[str], list[str]]:
    import torch
    from torch.utils import cpp_extension

    inc = [f"-isystem{p}" for p in cpp_extension.include_paths()]
    inc.append(f"-isystem{sysconfig.get_paths()['include']}")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    libdir = cpp_extension.library_paths()[0]
    return inc + [f"-D_GLIBCXX_USE_CXX11_ABI={abi}"], [f"-L{libdir}", f"-Wl,-rpath,{libdir}",
                                                      "-lc10", "-ltorch_cpu", "-ltorch"]


def _sources() -> dict[str, list[Path]]:
    cuda = CSRC / "cuda"
    return {
        # The engine itself (torch-free).
        "engine": [HERE / f for f in ("engine.cpp", "fiber.cpp", "warp_ops.cpp", "mma.cpp",
                                      "ldmatrix.cpp", "async_copy.cpp", "runtime_api.cpp")],
        # The project's kernels, and the planted-bug kernels of the engine's own tests.
        "kernels": sorted(cuda.glob("*.cu")) + sorted((HERE / "planted").glob("*.cu")),
        "kernel_headers": sorted(cuda.glob("*.cuh")),
        # The glue and op bodies: everything a GPU build compiles besides the CPU backend; and
        # the engine's test ops.
        "glue": sorted(cuda.glob("*.cpp")) + sorted((CSRC / "ops").glob("*.cpp"))
                + [CSRC / "cnnkern.cpp", HERE / "torch_ops.cpp"],
    }


def _inputs_hash(flavour: str, srcs: dict[str, list[Path]]) -> str:
    h = hashlib.sha256(flavour.encode())
    files = sorted({*HERE.rglob("*"), *CSRC.glob("cuda/*"), *CSRC.glob("ops/*"), *CSRC.glob("core/*"),
                    CSRC / "cnnkern.cpp"})
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    import torch

    h.update(torch.__version__.encode())
    return h.hexdigest()


def runtime_env(flavour: str) -> dict[str, str]:
    """The environment a process needs to load the flavour's library: the sanitizer runtime
    preloaded (python is not instrumented) and its options. libstdc++ is preloaded with
    libasan, which intercepts __cxa_throw and must find the real one when it starts (python
    itself does not link libstdc++)."""
    def lib(name):
        return subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                              text=True, check=True).stdout.strip()

    if flavour == "asan":
        return {"LD_PRELOAD": f"{lib('libasan.so')} {lib('libstdc++.so')}",
                # CPython keeps objects alive at exit by design: no leak report.
                "ASAN_OPTIONS": "detect_leaks=0:alloc_dealloc_mismatch=0:halt_on_error=1"}
    if flavour == "tsan":
        # One intra-op thread: torch's OpenMP workers synchronise in uninstrumented libgomp,
        # which ThreadSanitizer cannot see (it would report torch's own copies as races).
        return {"LD_PRELOAD": f"{lib('libtsan.so')} {lib('libstdc++.so')}",
                "TSAN_OPTIONS": "halt_on_error=1:report_signal_unsafe=0",
                "OMP_NUM_THREADS": "1"}
    return {}


def _ninja_escape(s: str) -> str:
    return s.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def build(flavour: str = "plain", verbose: bool = False) -> Path:
    """Builds (if needed) and returns the path of the flavour's library."""
    if flavour not in FLAVOURS:
        raise SystemExit(f"cuda_emu: flavour must be one of {', '.join(FLAVOURS)}; got {flavour!r}")
    out = build_dir(flavour)
    lib = out / LIB_NAME
    srcs = _sources()
    digest = _inputs_hash(flavour, srcs)
    stamp = out / "inputs.sha256"
    if lib.exists() and stamp.exists() and stamp.read_text() == digest:
        return lib
    out.mkdir(parents=True, exist_ok=True)

    # The .cu/.cuh files, translated, under out/translated/cuda/ (found first on the include
    # path, so "cuda/implicit_gemm_kernel.cuh" means the translated header).
    translated = translate.translate_tree(srcs["kernels"] + srcs["kernel_headers"],
                                          out / "translated", CSRC)
    kernel_objs_src = [t for t in translated if t.suffix == ".cu"]

    torch_inc, torch_libs = _torch_flags()
    cuda_inc = _cuda_include()
    common = ["-std=c++20", "-fPIC", "-g", "-pthread", "-fvisibility=hidden", "-fno-gnu-unique",
              "-ffp-contract=off", "-DCNNKERN_CUDA_EMU", "-DCNNKERN_LIBRARY=cnnkern_emu",
              "-DCNNKERN_WITH_CUDA=1", "-D__CUDA_NO_HALF_OPERATORS__",
              "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-D__CUDA_NO_HALF2_OPERATORS__", f"-I{out / 'translated'}", f"-I{HERE / 'include'}",
              f"-I{CSRC}", f"-isystem{cuda_inc}"]
    base = common + FLAVOURS[flavour]
    pch_header = out / "torch_pch.h"
    # What every glue file includes (the op files include the per-operator ATen headers, not
    # ATen/ATen.h: a PCH of that takes half as long again).
    pch_text = "#include <torch/library.h>\n#include <ATen/core/Tensor.h>\n"
    if not pch_header.exists() or pch_header.read_text() != pch_text:
        pch_header.write_text(pch_text)

    e = _ninja_escape
    lines = [
        "ninja_required_version = 1.3",
        f"base = {' '.join(base)}",
        f"engine_base = {' '.join(common + ENGINE_FLAVOURS[flavour])}",
        f"torch_inc = {' '.join(torch_inc)}",
        "rule cxx",
        "  command = c++ -MMD -MF $out.d $base $extra -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX (emu) $in",
        "rule engine_cxx",
        "  command = c++ -MMD -MF $out.d $engine_base -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX (emu engine) $in",
        "rule pch",
        "  command = c++ -MMD -MF $out.d $base $torch_inc -x c++-header -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = PCH (emu) $in",
        "rule link",
        f"  command = c++ -shared $in -o $out -Wl,-Bsymbolic -Wl,--exclude-libs,ALL "
        f"{' '.join(FLAVOURS[flavour])} {' '.join(torch_libs)}",
        "  description = LINK (emu) $out",
        f"build {e(str(pch_header))}.gch: pch {e(str(pch_header))}",
    ]
    objs = []
    for s in srcs["engine"]:
        o = out / "obj" / "engine" / (s.name + ".o")
        lines += [f"build {e(str(o))}: engine_cxx {e(str(s))}"]
        objs.append(o)
    for s in kernel_objs_src:
        o = out / "obj" / "kernels" / (s.name + ".o")
        lines += [f"build {e(str(o))}: cxx {e(str(s))}", "  extra = -x c++"]
        objs.append(o)
    for s in srcs["glue"]:
        o = out / "obj" / "glue" / (s.parent.name + "_" + s.name + ".o")
        lines += [f"build {e(str(o))}: cxx {e(str(s))} | {e(str(pch_header))}.gch",
                  f"  extra = $torch_inc -include {e(str(pch_header))}"]
        objs.append(o)
    lines += [f"build {e(str(lib))}: link {' '.join(e(str(o)) for o in objs)}", ""]
    ninja_file = out / "build.ninja"
    text = "\n".join(lines)
    if not ninja_file.exists() or ninja_file.read_text() != text:
        ninja_file.write_text(text)

    ninja = shutil.which("ninja") or os.path.join(os.path.dirname(sys.executable), "ninja")
    jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
    res = subprocess.run([ninja, "-C", str(out), "-j", jobs], capture_output=not verbose, text=True)
    if res.returncode != 0:
        sys.stderr.write((res.stdout or "")[-20000:] + (res.stderr or "")[-5000:])
        raise SystemExit(f"cuda_emu: the {flavour} build failed (ninja -C {out})")
    stamp.write_text(digest)
    return lib


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flavour", default="plain", choices=sorted(FLAVOURS))
    ap.add_argument("-v", "--verbose", action="store_true", help="show the compiler commands")
    ap.add_argument("--shell-env", action="store_true",
                    help="print `export` lines for the runtime environment instead of the path")
    args = ap.parse_args(argv)
    lib = build(args.flavour, verbose=args.verbose)
    if args.shell_env:
        import shlex

        for k, v in runtime_env(args.flavour).items():
            print(f"export {k}={shlex.quote(v)}")
    else:
        print(lib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
