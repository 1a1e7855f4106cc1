"""Shared test helpers for cnnkern.

Test modules import the helpers below directly (``from conftest import ...``); pytest puts
this directory on sys.path (rootdir-relative "prepend" import mode, no __init__.py here).

- ``seed`` (autouse): every test starts from the same RNG state.
- ``requires_cuda``: skip marker for GPU tests (CUDA visible to torch AND built into cnnkern).
- ``dev`` (fixture): the backend a test of an op runs on, once per backend: "cuda" (a GPU;
  skipped without one) and "cuda_emu" (the CUDA emulator, csrc/testing/cuda_emu: the same
  glue and kernels on the CPU) by default; with
  ``@pytest.mark.parametrize("dev", DEVICES, indirect=True)`` also "cpu", and ``per_device``
  gives each device its own cases (``cross``: the product of parameter lists). ``dev.device`` is
  where the test makes its tensors (``on_dev``: the test's factory calls default to it).
- ``tol`` / ``assert_close`` / ``assert_exact``: tolerances keyed by dtype.
- ``int_tensor``: integer-valued float tensors, which make fp32 results exact.
- ``OpRecorder``: a TorchDispatchMode that records which ops ran, to prove the cnnkern
  kernels (and not aten's) did the work.
"""

import collections
import itertools
import logging
import math
import os
import sys
from dataclasses import dataclass, field

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import cnnkern


def _load_hypothesis_profile():
    """The project's hypothesis profiles, for every property test: "ci" (the default: bounded,
    fixed seed) and "long" (CNNKERN_HYPOTHESIS_PROFILE=long, a deeper search; pass
    --hypothesis-seed=N to vary it)."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the property tests skip themselves
        return
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                         HealthCheck.filter_too_much])
    settings.register_profile("ci", max_examples=60, derandomize=True, **common)
    settings.register_profile("long", max_examples=3000, **common)
    settings.load_profile(os.environ.get("CNNKERN_HYPOTHESIS_PROFILE", "ci"))


_load_hypothesis_profile()


def pytest_configure(config):
    # Also declared in pyproject.toml; registering here keeps --strict-markers happy when the
    # tests are run from another rootdir.
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "cuda_emu: runs the CUDA backend in the CUDA emulator")
    config.addinivalue_line("markers", "cuda_work_in_child: the test's CUDA work runs in a "
                            "child process (which checks it ran)")
    config.addinivalue_line("markers", "slow: longer tests (torch.compile with inductor)")


# torch.compile's structured-trace logger can propagate into pytest's log capture and flood the
# report of a failing compile test with DEBUG lines; it is not ours to show.
logging.getLogger("torch.__trace").propagate = False

# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------

# torch.cuda.is_available() first: cnnkern.cuda_available() is only asked when torch sees a GPU.
CUDA_OK = bool(torch.cuda.is_available() and cnnkern.cuda_available())

requires_cuda = pytest.mark.skipif(
    not CUDA_OK, reason="needs a CUDA GPU and cnnkern built with its CUDA kernels"
)


# The CUDA emulator's Python side (csrc/testing/cuda_emu/emulator.py).
EMU_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc",
                       "testing", "cuda_emu")
sys.path.insert(0, EMU_DIR)
import emulator  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(EMU_DIR), "ops"))
import testing_ops as testing_ops_lib  # noqa: E402  (csrc/testing/ops/testing_ops.py)


def load_testing_ops():
    """torch.ops.cnnkern_testing: the tests-only ops (csrc/testing/ops: the CPU GEMM by kernel
    set, the CPU emulations of the CUDA index math and their plans), built on first use and
    linked against the imported cnnkern._C. Never part of the installed package."""
    return testing_ops_lib.load()


@dataclass(frozen=True)
class Backend:
    """A backend under test: the CPU, a GPU, or the emulator running the CUDA backend's code on
    the CPU."""

    name: str  # "cpu", "cuda" or "cuda_emu"
    device: torch.device
    # cuda_emu: the emulator.CudaEmulation mode the test runs in (its `routed` counts the calls
    # it sent to the emulated backend).
    emulation: object = field(default=None, compare=False, repr=False)

    @property
    def emulated(self):
        return self.name == "cuda_emu"

    @property
    def is_cuda(self):
        """The CUDA backend, on a GPU or emulated."""
        return self.name != "cpu"

    def algorithms(self):
        if self.emulated:
            return emulator.algorithms()
        return cnnkern.algorithms(self.device.type)

    def reorder(self):
        """Emulator: the next runs take another thread and block order (so that "two runs agree
        bit for bit" also means "whatever the schedule"). GPU: nothing to do."""
        if self.emulated:
            order, seed = emulator.current_order()
            emulator.set_order(emulator.ORDERS[(emulator.ORDERS.index(order) + 1) % 3], seed + 1)

    def why_not(self, input_size, weight_size, stride, padding, dilation, groups, dtype, algo):
        """The backend's rules' reason `algo` cannot run the problem ("" if it can)."""
        args = (list(input_size), list(weight_size), stride, padding, dilation, groups, dtype)
        if self.emulated:
            return emulator.why_not(*args, algo)
        return torch.ops.cnnkern.conv2d_why_not(*args, self.device.type, algo)


CPU = pytest.param("cpu", id="cpu")
GPU = pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda], id="cuda")
EMULATED = pytest.param("cuda_emu", marks=[pytest.mark.cuda_emu], id="cuda_emu")
# Every backend of an op: @pytest.mark.parametrize("dev", DEVICES, indirect=True)
DEVICES = [CPU, GPU, EMULATED]
# The CUDA backend, on a GPU and emulated (the `dev` fixture's default): for what the CPU
# backend lacks (float16/bfloat16, which its kernels do not take), with a comment saying so.
CUDA_DEVICES = [GPU, EMULATED]
# Where torch.compile can run the ops: the emulator is a TorchDispatchMode, under which
# torch.compile does not trace ("non-infra torch dispatch mode present").
COMPILABLE_DEVICES = [CPU, GPU]
# For tests that only a GPU can answer (streams, graphs, layer-scale shapes, other devices):
# @pytest.mark.parametrize("dev", GPU_ONLY, indirect=True)
GPU_ONLY = [GPU]


