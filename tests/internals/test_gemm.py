"""The CPU GEMM behind im2col and Winograd (csrc/cpu/gemm.h), through the internal tests-only
op cnnkern::_gemm, against torch.matmul in float64.

Integer-valued inputs make every partial sum exact in float32 and float64 alike, so most
checks are bit-exact; every kernel set this CPU can run is tested (on a CPU without AVX-512,
"avx512_emulated" runs the AVX-512 tile shapes and block sizes with AVX2 instructions). The
op computes into a NaN-filled buffer with a padded row stride and fails if the GEMM writes
outside C, so every call also checks beta = 0 ignores C's contents and rsc != N.
"""

import itertools

import pytest
import torch

import cnnkern  # noqa: F401  (loads the ops)
from conftest import load_testing_ops, testing_ops_lib, assert_close, assert_exact, int_tensor

ops = load_testing_ops()  # torch.ops.cnnkern_testing
ISAS = list(ops.gemm_isas())
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def gemm(a, b, c=None, trans_a=False, trans_b=False, prepack_a=False, custom_b=False,
         row_bias=None, isa=""):
    return ops.gemm(a, b, c, trans_a, trans_b, prepack_a, custom_b, row_bias, isa)


# How A and B reach the kernels: packed on the fly from strided views (gemm), A pre-packed
# (gemm_packed), A pre-packed and B packed by a caller's function (gemm_packed_custom_b).
MODES = {"raw": {}, "prepacked": dict(prepack_a=True), "custom_b": dict(custom_b=True)}


def reference(a, b, c=None, trans_a=False, trans_b=False):
    a = a.double().t() if trans_a else a.double()
    b = b.double().t() if trans_b else b.double()
    out = a @ b
    return out if c is None else out + c.double()


def operands(M, N, K, dtype, trans_a=False, trans_b=False, integer=True):
    make = (lambda *s: int_tensor(*s, dtype=dtype)) if integer else (
        lambda *s: torch.randn(*s, dtype=dtype))
    a = make(K, M) if trans_a else make(M, K)
    b = make(N, K) if trans_b else make(K, N)
    return a, b


def test_kernel_sets_listed():
    assert "generic" in ISAS
    assert len(set(ISAS)) == len(ISAS)
    assert set(ISAS) <= {"avx512", "avx2", "avx512_emulated", "generic"}


ODD = [1, 7, 13, 31, 33, 100, 257]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_odd_sizes_exact(isa, dtype):
    for M, N, K in itertools.product(ODD, ODD, [1, 13, 257]):
        a, b = operands(M, N, K, dtype)
        assert_exact(gemm(a, b, isa=isa), reference(a, b).to(dtype))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)], ids=["nn", "tn", "nt", "tt"])
def test_transposes_and_beta(trans_a, trans_b, dtype, isa, mode):
    M, N, K = 37, 45, 70
    a, b = operands(M, N, K, dtype, trans_a, trans_b)
    c = int_tensor(M, N, dtype=dtype)
    kw = dict(trans_a=trans_a, trans_b=trans_b, isa=isa, **MODES[mode])
    assert_exact(gemm(a, b, **kw), reference(a, b, None, trans_a, trans_b).to(dtype))
    assert_exact(gemm(a, b, c, **kw), reference(a, b, c, trans_a, trans_b).to(dtype))


