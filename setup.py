"""Builds cnnkern._C: the C++ kernels always, the CUDA kernels when they can be built.

Environment:
  CNNKERN_CUDA=0        never build the .cu sources
  CNNKERN_CUDA=1        build them, and fail if no CUDA toolkit / CUDA torch is found
  (unset)               build them when both a toolkit and a CUDA build of torch are here
  TORCH_CUDA_ARCH_LIST  GPU architectures; with no GPU visible we default to "9.0" (H100)
  MAX_JOBS              parallel compile jobs (ninja)
  CNNKERN_SANITIZE      e.g. "address,undefined": build the C++ with those sanitizers
                        (scripts/sanitize.sh runs the tests against such a build)
"""

import glob
import os
import shutil
import site
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _locate_cuda_home():
    """Sets CUDA_HOME to a real toolkit when it is unset.

    torch guesses CUDA_HOME as the parent of the `nvcc` on PATH; where that nvcc is a wrapper
    script (/usr/local/bin/nvcc here) the guess has no headers or libraries. Must run before
    torch.utils.cpp_extension is imported, which reads CUDA_HOME once.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in candidates:
        if (os.path.exists(os.path.join(home, "include", "cuda_runtime_api.h"))
                and os.path.exists(os.path.join(home, "bin", "nvcc"))):
            os.environ["CUDA_HOME"] = home
            return


_locate_cuda_home()

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def _cuda_wanted():
    flag = os.environ.get("CNNKERN_CUDA", "").strip()
    toolkit = cpp_extension.CUDA_HOME is not None
    cuda_torch = torch.version.cuda is not None
    if flag == "0":
        return False
    if flag == "1":
        if not (toolkit and cuda_torch):
            sys.exit(
                "CNNKERN_CUDA=1 but the CUDA part cannot be built: "
                f"CUDA toolkit {'found at ' + cpp_extension.CUDA_HOME if toolkit else 'not found'}, "
                f"torch {torch.__version__} is {'a CUDA build' if cuda_torch else 'a CPU-only build'}"
            )
        return True
    if flag not in ("",):
        sys.exit(f"CNNKERN_CUDA must be 0, 1 or unset; got {flag!r}")
    return toolkit and cuda_torch


def _pip_cuda_include_dirs():
    """torch's CUDA headers include cusparse.h & co., which pip ships in site-packages/nvidia/*/include."""
    dirs = []
    roots = site.getsitepackages() + [site.getusersitepackages()]
    roots += [os.path.dirname(os.path.dirname(torch.__file__))]
    for root in dict.fromkeys(roots):
        for inc in sorted(glob.glob(os.path.join(root, "nvidia", "*", "include"))):
            if inc not in dirs:
                dirs.append(inc)
    return dirs


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def _extension():
    with_cuda = _cuda_wanted()
    sources = _sources("csrc/*.cpp") + _sources("csrc/ops/*.cpp") + _sources("csrc/cpu/**/*.cpp")
    cxx_flags = ["-O3", "-fopenmp", "-DCNNKERN_WITH_CUDA=%d" % int(with_cuda)]
    include_dirs = [os.path.join(ROOT, "csrc")]
    kwargs = dict(extra_link_args=["-fopenmp"])
    sanitize = os.environ.get("CNNKERN_SANITIZE", "").strip()
    if sanitize:
        flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        cxx_flags = ["-O1", "-g"] + cxx_flags[1:] + flags
        kwargs["extra_link_args"] += flags
    if not with_cuda:
        return cpp_extension.CppExtension(
            "cnnkern._C", sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags}, **kwargs)

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to ask: build for the H100 the project targets (sm_90).
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    sources += _sources("csrc/cuda/*.cpp") + _sources("csrc/cuda/*.cu")
    include_dirs += _pip_cuda_include_dirs()
    nvcc_flags = ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "-DCNNKERN_WITH_CUDA=1"]
    return cpp_extension.CUDAExtension(
        "cnnkern._C", sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, **kwargs)


setup(
    packages=["cnnkern", "cnnkern._registrations", "cnnkern.conversion", "cnnkern.tools",
              "cnnkern.models", "cnnkern.bench"],
    package_dir={"cnnkern": "cnnkern", "cnnkern.models": "models", "cnnkern.bench": "bench"},
    package_data={"cnnkern.bench": ["layers/*.json"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