_ParameterSet = type(pytest.param(None))


def _param(value):
    return value if isinstance(value, _ParameterSet) else pytest.param(value, id=str(value))


def cross(*lists):
    """The product of parameter lists (pytest.params or plain values) as one list of
    pytest.params: values concatenated, marks merged, ids joined with "-"."""
    out = []
    for combo in itertools.product(*lists):
        ps = [_param(v) for v in combo]
        out.append(pytest.param(*(v for p in ps for v in p.values),
                                marks=[m for p in ps for m in p.marks],
                                id="-".join(str(p.id) for p in ps)))
    return out


def per_device(cpu=(), gpu=(), emu=None):
    """Parameters for ("dev", ...) with indirect=["dev"], each device with its own cases
    (pytest.params or plain values, e.g. from `cross`): `cpu` on the CPU, `gpu` on a GPU, `emu`
    (default: gpu's) in the emulator, where a GPU-sized shape can take minutes (every thread is
    a fiber there)."""
    emu = gpu if emu is None else emu
    return [pytest.param(name, *p.values, marks=[*marks, *p.marks], id=f"{name}-{p.id}")
            for name, marks, cases in (("cpu", (), cpu), ("cuda", GPU.marks, gpu),
                                       ("cuda_emu", EMULATED.marks, emu))
            for p in map(_param, cases)]


def per_backend(gpu_cases, emu_cases, id_of=lambda c: c.id):
    """Parameters for ("dev", "case") with indirect=["dev"]: gpu_cases on the GPU, emu_cases in
    the emulator (see per_device)."""
    return per_device(gpu=[pytest.param(c, id=id_of(c)) for c in gpu_cases],
                      emu=[pytest.param(c, id=id_of(c)) for c in emu_cases])


@pytest.fixture(params=[GPU, EMULATED])
def dev(request):
    """The backend of a test of an op (see the module docstring): the CUDA backends by default,
    "cpu" too where a test asks for it. Under "cuda_emu" the test runs inside
    emulator.CudaEmulation, with the engine's thread and block order fixed per test (forward,
    reverse or random: across the suite every order is used)."""
    if request.param in ("cpu", "cuda"):
        yield Backend(request.param, torch.device(request.param))
        return
    emulator.load()
    order, seed = emulator.order_for(request.node.nodeid)
    emulator.set_order(order, seed)
    _EMU_ORDERS_USED[order] += 1
    with emulator.CudaEmulation() as mode:
        yield Backend("cuda_emu", torch.device("cpu"), mode)
    report = getattr(request.node, "report_call", None)
    in_child = request.node.get_closest_marker("cuda_work_in_child") is not None
    if report is not None and report.passed and mode.routed == 0 and not in_child:
        pytest.fail("no cnnkern op ran on the emulated CUDA backend: the test judged nothing")