# Sizes on both sides of every block edge of every kernel set: the micro-tiles (mr 4/6/12,
# nr 4/8/16/32), the depth blocks (kc 192/256: K = 192*2 + 1 and 256*2 + 1 cut into unequal
# block counts), the row blocks (mc 128/144/192/384) and column blocks (nc 1024/2048).
EDGES = [
    (5, 15, 191), (6, 16, 192), (7, 17, 193), (11, 31, 255), (12, 32, 256), (13, 33, 257),
    (143, 9, 385), (144, 10, 384), (145, 11, 383), (191, 3, 513), (192, 5, 512),
    (193, 7, 511), (383, 2, 20), (385, 3, 9),
    (3, 1023, 40), (2, 1025, 65), (5, 2047, 17), (4, 2049, 19), (2, 4100, 3),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_edges_exact(isa, dtype):
    for M, N, K in EDGES:
        a, b = operands(M, N, K, dtype)
        c = int_tensor(M, N, dtype=dtype)
        ref = reference(a, b)
        assert_exact(gemm(a, b, isa=isa), ref.to(dtype))
        assert_exact(gemm(a, b, c, isa=isa), (ref + c.double()).to(dtype))
        assert_exact(gemm(a, b, prepack_a=True, isa=isa), ref.to(dtype))
        assert_exact(gemm(a, b, custom_b=True, isa=isa), ref.to(dtype))


@pytest.mark.parametrize("mode", ["prepacked", "custom_b"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_bias(dtype, isa, mode):
    for M, N, K in [(1, 1, 1), (13, 31, 7), (145, 40, 300), (7, 33, 0)]:
        a, b = operands(M, N, K, dtype)
        bias = int_tensor(M, dtype=dtype)
        c = int_tensor(M, N, dtype=dtype)
        ref = reference(a, b) + bias.double()[:, None]
        kw = dict(row_bias=bias, isa=isa, **MODES[mode])
        assert_exact(gemm(a, b, **kw), ref.to(dtype))
        assert_exact(gemm(a, b, c, **kw), (ref + c.double()).to(dtype))


@pytest.mark.parametrize("isa", ISAS)
def test_k_zero(isa):
    a, b = torch.empty(5, 0), torch.empty(0, 7)
    assert_exact(gemm(a, b, isa=isa), torch.zeros(5, 7))
    c = torch.randn(5, 7)
    for mode in MODES.values():
        assert_exact(gemm(a, b, c, isa=isa, **mode), c)


@pytest.mark.parametrize("isa", ISAS)
def test_empty_m_or_n(isa):
    assert gemm(torch.randn(0, 4), torch.randn(4, 3), isa=isa).shape == (0, 3)
    assert gemm(torch.randn(3, 4), torch.randn(4, 0), isa=isa).shape == (3, 0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_expanded_views(isa, dtype):
    base_a = int_tensor(40, 90, dtype=dtype)
    base_b = int_tensor(70, 60, dtype=dtype)
    a = base_a[3:35:2, 1:89:3]      # 16 x 30, row stride 180, column stride 3
    b = base_b[::2, 5:55:2][:30]     # 30 x 25, both strides > 1
    assert_exact(gemm(a, b, isa=isa), reference(a, b).to(dtype))
    row = int_tensor(1, 30, dtype=dtype).expand(9, 30)    # zero row stride
    col = int_tensor(30, 1, dtype=dtype).expand(30, 11)   # zero column stride
    assert_exact(gemm(row, col, isa=isa), reference(row, col).to(dtype))
    assert_exact(gemm(row, col, prepack_a=True, isa=isa), reference(row, col).to(dtype))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_normal_large(isa, dtype):
    M, N, K = 300, 2100, 700
    a, b = operands(M, N, K, dtype, trans_a=True, integer=False)
    c = torch.randn(M, N, dtype=dtype)
    ref = reference(a, b, c, trans_a=True)
    out = gemm(a, b, c, trans_a=True, isa=isa)
    # A sum of K products: allow sqrt(K) roundings of the largest partial sums.
    assert_close(out, ref, scale=float(K) ** 0.5 * float(ref.abs().max()))


def _at_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(90, 700, 600), (700, 90, 600), (512, 196, 1000),
                                   (7, 3000, 300)], ids=["wide", "tall", "few_columns", "thin"])
def test_thread_count_does_not_change_bits(shape, isa):
    M, N, K = shape
    a, b = operands(M, N, K, torch.float32, integer=False)
    c = torch.randn(M, N)
    one = _at_threads(1, lambda: gemm(a, b, c, isa=isa))
    # every way in, at 1 and 2 threads, computes the very same bits
    for mode in MODES.values():
        for threads in (1, 2):
            assert_exact(_at_threads(threads, lambda: gemm(a, b, c, isa=isa, **mode)), one)


def test_errors_name_the_values():
    with pytest.raises(RuntimeError, match="row_bias must have size 3; got \\[4\\]"):
        gemm(torch.randn(3, 4), torch.randn(4, 2), prepack_a=True, row_bias=torch.randn(4))
    with pytest.raises(RuntimeError, match=r"op\(a\) is 3 x 4 but op\(b\) is 5 x 2"):
        gemm(torch.randn(3, 4), torch.randn(5, 2))
    with pytest.raises(RuntimeError, match="kernel set 'sse9' is not available.*generic"):
        gemm(torch.randn(3, 4), torch.randn(4, 2), isa="sse9")
    with pytest.raises(RuntimeError, match="float32 and float64.*Half"):
        gemm(torch.randn(3, 4).half(), torch.randn(4, 2).half())


def test_opcheck():
    a, b, c = torch.randn(5, 7), torch.randn(7, 3), torch.randn(5, 3)
    result = torch.library.opcheck(ops.gemm.default,
                                   (a, b, c, False, False, True, True, torch.randn(5), ""))
    assert all(v == "SUCCESS" for v in result.values()), result


def _run_with_isa(isa, code):
    import os
    import subprocess
    import sys
    env = dict(os.environ, CNNKERN_CPU_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


_CONV_UNDER_ENV = f"""
import sys
import torch, torch.nn.functional as F, cnnkern
sys.path.insert(0, {str(testing_ops_lib.HERE)!r})
import testing_ops
torch.manual_seed(0)
x = torch.randint(-3, 4, (2, 5, 9, 8)).float().requires_grad_()
w = torch.randint(-3, 4, (6, 5, 3, 3)).float().requires_grad_()
out = cnnkern.conv2d(x, w, padding=1, algo="im2col")
g = torch.randint(-3, 4, out.shape).float()
gx, gw = torch.autograd.grad(out, (x, w), g)
xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
ref = F.conv2d(xd, wd, padding=1)
rx, rw = torch.autograd.grad(ref, (xd, wd), g.double())
assert torch.equal(out.double(), ref) and torch.equal(gx.double(), rx) and torch.equal(gw.double(), rw)
# the default kernel set is the one named (FMA kernels round differently from generic's)
a, b = torch.randn(50, 300), torch.randn(300, 40)
gemm = lambda isa: testing_ops.load().gemm(a, b, None, False, False, False, False, None, isa)
assert torch.equal(gemm(""), gemm("generic"))
if "avx2" in testing_ops.load().gemm_isas():
    assert not torch.equal(gemm(""), gemm("avx2"))
print("ok")
"""


def test_environment_variable_picks_the_kernel_set():
    # In a fresh process, so that this one's environment stays as it is. (An unknown name
    # fails through the same check as isa= in test_errors_name_the_values.)
    result = _run_with_isa("generic", _CONV_UNDER_ENV)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
