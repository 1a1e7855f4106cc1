"""cnnkern.conv2d forward and backward against torch.nn.functional.conv2d, on every backend:
the CPU, a GPU ("cuda", where cuDNN is torch's side) and the CUDA emulator ("cuda_emu"; the
`dev` fixture, tests/conftest.py). fp32 comparisons on a GPU run with TF32 off.

Two comparisons over the shape matrix (tests/shapes.py):
- integer-valued inputs and grad_output, algo="direct": results must be *exactly* the float64
  reference (every partial sum is an integer well below 2**24);
- standard-normal inputs (default algo on the CPU, "direct" on CUDA; every CUDA algorithm is
  checked by test_each_built_algorithm_matches_torch and tests/ops/test_cuda_gemm.py): within
  the dtype's tolerance of the float64 reference.
For fp16/bf16 the rule is flash-attention's: the error against a float64 reference may be at
most K_LOWP times torch's own error in that dtype (plus a tiny floor for results torch happens
to get exactly right).

The emulator runs every thread as a fiber: it takes the shape matrix on a subset (as a GPU
does where the CPU takes all of it), and the small tests as they are.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import (DEVICES, OpRecorder, assert_close, assert_exact, assert_lowp_error_within,
                      check_conv_low_precision, cross, int_tensor, per_device)
from shapes import CONV_CASES, conv_params

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
F32 = [DTYPES[0]]
LOWP = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
BIAS = [pytest.param(True, id="bias"), pytest.param(False, id="nobias")]
BATCHED = [c for c in CONV_CASES if c.N > 0]
K_LOWP = 3.0


@pytest.fixture(autouse=True)
def no_tf32():
    old_cudnn, old_mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_cudnn, old_mm


def _leaf(t):
    return t.detach().clone().requires_grad_(True)


def conv_and_grads(fn, x, w, b, grad_out, **kwargs):
    """Runs fn(x, w, b, **kwargs), backpropagates grad_out; returns (out, gx, gw, gb)."""
    x, w = _leaf(x), _leaf(w)
    b = _leaf(b) if b is not None else None
    out = fn(x, w, b, **kwargs)
    out.backward(grad_out)
    return out, x.grad, w.grad, (b.grad if b is not None else None)


def reference(x, w, b, grad_out, **kwargs):
    """F.conv2d in float64 (exact for integer-valued data)."""
    return conv_and_grads(
        F.conv2d, x.double(), w.double(), None if b is None else b.double(),
        grad_out.double(), **kwargs)


def check_all(got, ref, exact):
    names = ("output", "grad_input", "grad_weight", "grad_bias")
    for name, g, r in zip(names, got, ref):
        if r is None:
            assert g is None, name
            continue
        assert g is not None, f"{name} is None"
        assert g.dtype == got[0].dtype, f"{name} dtype {g.dtype}"
        assert g.device == r.device, f"{name} on {g.device}, input on {r.device}"
        if exact:
            assert_exact(g, r.to(g.dtype))
        else:
            assert_close(g, r, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------
# The shape matrix
# ---------------------------------------------------------------------------------------------


def test_algorithms_and_auto(dev):
    algos = dev.algorithms()
    assert {"direct", "im2col", "winograd", "winograd_f2"} <= set(algos), algos
    if dev.name == "cuda":
        assert cnnkern.cuda_built() and cnnkern.cuda_available()
    # "auto" picks one of them and runs.
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    assert cnnkern.conv2d(x, torch.randn(3, 2, 3, 3, device=dev.device)).shape == (1, 3, 3, 3)


@pytest.mark.parametrize("dev, case, dtype, bias", per_device(
    cpu=cross(conv_params(), DTYPES, BIAS), gpu=cross(conv_params(BATCHED[::3]), F32, BIAS[:1])),
    indirect=["dev"])
def test_matrix_exact_integer_inputs(case, dtype, bias, dev):
    x = int_tensor(*case.input_shape, dtype=dtype, device=dev.device)
    w = int_tensor(*case.weight_shape, dtype=dtype, device=dev.device)
    b = int_tensor(case.K, dtype=dtype, device=dev.device) if bias else None
    g = int_tensor(*case.output_shape, dtype=dtype, device=dev.device)
    got = conv_and_grads(cnnkern.conv2d, x, w, b, g, algo="direct", **case.kwargs())
    ref = reference(x, w, b, g, **case.kwargs())
    assert tuple(got[0].shape) == case.output_shape
    check_all(got, ref, exact=True)


@pytest.mark.parametrize("dev, algo, case, dtype", per_device(
    cpu=cross(["auto"], conv_params(), DTYPES), gpu=cross(["direct"], conv_params(), DTYPES)),
    indirect=["dev"])
def test_matrix_random_normal(case, dtype, algo, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)
    w = torch.randn(case.weight_shape, dtype=dtype, device=dev.device)
    b = torch.randn(case.K, dtype=dtype, device=dev.device)
    g = torch.randn(case.output_shape, dtype=dtype, device=dev.device)
    got = conv_and_grads(cnnkern.conv2d, x, w, b, g, algo=algo, **case.kwargs())
    ref = reference(x, w, b, g, **case.kwargs())
    check_all(got, ref, exact=False)


# float16/bfloat16 on every backend: CUDA's half kernels ("direct" here; the implicit GEMM in
# test_cuda_gemm.py), and on the CPU every algorithm (float32 kernels on float32 copies, one
# rounding of the result: csrc/cpu/common/half_via_float32.h; the im2col forward converts in
# registers instead: tests/ops/test_cpu_half_im2col.py).
CPU_ALGOS = ["auto", "direct", "im2col"]
WINOGRAD_ALGOS = ["winograd", "winograd_f2"]


def _winograd_shape(case):
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return (case.R, case.S) == (3, 3) and pair(case.stride) == (1, 1) and \
        pair(case.dilation) == (1, 1)


LOWP_CASES = BATCHED[::2]
LOWP_WINOGRAD_CASES = [c for c in BATCHED if _winograd_shape(c)]


@pytest.mark.parametrize("dev, algo, case, dtype", per_device(
    cpu=cross(CPU_ALGOS, conv_params(LOWP_CASES), LOWP)
    + cross(WINOGRAD_ALGOS, conv_params(LOWP_WINOGRAD_CASES), LOWP),
    gpu=cross(["direct"], conv_params(LOWP_CASES), LOWP)), indirect=["dev"])
def test_low_precision_error_vs_torch(case, dtype, algo, dev):
    check_conv_low_precision(case, dtype, dev.device, K_LOWP, algo=algo)


LOWP_BACKWARD = {  # (input size, weight size, kwargs): a strided conv, a grouped Winograd shape
    "s2": ((2, 8, 12, 12), (16, 8, 3, 3), dict(stride=2, padding=1)),
    "3x3_g2": ((2, 8, 10, 9), (12, 4, 3, 3), dict(padding=1, groups=2)),
}
LAYOUTS = [pytest.param(torch.contiguous_format, id="nchw"),
           pytest.param(torch.channels_last, id="nhwc")]


@pytest.mark.parametrize("dev, algo, shape, layout, dtype", per_device(
    cpu=cross(CPU_ALGOS, list(LOWP_BACKWARD), LAYOUTS, LOWP)
    + cross(WINOGRAD_ALGOS, ["3x3_g2"], LAYOUTS, LOWP),
    gpu=cross(["direct"], ["s2"], LAYOUTS[:1], LOWP)), indirect=["dev"])
def test_low_precision_backward_error_vs_torch(algo, shape, layout, dtype, dev):
    """Output, grad_input, grad_weight and grad_bias, each within K_LOWP x torch's error."""
    xs, ws, kw = LOWP_BACKWARD[shape]
    x = torch.randn(xs, device=dev.device).to(dtype).contiguous(memory_format=layout)
    w = (torch.randn(ws, device=dev.device) / (ws[1] * 9) ** 0.5).to(dtype)
    b = torch.randn(ws[0], device=dev.device).to(dtype)
    out_shape = F.conv2d(x.float(), w.float(), **kw).shape
    g = torch.randn(out_shape, device=dev.device).to(dtype).contiguous(memory_format=layout)
    ours = conv_and_grads(cnnkern.conv2d, x, w, b, g, algo=algo, **kw)
    theirs = conv_and_grads(F.conv2d, x, w, b, g, **kw)
    ref = reference(x, w, b, g, **kw)
    for i, what in enumerate(("out", "grad_input", "grad_weight", "grad_bias")):
        assert ours[i].dtype == dtype, what
        assert_lowp_error_within(ours[i], ref[i], theirs[i], dtype, K_LOWP, what)
    if layout == torch.channels_last:  # torch's layout rule, kept in half too
        assert ours[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", LOWP)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_low_precision_conv_transpose2d_error_vs_torch(dtype, dev):
    x = torch.randn(2, 6, 7, 8, device=dev.device).to(dtype)
    w = (torch.randn(6, 4, 3, 3, device=dev.device) / 4.3).to(dtype)
    b = torch.randn(8, device=dev.device).to(dtype)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    ours = cnnkern.conv_transpose2d(x, w, b, **kw)
    ref64 = F.conv_transpose2d(x.double(), w.double(), b.double(), **kw)
    theirs = F.conv_transpose2d(x, w, b, **kw)
    assert ours.dtype == dtype
    assert_lowp_error_within(ours, ref64, theirs, dtype, K_LOWP)


@pytest.mark.parametrize("algo", ["auto", "direct", "im2col", "winograd", "winograd_f2"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_each_built_algorithm_matches_torch(algo, dev):
    if algo != "auto" and algo not in dev.algorithms():
        pytest.skip(f"{algo} not built for {dev.name}")
    x = torch.randn(2, 16, 14, 14, device=dev.device)
    w = torch.randn(32, 16, 3, 3, device=dev.device)
    b = torch.randn(32, device=dev.device)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    out = cnnkern.conv2d(x, w, b, padding=1, algo=algo)
    scale = 10.0 if algo.startswith("winograd") or algo == "auto" else 1.0
    assert_close(out, ref, scale=scale * ref.abs().max().item())


@pytest.mark.parametrize("case", conv_params(BATCHED[:12]))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_matrix_raw_backward_ops(case, dev):
    """The registered backward ops themselves, against aten.convolution_backward."""
    x = int_tensor(*case.input_shape, dtype=torch.float32, device=dev.device)
    w = int_tensor(*case.weight_shape, dtype=torch.float32, device=dev.device)
    g = int_tensor(*case.output_shape, dtype=torch.float32, device=dev.device)
    pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]  # noqa: E731
    st, pd, dl = pair(case.stride), pair(case.padding), pair(case.dilation)
    gi_ref, gw_ref, _ = torch.ops.aten.convolution_backward(
        g.double(), x.double(), w.double(), None, st, pd, dl, False, [0, 0], case.groups,
        [True, True, False])
    gi = torch.ops.cnnkern.conv2d_backward_input(g, w, list(x.shape), st, pd, dl, case.groups,
                                                 "direct")
    gw = torch.ops.cnnkern.conv2d_backward_weight(g, x, list(w.shape), st, pd, dl, case.groups,
                                                  "direct")
    assert_exact(gi, gi_ref.float())
    assert_exact(gw, gw_ref.float())


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_empty_batch_grads_are_zero(dev):
    x = torch.randn(0, 3, 6, 6, device=dev.device)
    w = torch.randn(4, 3, 3, 3, device=dev.device)
    b = torch.randn(4, device=dev.device)
    g = torch.randn(0, 4, 6, 6, device=dev.device)
    out, gx, gw, gb = conv_and_grads(cnnkern.conv2d, x, w, b, g, padding=1)
    assert out.shape == (0, 4, 6, 6)
    assert gx.shape == (0, 3, 6, 6)
    assert_exact(gw, torch.zeros(4, 3, 3, 3, device=dev.device))
    assert_exact(gb, torch.zeros(4, device=dev.device))


# ---------------------------------------------------------------------------------------------
# It really is cnnkern doing the work
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_dispatches_to_cnnkern_ops_not_aten(dev):
    x = torch.randn(1, 3, 6, 6, requires_grad=True, device=dev.device)
    w = torch.randn(4, 3, 3, 3, requires_grad=True, device=dev.device)
    b = torch.randn(4, requires_grad=True, device=dev.device)
    with OpRecorder() as rec:
        out = cnnkern.conv2d(x, w, b, padding=1)
        out.sum().backward()
    names = rec.names
    assert "cnnkern::conv2d" in names
    assert "cnnkern::conv2d_backward_input" in names
    assert "cnnkern::conv2d_backward_weight" in names
    aten_convs = [n for n in names if n.startswith("aten::") and "conv" in n]
    assert not aten_convs, f"aten convolution ran: {aten_convs}"


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_algo_string_reaches_the_op(dev):
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    w = torch.randn(3, 2, 3, 3, device=dev.device)
    with OpRecorder() as rec:
        cnnkern.conv2d(x, w, algo="direct")
    calls = rec.args_of("cnnkern::conv2d")
    assert len(calls) == 1
    assert "direct" in calls[0], calls[0]


# ---------------------------------------------------------------------------------------------
# Argument forms, output dtype
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride, padding, dilation", [
    (2, 1, 1), ((2, 2), (1, 1), (1, 1)), ([2, 1], [0, 2], [1, 2]), ((1, 2), (2, 1), (2, 1)),
])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_int_tuple_list_arguments(stride, padding, dilation, dev):
    x = int_tensor(2, 3, 9, 10, device=dev.device)
    w = int_tensor(4, 3, 3, 3, device=dev.device)
    out = cnnkern.conv2d(x, w, None, stride, padding, dilation)
    ref = F.conv2d(x.double(), w.double(), None, stride, padding, dilation)
    assert_exact(out, ref.float())


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_keyword_arguments_and_output_dtype(dev):
    x = int_tensor(1, 4, 7, 7, dtype=torch.float64, device=dev.device)
    w = int_tensor(6, 2, 3, 3, dtype=torch.float64, device=dev.device)
    b = int_tensor(6, dtype=torch.float64, device=dev.device)
    out = cnnkern.conv2d(input=x, weight=w, bias=b, stride=2, padding=1, dilation=1, groups=2,
                         algo="auto")
    assert out.dtype == torch.float64 and out.device.type == dev.device.type
    assert_exact(out, F.conv2d(x, w, b, stride=2, padding=1, groups=2))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_no_grad_and_requires_grad_flags(dev):
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    w = torch.randn(3, 2, 3, 3, device=dev.device)
    assert not cnnkern.conv2d(x, w).requires_grad
    assert cnnkern.conv2d(x, w.requires_grad_()).requires_grad
    with torch.no_grad():
        assert not cnnkern.conv2d(x, w).requires_grad