@pytest.fixture
def on_dev(dev):
    """`dev`, with the test's factory calls (tensors, modules) defaulting to its device."""
    with torch.device(dev.device):
        yield dev


_EMU_ORDERS_USED = collections.Counter()


def pytest_terminal_summary(terminalreporter):
    if _EMU_ORDERS_USED:
        used = ", ".join(f"{n} {o}" for o, n in sorted(_EMU_ORDERS_USED.items()))
        terminalreporter.write_line(f"cuda_emu: {emulator.loaded()} build; thread/block orders: "
                                    f"{used}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keeps the test's own outcome on the item for fixtures' teardown (see `dev`).
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.report_call = report


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
    yield 0


# ---------------------------------------------------------------------------------------------
# Tolerances
# ---------------------------------------------------------------------------------------------

# (rtol, atol) per dtype; atol is multiplied by the scale of the reference (see assert_close).
_TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (1.6e-2, 1e-2),
}


def tol(dtype):
    """(rtol, atol) for results computed in `dtype`."""
    return _TOL[dtype]


def _scale(t):
    if t.numel() == 0:
        return 1.0
    finite = t[torch.isfinite(t)]
    if finite.numel() == 0:
        return 1.0
    return max(1.0, float(finite.abs().max()))


def assert_close(actual, expected, dtype=None, scale=None, equal_nan=False, msg=None):
    """Compare `actual` with a reference, tolerances keyed by `dtype` (default: actual's).

    `expected` may be computed in a wider dtype (e.g. float64); it is cast to actual's dtype.
    The absolute tolerance is scaled by max(1, max|expected|) unless `scale` is given.
    """
    assert isinstance(actual, torch.Tensor), f"expected a tensor, got {type(actual)}"
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    dtype = dtype or actual.dtype
    rtol, atol = tol(dtype)
    if scale is None:
        scale = _scale(expected.detach().double().cpu())
    torch.testing.assert_close(
        actual.detach(),
        expected.detach().to(actual.dtype).to(actual.device),
        rtol=rtol,
        atol=atol * scale,
        equal_nan=equal_nan,
        check_stride=False,
        msg=msg,
    )


def assert_exact(actual, expected, equal_nan=False):
    """Bit-for-bit equal values (and same shape and dtype); strides are not compared."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(
        actual.detach(),
        expected.detach().to(actual.device),
        rtol=0,
        atol=0,
        equal_nan=equal_nan,
        check_stride=False,
    )


def int_tensor(*shape, lo=-3, hi=4, dtype=torch.float32, device=None):
    """Integer-valued floats in [lo, hi): sums of their products are exact in fp32. On `device`,
    else torch's default device (the CPU unless a `torch.device` context says otherwise)."""
    return torch.randint(lo, hi, shape).to(dtype=dtype, device=device)


def plant_non_finite(where, value, x, g):
    """Put `value` (inf or NaN) into the input or grad_output of a 2x3x9x13-sized case: at
    column 0 (read by the previous row's lanes past its end in a flat layout) and at the last
    column 12 of a row. The direct kernels' vector lanes past a row read the next row or stale
    scratch and must drop (forward, grad-input) or mask (grad-weight) them."""
    t = x if where == "input" else g
    t[0, min(1, t.shape[1] - 1), 4, 0] = value
    t[1, min(2, t.shape[1] - 1), 7, 12] = value


def assert_non_finite_where_reference_has_it(got, ref):
    """Each result bit-equal (NaN == NaN) to its float64 reference, which keeps some finite
    values: so an inf/NaN reached exactly the outputs it feeds."""
    for a, r in zip(got, ref):
        assert torch.isfinite(r).any()  # only meaningful if some stay finite
        assert_exact(a, r.float(), equal_nan=True)


def fp64_error_ratio(result, reference64, torch_result):
    """max|result - ref64| / max(max|torch_result - ref64|, tiny): the flash-attention rule."""
    if reference64.numel() == 0:
        return 0.0, 0.0
    err = (result.double() - reference64).abs().max().item()
    torch_err = (torch_result.double() - reference64).abs().max().item()
    return err, torch_err


