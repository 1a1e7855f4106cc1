"""GPU tests of the CUDA implicit-GEMM convolution (algo "im2col"), and of any other CUDA
algorithm listed in NEW_ALGOS once it is built: forward, grad-input and grad-weight against
cuDNN / float64 references on the curated matrix and on every VGG16 and ResNet-50 conv (small
batch), NCHW and channels_last; float32 tight (TF32 off; integer-valued inputs exact),
float16/bfloat16 by "error vs float64 at most K_LOWP x cuDNN's own error"; float64 gradcheck;
opcheck on CUDA tensors; bitwise-deterministic grad-weight (split-K, no atomics). With
cnnkern.backends.allow_tf32 on, float32 "im2col" runs on the TF32 tensor cores: checked against
a float64 model of the TF32 rounding, against cuDNN's TF32 error, and off by default whatever
torch's flags say.

Every test runs once per CUDA backend (the `dev` fixture, tests/conftest.py): on a GPU ("cuda",
skipped cleanly without one) and in the CUDA emulator ("cuda_emu": the same glue and kernels on
the CPU, judged against torch's CPU ops, on the curated shapes; the layer-scale shapes are the
GPU's alone). The index math and tile loop behind "im2col" are also checked on the CPU by
tests/internals/test_implicit_gemm_cpu.py.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import (load_testing_ops, EMU_DIR, assert_close, assert_exact, fp64_error_ratio, int_tensor,
                      per_backend, tf32_reference)
from shapes import CONV_CASES, ConvCase, conv_params, layer_cases

K_LOWP = 3.0
NEW_ALGOS = ["im2col", "winograd", "winograd_f2"]


def _built(dev, algo):
    return algo in dev.algorithms()


@pytest.fixture(autouse=True)
def no_tf32():
    """cuDNN, torch's matmul and cnnkern all exact unless a test turns TF32 on; every flag is
    restored after each test."""
    old_cudnn, old_mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    old_ours = cnnkern.backends.get_allow_tf32()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    cnnkern.backends.set_allow_tf32(False)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_cudnn, old_mm
    cnnkern.backends.set_allow_tf32(old_ours)


def _why_not(dev, algo, case, dtype):
    return dev.why_not(case.input_shape, case.weight_shape, *_pairs(case), case.groups, dtype,
                       algo)


def _pairs(case):
    def pair(v):
        return list(v) if isinstance(v, (tuple, list)) else [v, v]
    return pair(case.stride), pair(case.padding), pair(case.dilation)


def _skip_unless(dev, algo, case, dtype):
    if not _built(dev, algo):
        pytest.skip(f"{algo} not built for CUDA")
    reason = _why_not(dev, algo, case, dtype)
    if reason:
        pytest.skip(reason)


def _grads(fn, x, w, b, g, **kw):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_() if b is not None else None
    out = fn(x, w, b, **kw)
    out.backward(g)
    return out, x.grad, w.grad, (b.grad if b is not None else None)


CURATED = [c for c in CONV_CASES if c.N > 0]
LAYERS = layer_cases(batch=2)
LAYOUTS = ["nchw", "channels_last"]


def _layout(t, layout):
    return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t


def _check_fp32(dev, algo, case, layout):
    _skip_unless(dev, algo, case, torch.float32)
    fan_in = case.C // case.groups * case.R * case.S
    x = _layout(torch.randn(case.input_shape, device=dev.device), layout)
    w = _layout(torch.randn(case.weight_shape, device=dev.device) / fan_in ** 0.5, layout)
    b = torch.randn(case.K, device=dev.device)
    g = _layout(torch.randn(case.output_shape, device=dev.device), layout)
    got = _grads(cnnkern.conv2d, x, w, b, g, algo=algo, **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    cudnn = _grads(F.conv2d, x, w, b, g, **case.kwargs())
    # Winograd's float32 error grows with the tile; the GEMM's is plain fp32 summation.
    scale = 10.0 if algo.startswith("winograd") else 1.0
    for name, a, r, c in zip(("out", "grad_input", "grad_weight", "grad_bias"), got, ref, cudnn):
        assert a.device == dev.device and a.dtype == torch.float32
        s = scale * max(1.0, r.abs().max().item())
        assert_close(a, r, scale=s, msg=lambda m, n=name: f"{n} vs float64: {m}")
        assert_close(a, c.double(), scale=s, msg=lambda m, n=name: f"{n} vs cuDNN: {m}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", conv_params(CURATED))
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_curated_f32(algo, case, layout, dev):
    _check_fp32(dev, algo, case, layout)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dev,case", per_backend(LAYERS, []), indirect=["dev"])
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_layers_f32(algo, case, layout, dev):
    _check_fp32(dev, algo, case, layout)


@pytest.mark.parametrize("dev,case", per_backend(CURATED + LAYERS[::4], CURATED), indirect=["dev"])
def test_im2col_f32_integer_inputs_exact(case, dev):
    _skip_unless(dev, "im2col", case, torch.float32)
    x = int_tensor(*case.input_shape, lo=-2, hi=3, device=dev.device)
    w = int_tensor(*case.weight_shape, lo=-2, hi=3, device=dev.device)
    b = int_tensor(case.K, device=dev.device)
    g = int_tensor(*case.output_shape, lo=-2, hi=3, device=dev.device)
    got = _grads(cnnkern.conv2d, x, w, b, g, algo="im2col", **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    for a, r in zip(got, ref):
        assert r.abs().max().item() < 2 ** 24  # every partial sum exact in fp32
        assert_exact(a, r.float())


def _check_lowp(dev, algo, case, dtype, layout):
    _skip_unless(dev, algo, case, dtype)
    fan_in = case.C // case.groups * case.R * case.S
    x = _layout(torch.randn(case.input_shape, device=dev.device).to(dtype), layout)
    w = _layout((torch.randn(case.weight_shape, device=dev.device) / fan_in ** 0.5).to(dtype), layout)
    b = torch.randn(case.K, device=dev.device).to(dtype)
    g = _layout(torch.randn(case.output_shape, device=dev.device).to(dtype), layout)
    ours = _grads(cnnkern.conv2d, x, w, b, g, algo=algo, **case.kwargs())
    theirs = _grads(F.conv2d, x, w, b, g, **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    for name, o, t, r in zip(("out", "grad_input", "grad_weight", "grad_bias"), ours, theirs, ref):
        assert o.dtype == dtype
        err, torch_err = fp64_error_ratio(o, r, t)
        floor = torch.finfo(dtype).eps * max(1.0, r.abs().max().item())
        assert err <= K_LOWP * torch_err + floor, (name, err, torch_err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("case", conv_params(CURATED))
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_curated_low_precision(algo, case, dtype, dev):
    _check_lowp(dev, algo, case, dtype, "nchw")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("dev,case", per_backend(LAYERS, []), indirect=["dev"])
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_layers_low_precision(algo, case, dtype, layout, dev):
    _check_lowp(dev, algo, case, dtype, layout)


@pytest.mark.parametrize("case", conv_params(CURATED[::3]))
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_gradcheck_f64(algo, case, dev):
    _skip_unless(dev, algo, case, torch.float64)
    x = torch.randn(case.input_shape, dtype=torch.float64, device=dev.device, requires_grad=True)
    w = torch.randn(case.weight_shape, dtype=torch.float64, device=dev.device, requires_grad=True)
    b = torch.randn(case.K, dtype=torch.float64, device=dev.device, requires_grad=True)
    # The emulator checks random projections of the Jacobian (fast_mode): a full one is a
    # launch per input element, minutes of fibers.
    assert torch.autograd.gradcheck(
        lambda x, w, b: cnnkern.conv2d(x, w, b, algo=algo, **case.kwargs()), (x, w, b),
        fast_mode=dev.emulated)


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_opcheck_cuda(algo, dev):
    case = ConvCase("opcheck", 2, 4, 7, 6, 5, 3, 3, 1, 1, 1, 1)
    _skip_unless(dev, algo, case, torch.float32)
    x = torch.randn(case.input_shape, device=dev.device, requires_grad=True)
    w = torch.randn(case.weight_shape, device=dev.device, requires_grad=True)
    b = torch.randn(case.K, device=dev.device, requires_grad=True)
    res = torch.library.opcheck(torch.ops.cnnkern.conv2d.default,
                                (x, w, b, [1, 1], [1, 1], [1, 1], 1, algo))
    assert all(v == "SUCCESS" for v in res.values()), res
    g = torch.randn(case.output_shape, device=dev.device)
    res = torch.library.opcheck(torch.ops.cnnkern.conv2d_backward_input.default,
                                (g, w.detach(), list(case.input_shape), [1, 1], [1, 1], [1, 1],
                                 1, algo))
    assert all(v == "SUCCESS" for v in res.values()), res
    res = torch.library.opcheck(torch.ops.cnnkern.conv2d_backward_weight.default,
                                (g, x.detach(), list(case.weight_shape), [1, 1], [1, 1],
                                 [1, 1], 1, algo))
    assert all(v == "SUCCESS" for v in res.values()), res


# Shapes whose grad-weight is split (long N*P*Q reduction, few output tiles) and one that is not.
DETERMINISM = [
    ConvCase("split_k_64x64_56", 8, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1),
    ConvCase("split_k_1x1_groups2", 16, 64, 28, 28, 32, 1, 1, 1, 0, 1, 2),
    ConvCase("no_split", 1, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1),
]
# The same three kinds at sizes the emulator runs in seconds (both split grad-weight in 13).
DETERMINISM_EMU = [
    ConvCase("split_k_16x16_20", 4, 16, 20, 20, 16, 3, 3, 1, 1, 1, 1),
    ConvCase("split_k_1x1_groups2_small", 8, 16, 16, 16, 8, 1, 1, 1, 0, 1, 2),
    DETERMINISM[2],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("dev,case", per_backend(DETERMINISM, DETERMINISM_EMU), indirect=["dev"])
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_bitwise_deterministic(algo, case, dtype, dev):
    _skip_unless(dev, algo, case, dtype)
    x = torch.randn(case.input_shape, device=dev.device).to(dtype)
    w = (torch.randn(case.weight_shape, device=dev.device) / 30).to(dtype)
    g = torch.randn(case.output_shape, device=dev.device).to(dtype)
    first = _grads(cnnkern.conv2d, x, w, None, g, algo=algo, **case.kwargs())[:3]
    dev.reorder()
    for a, b in zip(first, _grads(cnnkern.conv2d, x, w, None, g, algo=algo, **case.kwargs())):
        assert torch.equal(a, b)
    if algo == "im2col":
        plan = load_testing_ops().igemm_plan("wgrad", list(case.input_shape),
                                             list(case.weight_shape), *_pairs(case), case.groups)
        assert (plan[5] > 1) == case.id.startswith("split_k"), plan


def test_im2col_non_contiguous_and_offset_views(dev):
    """Views with a storage offset and odd strides arrive contiguous (op layer) and stay right."""
    if not _built(dev, "im2col"):
        pytest.skip("im2col not built for CUDA")
    big = torch.randn(3, 6, 11, 13, device=dev.device)
    x = big[1:, 1:5, 1:10, ::2]
    w = torch.randn(8, 4, 3, 3, device=dev.device)[:, :, :, :]
    out = cnnkern.conv2d(x, w, padding=1, algo="im2col")
    assert_close(out, F.conv2d(x.double(), w.double(), padding=1))


@pytest.mark.cuda_work_in_child
def test_simt_fallback_for_half_types(dev):
    """CNNKERN_IGEMM_SIMT=1 puts float16/bfloat16 on the SIMT path, backward passes included
    (read once per process, so in a child process); both paths must meet the low-precision rule. In the emulator the
    child also shows that no mma.sync ran."""
    import os
    import subprocess
    import sys

    if not _built(dev, "im2col"):
        pytest.skip("im2col not built for CUDA")
    if dev.emulated:
        setup = (f"import sys; sys.path.insert(0, {EMU_DIR!r}); import emulator\n"
                 "emulator.load(); emulator.CudaEmulation().__enter__(); device = 'cpu'\n")
        check = "assert emulator.stats()['mmas'] == 0, emulator.stats()\n"
    else:
        setup, check = "device = 'cuda'\n", ""
    code = (
        "import torch, torch.nn.functional as F, cnnkern\n" + setup +
        "torch.manual_seed(0)\n"
        "for dt in (torch.float16, torch.bfloat16):\n"
        "    x = torch.randn(2, 24, 13, 11, device=device).to(dt)\n"
        "    w = (torch.randn(40, 24, 3, 3, device=device) / 15).to(dt)\n"
        "    ref = F.conv2d(x.double(), w.double(), padding=1)\n"
        "    err = (cnnkern.conv2d(x, w, padding=1, algo='im2col').double() - ref).abs().max()\n"
        "    terr = (F.conv2d(x, w, padding=1).double() - ref).abs().max()\n"
        "    assert err <= 3 * terr + torch.finfo(dt).eps * ref.abs().max(), (dt, err, terr)\n"
        # The backward passes too (their tensor-core kernels read the same switch): fp32
        # accumulation and one rounding keep them within an ulp of the largest result.
        "    g = torch.randn(ref.shape, device=device).to(dt)\n"
        "    a = ([1, 1], [1, 1], [1, 1], 1, 'im2col')\n"
        "    gi = torch.ops.cnnkern.conv2d_backward_input(g, w, list(x.shape), *a).double()\n"
        "    gw = torch.ops.cnnkern.conv2d_backward_weight(g, x, list(w.shape), *a).double()\n"
        "    from torch.nn.grad import conv2d_input, conv2d_weight\n"
        "    ri = conv2d_input(x.shape, w.double(), g.double(), padding=1)\n"
        "    rw = conv2d_weight(x.double(), w.shape, g.double(), padding=1)\n"
        "    for o, r in ((gi, ri), (gw, rw)):\n"
        "        assert (o - r).abs().max() <= torch.finfo(dt).eps * r.abs().max(), dt\n"
        + check + "print('ok')\n")
    env = dict(os.environ, CNNKERN_IGEMM_SIMT="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# float32 on the TF32 tensor cores (cnnkern.backends.allow_tf32), algo "im2col"
# ---------------------------------------------------------------------------------------------

K_TF32 = 3.0


def _check_tf32(dev, case, layout):
    _skip_unless(dev, "im2col", case, torch.float32)
    fan_in = case.C // case.groups * case.R * case.S
    x = _layout(torch.randn(case.input_shape, device=dev.device), layout)
    w = _layout(torch.randn(case.weight_shape, device=dev.device) / fan_in ** 0.5, layout)
    b = torch.randn(case.K, device=dev.device)
    g = _layout(torch.randn(case.output_shape, device=dev.device), layout)
    with cnnkern.backends.tf32():
        ours = _grads(cnnkern.conv2d, x, w, b, g, algo="im2col", **case.kwargs())
    torch.backends.cudnn.allow_tf32 = True
    theirs = _grads(F.conv2d, x, w, b, g, **case.kwargs())
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **case.kwargs())
    r = [tf32_reference(t).double() for t in (x, w, g)]
    kw = case.kwargs()
    model = (F.conv2d(r[0], r[1], b.double(), **kw),
             torch.nn.grad.conv2d_input(x.shape, r[1], r[2], **kw),
             torch.nn.grad.conv2d_weight(r[0], w.shape, r[2], **kw))
    for name, o, t, e, m in zip(("out", "grad_input", "grad_weight"), ours, theirs, ref, model):
        assert o.dtype == torch.float32
        # 1. the rounding is cvt.rna's (round to nearest, ties away) and the sums are fp32:
        #    the model of exactly that arithmetic agrees to float32 summation error
        s = max(1.0, m.abs().max().item())
        assert_close(o, m, scale=s, msg=lambda msg, n=name: f"{n} vs TF32 model: {msg}")
        # 2. error vs float64 at most K_TF32 x cuDNN's with TF32 (or, where cuDNN picked an
        #    fp32 kernel, x what rounding the operands to tf32 costs by itself)
        err, cudnn_err = fp64_error_ratio(o, e, t)
        model_err = (m - e).abs().max().item()
        assert err <= K_TF32 * max(cudnn_err, model_err) + 1e-30, (name, err, cudnn_err,
                                                                  model_err)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", conv_params(CURATED))
def test_tf32_curated(case, layout, dev):
    _check_tf32(dev, case, layout)


@pytest.mark.parametrize("dev,case", per_backend(LAYERS, []), indirect=["dev"])
def test_tf32_layers(case, dev):
    _check_tf32(dev, case, "nchw")


@pytest.mark.parametrize("dev,case", per_backend(CURATED[::2] + LAYERS[::6], CURATED[::2]),
                         indirect=["dev"])
def test_tf32_flag_off_is_the_exact_path(case, dev):
    """x of 13 significant bits: exact in float32 (every partial sum here too) but not in tf32
    (11 bits); w and grad_output small integers (exact in tf32). Flag off (the default), even
    with torch's TF32 on: bitwise the float64 result. Flag on: bitwise the result with x
    rounded by cvt.rna (tf32_reference), which the exact path would not give."""
    _skip_unless(dev, "im2col", case, torch.float32)
    x = int_tensor(*case.input_shape, lo=-4095, hi=4096, device=dev.device)
    w = int_tensor(*case.weight_shape, lo=-2, hi=3, device=dev.device)
    b = int_tensor(case.K, device=dev.device)
    g = int_tensor(*case.output_shape, lo=-2, hi=3, device=dev.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    kw = case.kwargs()
    ref = _grads(F.conv2d, x.double(), w.double(), b.double(), g.double(), **kw)
    assert max(r.abs().max().item() for r in ref) < 2 ** 24
    exact = _grads(cnnkern.conv2d, x, w, b, g, algo="im2col", **kw)
    for a, r in zip(exact[:3], ref[:3]):
        assert_exact(a, r.float())
    with cnnkern.backends.tf32():
        rounded = _grads(cnnkern.conv2d, x, w, b, g, algo="im2col", **kw)
    xr = tf32_reference(x).double()
    model = (F.conv2d(xr, w.double(), b.double(), **kw),
             ref[1],  # grad-input reads w and grad_output only: tf32-exact
             torch.nn.grad.conv2d_weight(xr, w.shape, g.double(), **kw))
    for a, m in zip(rounded[:3], model):
        assert_exact(a, m.float())


@pytest.mark.parametrize("dev,case", per_backend(DETERMINISM, DETERMINISM_EMU), indirect=["dev"])
def test_tf32_bitwise_deterministic(case, dev):
    _skip_unless(dev, "im2col", case, torch.float32)
    x = torch.randn(case.input_shape, device=dev.device)
    w = torch.randn(case.weight_shape, device=dev.device) / 30
    g = torch.randn(case.output_shape, device=dev.device)
    with cnnkern.backends.tf32():
        first = _grads(cnnkern.conv2d, x, w, None, g, algo="im2col", **case.kwargs())[:3]
        dev.reorder()
        second = _grads(cnnkern.conv2d, x, w, None, g, algo="im2col", **case.kwargs())[:3]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("algo", ["winograd", "winograd_f2"])
def test_tf32_reaches_winograd_grad_weight_only(algo, dev):
    """Winograd's grad-weight runs on the implicit GEMM, so the flag makes it TF32 (bitwise
    im2col's); its forward and grad-input (Winograd-domain GEMMs) stay exact fp32."""
    case = ConvCase("wino_tf32", 2, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1)
    if not _built(dev, algo):
        pytest.skip(f"{algo} not built for CUDA")
    x = torch.randn(case.input_shape, device=dev.device)
    w = torch.randn(case.weight_shape, device=dev.device) / 12
    g = torch.randn(case.output_shape, device=dev.device)
    off = _grads(cnnkern.conv2d, x, w, None, g, algo=algo, **case.kwargs())
    with cnnkern.backends.tf32():
        on = _grads(cnnkern.conv2d, x, w, None, g, algo=algo, **case.kwargs())
        im2col = _grads(cnnkern.conv2d, x, w, None, g, algo="im2col", **case.kwargs())
    assert torch.equal(on[0], off[0]) and torch.equal(on[1], off[1])
    assert torch.equal(on[2], im2col[2]) and not torch.equal(on[2], off[2])


def test_tf32_opcheck_cuda(dev):
    case = ConvCase("opcheck_tf32", 2, 4, 7, 6, 5, 3, 3, 1, 1, 1, 1)
    _skip_unless(dev, "im2col", case, torch.float32)
    x = torch.randn(case.input_shape, device=dev.device, requires_grad=True)
    w = torch.randn(case.weight_shape, device=dev.device, requires_grad=True)
    res = torch.library.opcheck(torch.ops.cnnkern.conv2d.default,
                                (x, w, None, [1, 1], [1, 1], [1, 1], 1, "im2col", True))
    assert all(v == "SUCCESS" for v in res.values()), res
