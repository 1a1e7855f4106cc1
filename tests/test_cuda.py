"""GPU tests: cnnkern's CUDA kernels against torch (cuDNN on a GPU) and float64 references.

Every test runs once per CUDA backend (the `dev` fixture, tests/conftest.py): on a GPU
("cuda", skipped cleanly without one) and in the CUDA emulator ("cuda_emu", the same glue and
kernels on the CPU, judged against torch's CPU ops). fp32 comparisons run with TF32 off. For fp16/bf16 the rule is flash-attention's: the error
against a float64 reference may be at most K_LOWP times torch's own error in that dtype (plus
a tiny floor for results torch happens to get exactly right).
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import GPU_ONLY, assert_close, assert_exact, fp64_error_ratio, int_tensor
from shapes import AVG_POOL_CASES, CONV_CASES, conv_params, pool_params

K_LOWP = 3.0


@pytest.fixture(autouse=True)
def no_tf32():
    old_cudnn, old_mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_cudnn, old_mm


def _grads(fn, x, w, b, g, **kw):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_() if b is not None else None
    out = fn(x, w, b, **kw)
    out.backward(g)
    return out, x.grad, w.grad, (b.grad if b is not None else None)


def test_cuda_algorithms(dev):
    algos = dev.algorithms()
    assert {"direct", "im2col", "winograd", "winograd_f2"} <= set(algos), algos
    if not dev.emulated:
        assert cnnkern.cuda_built() and cnnkern.cuda_available()
    # "auto" picks one of them and runs.
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    assert cnnkern.conv2d(x, torch.randn(3, 2, 3, 3, device=dev.device)).shape == (1, 3, 3, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", conv_params())
def test_conv_direct_forward_backward_vs_torch(case, dtype, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)
    w = torch.randn(case.weight_shape, dtype=dtype, device=dev.device)
    b = torch.randn(case.K, dtype=dtype, device=dev.device)
    g = torch.randn(case.output_shape, dtype=dtype, device=dev.device)
    got = _grads(cnnkern.conv2d, x, w, b, g, algo="direct", **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    for name, a, r in zip(("out", "grad_input", "grad_weight", "grad_bias"), got, ref):
        assert a.device == dev.device
        assert_close(a, r, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("case", conv_params([c for c in CONV_CASES if c.N > 0][::3]))
def test_conv_direct_exact_integer_inputs(case, dev):
    x = int_tensor(*case.input_shape, device=dev.device)
    w = int_tensor(*case.weight_shape, device=dev.device)
    b = int_tensor(case.K, device=dev.device)
    g = int_tensor(*case.output_shape, device=dev.device)
    got = _grads(cnnkern.conv2d, x, w, b, g, algo="direct", **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    for a, r in zip(got, ref):
        assert_exact(a, r.float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("case", conv_params([c for c in CONV_CASES if c.N > 0][::2]))
def test_conv_low_precision_error_vs_torch(case, dtype, dev):
    x = torch.randn(case.input_shape, device=dev.device)
    w = torch.randn(case.weight_shape, device=dev.device) / (case.C // case.groups * case.R * case.S) ** 0.5
    b = torch.randn(case.K, device=dev.device)
    xl, wl, bl = x.to(dtype), w.to(dtype), b.to(dtype)
    ref64 = F.conv2d(xl.double(), wl.double(), bl.double(), **case.kwargs())
    ours = cnnkern.conv2d(xl, wl, bl, algo="direct", **case.kwargs())
    theirs = F.conv2d(xl, wl, bl, **case.kwargs())
    assert ours.dtype == dtype
    err, torch_err = fp64_error_ratio(ours, ref64, theirs)
    floor = torch.finfo(dtype).eps * max(1.0, ref64.abs().max().item())
    assert err <= K_LOWP * torch_err + floor, (err, torch_err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_conv_low_precision_backward_error_vs_torch(dtype, dev):
    x = torch.randn(2, 8, 12, 12, device=dev.device).to(dtype)
    w = (torch.randn(16, 8, 3, 3, device=dev.device) / 8.5).to(dtype)
    g = torch.randn(2, 16, 6, 6, device=dev.device).to(dtype)
    kw = dict(stride=2, padding=1)
    ours = _grads(cnnkern.conv2d, x, w, None, g, algo="direct", **kw)
    theirs = _grads(F.conv2d, x, w, None, g, **kw)
    ref = _grads(F.conv2d, x.double(), w.double(), None, g.double(), **kw)
    for i in (0, 1, 2):
        err, torch_err = fp64_error_ratio(ours[i], ref[i], theirs[i])
        floor = torch.finfo(dtype).eps * max(1.0, ref[i].abs().max().item())
        assert err <= K_LOWP * torch_err + floor, (i, err, torch_err)


@pytest.mark.parametrize("algo", ["auto", "direct", "im2col", "winograd", "winograd_f2"])
def test_each_built_cuda_algorithm_matches_torch(algo, dev):
    if algo != "auto" and algo not in dev.algorithms():
        pytest.skip(f"{algo} not built for CUDA")
    x = torch.randn(2, 16, 14, 14, device=dev.device)
    w = torch.randn(32, 16, 3, 3, device=dev.device)
    b = torch.randn(32, device=dev.device)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    out = cnnkern.conv2d(x, w, b, padding=1, algo=algo)
    scale = 10.0 if algo.startswith("winograd") or algo == "auto" else 1.0
    assert_close(out, ref, scale=scale * ref.abs().max().item())


def test_cuda_channels_last_unbatched_and_empty(dev):
    w = torch.randn(4, 3, 3, 3, device=dev.device)
    x = torch.randn(2, 3, 7, 6, device=dev.device)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    assert_close(cnnkern.conv2d(x.contiguous(memory_format=torch.channels_last),
                                w.contiguous(memory_format=torch.channels_last), padding=1), ref)
    assert_close(cnnkern.conv2d(x[0], w, padding=1), ref[0])
    assert cnnkern.conv2d(x[:0], w, padding=1).shape == (0, 4, 7, 6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", pool_params())
def test_max_pool_cuda(case, dtype, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)
    x[torch.rand(case.input_shape, device=dev.device) < 0.05] = float("nan")
    kw = case.max_kwargs()
    xl, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, idx = cnnkern.max_pool2d(xl, **kw, return_indices=True)
    ref, ref_idx = F.max_pool2d(xr, **kw, return_indices=True)
    assert_exact(out, ref, equal_nan=True)
    assert_exact(idx, ref_idx)
    g = int_tensor(*out.shape, dtype=dtype, device=dev.device)
    out.backward(g)
    ref.backward(g)
    assert_exact(xl.grad, xr.grad)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape,args", [
    # every tap in the padding or the dilation gap: the stored index (torch's) aliases element
    # (1, 0), on the next row, which is in no window
    ((1, 1, 2, 1), ((2, 2), (1, 1), (0, 1), (1, 2))),
    ((1, 1, 2, 1), ((1, 2), (1, 1), (0, 1), (1, 2))),
    ((2, 3, 1, 1), ((2, 1), (1, 1), (1, 0), (2, 1))),  # issue 15's 1x1 plane
], ids=["2x1_k2x2_dil2", "2x1_k1x2_dil2", "1x1_k2x1_pad1_dil2"])
def test_max_pool_window_entirely_in_padding_passes_no_gradient(shape, args, layout, dev):
    """A window with no tap inside the input gives -inf (and torch's index), and no gradient to
    any element: its output depends on none. Found by the property tests in the emulator; torch
    itself scatters such gradients to the aliased index, or past the tensor."""
    x = torch.randn(shape, dtype=torch.float64, device=dev.device)
    x = x.contiguous(memory_format=layout).requires_grad_()
    out, idx = cnnkern.max_pool2d(x, *args, return_indices=True)
    ref, ref_idx = F.max_pool2d(x.detach().cpu(), *args, return_indices=True)
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    assert out.isinf().all()
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert_exact(grad, torch.zeros(shape, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", pool_params(AVG_POOL_CASES))
@pytest.mark.parametrize("cip, div", [(True, None), (False, None), (True, 3)],
                         ids=["include_pad", "exclude_pad", "divisor3"])
def test_avg_pool_cuda(case, dtype, cip, div, dev):
    x = torch.randn(case.input_shape, dtype=dtype, device=dev.device)
    kw = dict(case.avg_kwargs(), count_include_pad=cip, divisor_override=div)
    xl, xr = x.clone().requires_grad_(), x.double().requires_grad_()
    out, ref = cnnkern.avg_pool2d(xl, **kw), F.avg_pool2d(xr, **kw)
    assert_close(out, ref)
    g = torch.randn(out.shape, dtype=dtype, device=dev.device)
    out.backward(g)
    ref.backward(g.double())
    assert_close(xl.grad, xr.grad)


@pytest.mark.parametrize("output_size", [1, 3, (2, 5), (None, 4), (9, 11)], ids=str)
def test_adaptive_avg_pool_cuda(output_size, dev):
    x = torch.randn(2, 3, 7, 9, device=dev.device)
    xl, xr = x.clone().requires_grad_(), x.double().requires_grad_()
    out, ref = cnnkern.adaptive_avg_pool2d(xl, output_size), F.adaptive_avg_pool2d(xr, output_size)
    assert_close(out, ref)
    g = torch.randn(out.shape, device=dev.device)
    out.backward(g)
    ref.backward(g.double())
    assert_close(xl.grad, xr.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_pools_low_precision_cuda(dtype, dev):
    x = torch.randn(2, 3, 9, 8, device=dev.device).to(dtype)
    out, idx = cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref, ref_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    ours = cnnkern.avg_pool2d(x, 3, 2, 1)
    ref64 = F.avg_pool2d(x.double(), 3, 2, 1)
    err, torch_err = fp64_error_ratio(ours, ref64, F.avg_pool2d(x, 3, 2, 1))
    assert err <= K_LOWP * torch_err + torch.finfo(dtype).eps * 4, (err, torch_err)


@pytest.mark.parametrize("make, fragments", [
    # (tensors on the backend's device) -> the call; fragments the message must contain
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 3, 8, 8, device=d), torch.randn(4, 3, 5, 5, device=d)),
                dict(padding=2, algo="winograd")), ["winograd", "3x3", "5x5"]),
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 3, 8, 8, device=d), torch.randn(4, 3, 3, 3, device=d)),
                dict(stride=2, algo="winograd_f2")), ["winograd_f2", "stride 1", "stride 2"]),
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 3, 8, 8, device=d), torch.randn(4, 3, 3, 3, device=d)),
                dict(algo="fft")), ["fft", "direct"]),
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 5, 8, 8, device=d), torch.randn(4, 3, 3, 3, device=d)),
                {}), ["channels", "5", "3"]),
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 3, 8, 8, device=d), torch.randn(4, 3, 3, 3, device=d),
                                 torch.randn(5, device=d)), dict(algo="im2col")), ["bias", "4", "5"]),
    (lambda d: (cnnkern.conv2d, (torch.ones(1, 3, 8, 8, dtype=torch.int32, device=d),
                                 torch.ones(4, 3, 3, 3, dtype=torch.int32, device=d)), {}),
     ["(?i)int"]),
    (lambda d: (cnnkern.conv2d, (torch.randn(1, 3, 8, 8, device=d),
                                 torch.randn(4, 3, 3, 3, device=d, dtype=torch.float64)), {}),
     ["(?i)dtype|float"]),
    (lambda d: (cnnkern.max_pool2d, (torch.randn(1, 2, 4, 4, device=d), 3), dict(padding=2)),
     ["(?i)pad", "2"]),
], ids=["winograd_5x5", "winograd_stride2", "unknown_algo", "channels", "bias_size", "int_dtype",
        "mixed_dtypes", "pool_padding"])
def test_cuda_errors_name_the_argument(make, fragments, dev):
    """The CUDA backend's own checks (op bodies, algorithm rules, glue) reject bad calls with a
    message naming the argument and the value, never a crash or a wrong answer."""
    import re

    fn, args, kwargs = make(dev.device)
    with pytest.raises((RuntimeError, ValueError)) as info:
        fn(*args, **kwargs)
    for frag in fragments:
        assert re.search(frag, str(info.value)), (frag, str(info.value))


@pytest.mark.parametrize("dev", GPU_ONLY, indirect=True)  # two devices
@pytest.mark.parametrize("which", ["weight", "input", "bias"])
def test_device_mismatch_error(which, dev):
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    w = torch.randn(3, 2, 3, 3, device=dev.device)
    b = torch.randn(3, device=dev.device)
    if which == "weight":
        w = w.cpu()
    elif which == "input":
        x = x.cpu()
    else:
        b = b.cpu()
    with pytest.raises((RuntimeError, ValueError), match="(?i)device"):
        cnnkern.conv2d(x, w, b)


def test_cuda_gradcheck_tiny(dev):
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, device=dev.device, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, device=dev.device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: cnnkern.conv2d(x, w, padding=1, groups=2), (x, w))
    y = (torch.randperm(50, device=dev.device).double().reshape(1, 2, 5, 5)).requires_grad_()
    assert torch.autograd.gradcheck(lambda y: cnnkern.max_pool2d(y, 2, 1), (y,))


def test_cuda_opcheck(dev):
    x = torch.randn(1, 2, 6, 6, device=dev.device, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, device=dev.device, requires_grad=True)
    res = torch.library.opcheck(torch.ops.cnnkern.conv2d.default,
                                (x, w, None, [1, 1], [1, 1], [1, 1], 1, "auto"))
    assert all(v == "SUCCESS" for v in res.values()), res
    res = torch.library.opcheck(torch.ops.cnnkern.max_pool2d_with_indices.default,
                                (x, [2, 2], [2, 2], [0, 0], [1, 1], False))
    assert all(v == "SUCCESS" for v in res.values()), res


# ---------------------------------------------------------------------------------------------
# Pooling in channels_last: read in place by the NHWC path of the CUDA kernels (C fastest),
# outputs, indices and gradients in torch's layout.
# ---------------------------------------------------------------------------------------------

CL = torch.channels_last
ALL_DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64"),
              pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
LOWP = (torch.float16, torch.bfloat16)


def _cl_grads(fn, x, g):
    xl = x.detach().clone().requires_grad_()
    res = fn(xl)
    (res[0] if isinstance(res, tuple) else res).backward(g)
    return res, xl.grad


def _same_strides(a, b, what):
    assert a.stride() == b.stride(), f"{what}: {a.stride()} != torch's {b.stride()}"


def _close_or_lowp(ours, ref64, torch_same_dtype):
    if ours.dtype in LOWP:
        err, torch_err = fp64_error_ratio(ours, ref64, torch_same_dtype)
        assert err <= K_LOWP * torch_err + torch.finfo(ours.dtype).eps * 4, (err, torch_err)
    else:
        assert_close(ours, ref64)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("case", pool_params())
def test_max_pool_cuda_channels_last(case, dtype, dev):
    x = torch.randn(case.input_shape, device=dev.device).to(dtype)
    x[torch.rand(case.input_shape, device=dev.device) < 0.05] = float("nan")
    x = x.contiguous(memory_format=CL)
    kw = dict(case.max_kwargs(), return_indices=True)
    ref, ref_idx = F.max_pool2d(x, **kw)
    g = int_tensor(*ref.shape, dtype=dtype, device=dev.device).contiguous(memory_format=CL)
    (out, idx), gx = _cl_grads(lambda t: cnnkern.max_pool2d(t, **kw), x, g)
    _, ref_gx = _cl_grads(lambda t: F.max_pool2d(t, **kw), x, g)
    assert_exact(out, ref, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_exact(gx, ref_gx)  # integer gradients: exact sums in every dtype
    _same_strides(out, ref, "output")
    _same_strides(idx, ref_idx, "indices")
    _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("case", pool_params(AVG_POOL_CASES))
@pytest.mark.parametrize("cip, div", [(True, None), (False, None), (True, 3)],
                         ids=["include_pad", "exclude_pad", "divisor3"])
def test_avg_pool_cuda_channels_last(case, dtype, cip, div, dev):
    x = torch.randn(case.input_shape, device=dev.device).to(dtype).contiguous(memory_format=CL)
    kw = dict(case.avg_kwargs(), count_include_pad=cip, divisor_override=div)
    g = torch.randn(F.avg_pool2d(x, **kw).shape, device=dev.device).to(dtype)
    g = g.contiguous(memory_format=CL)
    out, gx = _cl_grads(lambda t: cnnkern.avg_pool2d(t, **kw), x, g)
    ref, ref_gx = _cl_grads(lambda t: F.avg_pool2d(t, **kw), x, g)
    ref64, ref64_gx = _cl_grads(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    _close_or_lowp(out, ref64, ref)
    _close_or_lowp(gx, ref64_gx, ref_gx)
    _same_strides(out, ref, "output")
    _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("output_size", [1, 3, (2, 5), (None, 4), (9, 11)], ids=str)
def test_adaptive_avg_pool_cuda_channels_last(output_size, dtype, dev):
    x = torch.randn(2, 5, 7, 9, device=dev.device).to(dtype).contiguous(memory_format=CL)
    g = torch.randn(F.adaptive_avg_pool2d(x, output_size).shape, device=dev.device).to(dtype)
    g = g.contiguous(memory_format=CL)
    out, gx = _cl_grads(lambda t: cnnkern.adaptive_avg_pool2d(t, output_size), x, g)
    ref, ref_gx = _cl_grads(lambda t: F.adaptive_avg_pool2d(t, output_size), x, g)
    ref64, ref64_gx = _cl_grads(lambda t: F.adaptive_avg_pool2d(t, output_size), x.double(),
                                g.double())
    _close_or_lowp(out, ref64, ref)
    _close_or_lowp(gx, ref64_gx, ref_gx)
    _same_strides(out, ref, "output")
    _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("grad_layout", [torch.contiguous_format, CL],
                         ids=["grad_nchw", "grad_nhwc"])
@pytest.mark.parametrize("in_layout", [torch.contiguous_format, CL], ids=["in_nchw", "in_nhwc"])
def test_pool_cuda_grad_input_follows_the_input_layout(in_layout, grad_layout, dev):
    # torch's CUDA backward gives grad_input the input's layout whatever grad_output's.
    x = torch.randn(2, 6, 9, 8, device=dev.device).contiguous(memory_format=in_layout)
    pairs = [(lambda t: cnnkern.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
             (lambda t: cnnkern.avg_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2)),
             (lambda t: cnnkern.adaptive_avg_pool2d(t, 3), lambda t: F.adaptive_avg_pool2d(t, 3))]
    for ours, theirs in pairs:
        g = int_tensor(*theirs(x).shape, device=dev.device).contiguous(memory_format=grad_layout)
        _, gx = _cl_grads(ours, x, g)
        _, ref_gx = _cl_grads(theirs, x, g)
        assert_close(gx, ref_gx.double())
        _same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "nhwc"])
def test_pool_cuda_bitwise_deterministic(layout, dtype, dev):
    # Gathers with one owner per element, no atomics: two runs agree bit for bit. (In the
    # emulator, a smaller tensor: every element is a fiber there.)
    shape = (2, 8, 17, 13) if dev.emulated else (4, 48, 37, 41)
    x = torch.randn(shape, device=dev.device).to(dtype).contiguous(memory_format=layout)

    def run():
        res = []
        for fn in (lambda t: cnnkern.max_pool2d(t, 3, 1, 1),
                   lambda t: cnnkern.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
                   lambda t: cnnkern.adaptive_avg_pool2d(t, (5, 7))):
            xl = x.detach().clone().requires_grad_()
            out = fn(xl)
            out.backward(torch.full_like(out, 0.3))
            res += [out, xl.grad]
        return res

    first = run()
    dev.reorder()
    for a, b in zip(first, run()):
        assert torch.equal(a, b)


def test_cuda_opcheck_channels_last(dev):
    x = torch.randn(2, 3, 7, 6, device=dev.device).contiguous(memory_format=CL).requires_grad_()
    for op, args in [
        (torch.ops.cnnkern.max_pool2d_with_indices.default,
         (x, [3, 3], [2, 2], [1, 1], [1, 1], True)),
        (torch.ops.cnnkern.avg_pool2d.default,
         (x, [2, 2], [2, 2], [0, 0], False, True, None)),
        (torch.ops.cnnkern.adaptive_avg_pool2d.default, (x, [3, 4])),
    ]:
        res = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in res.values()), res