def assert_lowp_error_within(result, reference64, torch_result, dtype, k, what=""):
    """The flash-attention rule for float16/bfloat16: the error against the float64 reference
    at most k times torch's own error in `dtype`, plus one eps of the reference's scale (for
    results torch happens to get exactly right)."""
    err, torch_err = fp64_error_ratio(result, reference64, torch_result)
    floor = torch.finfo(dtype).eps * max(1.0, reference64.abs().max().item())
    assert err <= k * torch_err + floor, (what, err, torch_err)


def check_conv_low_precision(case, dtype, device, k, algo="direct"):
    """cnnkern.conv2d on a ConvCase (tests/shapes.py) in float16/bfloat16, standard-normal input
    and bias, weights scaled by 1/sqrt(fan-in), judged by assert_lowp_error_within against
    F.conv2d in float64 and in `dtype`."""
    fan_in = case.C // case.groups * case.R * case.S
    x = torch.randn(case.input_shape, device=device).to(dtype)
    w = (torch.randn(case.weight_shape, device=device) / fan_in ** 0.5).to(dtype)
    b = torch.randn(case.K, device=device).to(dtype)
    ref64 = torch.nn.functional.conv2d(x.double(), w.double(), b.double(), **case.kwargs())
    ours = cnnkern.conv2d(x, w, b, algo=algo, **case.kwargs())
    theirs = torch.nn.functional.conv2d(x, w, b, **case.kwargs())
    assert ours.dtype == dtype
    assert_lowp_error_within(ours, ref64, theirs, dtype, k)


def tf32_reference(x):
    """Round float32 values to tf32 (what cvt.rna.tf32.f32 does) by arithmetic, not bits: to the
    nearest multiple of the value's tf32 spacing 2^(max(E, -126) - 10), halves away from zero;
    past the largest tf32 value, infinity. Any device; returns float32."""
    x = x.float().double()
    a = x.abs()
    finite = torch.isfinite(x) & (a > 0)
    e = torch.floor(torch.log2(torch.where(finite, a, torch.ones_like(a))))
    # log2 may land one off next to powers of two; fix with the defining inequality.
    e = torch.where(torch.exp2(e) > a, e - 1, e)
    e = torch.where(torch.exp2(e + 1) <= a, e + 1, e)
    spacing = torch.exp2(torch.clamp(e, min=-126) - 10)
    r = torch.floor(a / spacing + 0.5) * spacing
    largest = (2 - 2.0 ** -10) * 2.0 ** 127
    r = torch.where(r > largest, torch.full_like(r, float("inf")), r)
    return torch.where(finite, torch.copysign(r, x), x).float()


# ---------------------------------------------------------------------------------------------
# Which ops ran
# ---------------------------------------------------------------------------------------------


class OpRecorder(TorchDispatchMode):
    """Records the qualified name ("ns::op") and arguments of every op dispatched under it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls.append((f"{func.namespace}::{func._opname}", args, kwargs))
        return func(*args, **kwargs)

    @property
    def names(self):
        return [name for name, _, _ in self.calls]

    def args_of(self, name):
        return [args for n, args, _ in self.calls if n == name]


def numel(shape):
    return math.prod(shape)


# ---------------------------------------------------------------------------------------------
# CPU instruction-set variants
# ---------------------------------------------------------------------------------------------

# The CPU direct-conv and pooling kernels come in per-ISA variants chosen at run time;
# CNNKERN_CPU_ISA forces one (read on every call), so one machine can test each it can run:
# avx512_emulated (the AVX-512 variants' vector widths on AVX2 instructions) on every AVX2
# machine, avx512 where the CPU has it (families without an AVX-512 variant run AVX2 there).
CPU_ISAS = ["generic", "avx2", "avx512_emulated", "avx512"]


def _isa_runs(isa):
    import os

    old = os.environ.get("CNNKERN_CPU_ISA")
    os.environ["CNNKERN_CPU_ISA"] = isa
    try:
        cnnkern.max_pool2d(torch.zeros(1, 1, 2, 2), 2)
        return True
    except (RuntimeError, ValueError):
        return False
    finally:
        if old is None:
            del os.environ["CNNKERN_CPU_ISA"]
        else:
            os.environ["CNNKERN_CPU_ISA"] = old


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request, monkeypatch):
    """Runs the test once per CPU kernel variant this machine supports (others skip)."""
    if not _isa_runs(request.param):
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    monkeypatch.setenv("CNNKERN_CPU_ISA", request.param)
    return request.param


@pytest.fixture
def threads():
    """Sets torch's (and cnnkern's) intra-op thread count for a block; restores it after."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)