@pytest.mark.parametrize("which", ["input", "weight", "bias", "input+bias"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_partial_requires_grad(which, dev):
    x = int_tensor(2, 3, 6, 7, device=dev.device)
    w = int_tensor(4, 3, 3, 3, device=dev.device)
    b = int_tensor(4, device=dev.device)
    g = int_tensor(2, 4, 6, 7, device=dev.device)
    xs, ws, bs = (t.clone().requires_grad_(name in which) for t, name in
                  ((x, "input"), (w, "weight"), (b, "bias")))
    cnnkern.conv2d(xs, ws, bs, padding=1).backward(g)
    xr, wr, br = (t.double().requires_grad_(True) for t in (x, w, b))
    F.conv2d(xr, wr, br, padding=1).backward(g.double())
    for t, r, name in ((xs, xr, "input"), (ws, wr, "weight"), (bs, br, "bias")):
        if name in which:
            assert_exact(t.grad, r.grad.float())
        else:
            assert t.grad is None


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_second_backward_accumulates(dev):
    x = int_tensor(1, 2, 5, 5, device=dev.device).requires_grad_()
    w = int_tensor(3, 2, 3, 3, device=dev.device).requires_grad_()
    g = int_tensor(1, 3, 3, 3, device=dev.device)
    for _ in range(2):
        cnnkern.conv2d(x, w).backward(g)
    xr = x.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_()
    F.conv2d(xr, wr).backward(2 * g.double())
    assert_exact(x.grad, xr.grad.float())
    assert_exact(w.grad, wr.grad.float())


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------

def _channel_strided(t):
    big = torch.zeros(t.shape[0], 2 * t.shape[1], *t.shape[2:], dtype=t.dtype, device=t.device)
    big[:, ::2] = t
    return big[:, ::2]


# Each maps a contiguous tensor to a tensor with the same values in another layout.
LAYOUTS = {
    "transposed_hw": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
    "batch_transposed": lambda t: t.transpose(0, 1).contiguous().transpose(0, 1),
    "channel_stride_2": _channel_strided,
    "padded_storage_slice": lambda t: F.pad(t, (1, 2, 2, 1), value=99.0)[:, :, 2:-1, 1:-2],
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_non_contiguous_input(layout, dtype, dev):
    x0 = int_tensor(2, 3, 7, 8, dtype=dtype, device=dev.device)
    x = LAYOUTS[layout](x0)
    assert torch.equal(x, x0)
    if layout != "channels_last":
        assert not x.is_contiguous()
    w = int_tensor(4, 3, 3, 3, dtype=dtype, device=dev.device)
    b = int_tensor(4, dtype=dtype, device=dev.device)
    g = int_tensor(2, 4, 4, 8, dtype=dtype, device=dev.device)
    kw = dict(stride=(2, 1), padding=(1, 1), algo="direct")
    xl = x.detach().requires_grad_()  # the non-contiguous tensor itself is the leaf
    wl = w.clone().requires_grad_()
    out = cnnkern.conv2d(xl, wl, b, **kw)
    out.backward(g)
    ref = reference(x0, w, b, g, stride=(2, 1), padding=(1, 1))
    assert_exact(out, ref[0].to(dtype))
    assert_exact(xl.grad, ref[1].to(dtype))
    assert_exact(wl.grad, ref[2].to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_channels_last_input_and_weight(dtype, dev):
    x = int_tensor(2, 5, 6, 7, dtype=dtype, device=dev.device)
    w = int_tensor(6, 5, 3, 3, dtype=dtype, device=dev.device)
    b = int_tensor(6, dtype=dtype, device=dev.device)
    g = int_tensor(2, 6, 6, 7, dtype=dtype, device=dev.device)
    xc = x.contiguous(memory_format=torch.channels_last)
    wc = w.contiguous(memory_format=torch.channels_last)
    got = conv_and_grads(cnnkern.conv2d, xc, wc, b, g.contiguous(memory_format=torch.channels_last),
                         padding=1)
    check_all(got, reference(x, w, b, g, padding=1), exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_non_contiguous_weight_and_bias(dtype, dev):
    x = int_tensor(1, 4, 6, 6, dtype=dtype, device=dev.device)
    # (6, 4, 3, 3), not contiguous
    w = int_tensor(4, 6, 3, 3, dtype=dtype, device=dev.device).transpose(0, 1)
    b = int_tensor(12, dtype=dtype, device=dev.device)[::2]  # stride-2 bias
    assert not w.is_contiguous() and not b.is_contiguous()
    out = cnnkern.conv2d(x, w, b, padding=1)
    assert_exact(out, F.conv2d(x.double(), w.double(), b.double(), padding=1).to(dtype))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_expanded_input_zero_stride(dev):
    x = int_tensor(1, 3, 5, 5, device=dev.device).expand(3, 3, 5, 5)  # batch stride 0
    w = int_tensor(2, 3, 3, 3, device=dev.device)
    out = cnnkern.conv2d(x, w)
    ref = F.conv2d(x.double(), w.double()).float()
    assert_exact(out, ref)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_non_contiguous_grad_output(dev):
    x = int_tensor(2, 3, 6, 6, device=dev.device).requires_grad_()
    w = int_tensor(4, 3, 3, 3, device=dev.device).requires_grad_()
    g = int_tensor(2, 4, 4, 4, device=dev.device).transpose(2, 3)  # values of g.T, non-contiguous
    cnnkern.conv2d(x, w).backward(g)
    ref = reference(x.detach(), w.detach(), None, g.contiguous())
    assert_exact(x.grad, ref[1].float())
    assert_exact(w.grad, ref[2].float())


# ---------------------------------------------------------------------------------------------
# Unbatched input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(), id="default"),
    pytest.param(dict(padding=1, stride=2), id="pad1_stride2"),
    pytest.param(dict(groups=3, padding=(0, 1)), id="groups3_asym_pad"),
    pytest.param(dict(padding="same", dilation=2), id="same_dil2"),
])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_unbatched_input(kwargs, dtype, dev):
    x = int_tensor(3, 7, 8, dtype=dtype, device=dev.device)
    w = int_tensor(6, 3 // kwargs.get("groups", 1), 3, 3, dtype=dtype)
    b = int_tensor(6, dtype=dtype, device=dev.device)
    ref_out = F.conv2d(x.double(), w.double(), b.double(), **kwargs)
    g = int_tensor(*ref_out.shape, dtype=dtype, device=dev.device)
    got = conv_and_grads(cnnkern.conv2d, x, w, b, g, **kwargs)
    assert got[0].dim() == 3 and got[1].shape == x.shape
    check_all(got, reference(x, w, b, g, **kwargs), exact=True)


# ---------------------------------------------------------------------------------------------
# padding="same" / "valid"
# ---------------------------------------------------------------------------------------------

SAME_CASES = [
    # (R, S, dilation, groups): odd kernels pad symmetrically; even kernels and odd total
    # padding d*(k-1) pad one more on the right/bottom, like torch.
    ((3, 3), 1, 1),
    ((5, 5), 1, 1),
    ((1, 1), 1, 1),
    ((2, 2), 1, 1),
    ((4, 4), 1, 1),
    ((2, 3), 1, 1),
    ((4, 1), 1, 1),
    ((3, 3), 2, 1),
    ((2, 2), 3, 1),
    ((4, 3), (2, 1), 1),
    ((3, 2), (1, 3), 2),
    ((7, 7), 1, 1),  # kernel larger than the 5x6 input
]


# torch's own "same" with even kernels warns about a padded copy; that is the reference's business.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, dilation, groups", SAME_CASES, ids=str)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_padding_same(kernel, dilation, groups, dtype, dev):
    x = int_tensor(2, 4, 5, 6, dtype=dtype, device=dev.device)
    w = int_tensor(4, 4 // groups, *kernel, dtype=dtype, device=dev.device)
    b = int_tensor(4, dtype=dtype, device=dev.device)
    g = int_tensor(2, 4, 5, 6, dtype=dtype, device=dev.device)
    kw = dict(padding="same", dilation=dilation, groups=groups)
    got = conv_and_grads(cnnkern.conv2d, x, w, b, g, **kw)
    assert got[0].shape == (2, 4, 5, 6)
    check_all(got, reference(x, w, b, g, **kw), exact=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_padding_same_with_explicit_stride_one(dtype, dev):
    x = int_tensor(1, 2, 6, 6, dtype=dtype, device=dev.device)
    w = int_tensor(3, 2, 2, 4, dtype=dtype, device=dev.device)
    out = cnnkern.conv2d(x, w, padding="same", stride=(1, 1))
    assert_exact(out, F.conv2d(x.double(), w.double(), padding="same").to(dtype))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_padding_same_even_kernel_is_asymmetric(dev):
    # A 2x2 kernel of ones on a one-hot image: "same" pads 0 on top/left and 1 on the
    # bottom/right (torch's convention), so out[i, j] = x[i, j] + x[i, j+1] + x[i+1, j] + x[i+1, j+1].
    x = torch.zeros(1, 1, 4, 4, device=dev.device)
    x[0, 0, 1, 1] = 1.0
    w = torch.ones(1, 1, 2, 2, device=dev.device)
    out = cnnkern.conv2d(x, w, padding="same")
    expected = torch.zeros(1, 1, 4, 4, device=dev.device)
    expected[0, 0, 0:2, 0:2] = 1.0
    assert_exact(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 5), 1), ((3, 3), 2)], ids=str)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_padding_valid(kernel, dilation, dtype, dev):
    x = int_tensor(2, 3, 7, 8, dtype=dtype, device=dev.device)
    w = int_tensor(4, 3, *kernel, dtype=dtype, device=dev.device)
    b = int_tensor(4, dtype=dtype, device=dev.device)
    ref_out = F.conv2d(x.double(), w.double(), padding="valid", dilation=dilation)
    g = int_tensor(*ref_out.shape, dtype=dtype, device=dev.device)
    got = conv_and_grads(cnnkern.conv2d, x, w, b, g, padding="valid", dilation=dilation)
    check_all(got, reference(x, w, b, g, padding=0, dilation=dilation), exact=True)
