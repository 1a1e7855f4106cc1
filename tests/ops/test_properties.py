"""Property-based tests (hypothesis): random shapes and hyper-parameters that torch accepts,
every algorithm that can run each case, against torch.nn.functional forward and backward;
and random invalid arguments, which cnnkern must reject whenever torch does, with a message.
Every test runs on every backend: the CPU, a GPU ("cuda") and the CUDA emulator ("cuda_emu"; the
`dev` fixture, tests/conftest.py).

Profiles: "ci" (default: fixed seed, bounded) and "long" for a deeper search:
    CNNKERN_HYPOTHESIS_PROFILE=long pytest tests/ops/test_properties.py
"""

import os

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cnnkern  # noqa: E402
from cnnkern.functional import conv_padding  # noqa: E402
from conftest import DEVICES  # noqa: E402

# The "ci" and "long" profiles are registered and loaded in tests/conftest.py.
PER_DEVICE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow, HealthCheck.filter_too_much])


def on_every_device(test):
    """A hypothesis test run once per backend (the `dev` fixture, tests/conftest.py), which is
    set once per test, not per example."""
    return pytest.mark.parametrize("dev", DEVICES, indirect=True)(PER_DEVICE(test))

LAYOUTS = ("nchw", "channels_last", "strided")


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a view with gaps: every other column of a wider tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    C = groups * draw(st.integers(1, max(1, 17 // groups)))
    K = groups * draw(st.integers(1, max(1, 17 // groups)))
    depthwise = draw(st.booleans()) and groups == 1
    if depthwise:  # groups == C == K
        groups = C = K = draw(st.integers(1, 8))
    # A third of the cases are 3x3 stride-1 undilated, the shapes Winograd can run (uniform
    # draws would give it ~1 case in 400).
    winograd_shaped = draw(st.integers(0, 2)) == 0
    R, S = (3, 3) if winograd_shaped else (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    H, W = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    dilation = (1, 1) if winograd_shaped else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(["same", "valid"])))
    stride = ((1, 1) if padding == "same" or winograd_shaped
              else (draw(st.integers(1, 3)), draw(st.integers(1, 3))))
    pad = (0, 0) if padding in ("same", "valid") else padding
    if padding != "same":  # torch's rule: the dilated kernel fits in the padded input
        assume(H + 2 * pad[0] >= dilation[0] * (R - 1) + 1)
        assume(W + 2 * pad[1] >= dilation[1] * (S - 1) + 1)
    return dict(N=draw(st.integers(0, 4)), C=C, K=K, H=H, W=W, R=R, S=S, groups=groups,
                stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()),
                layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 2**16)),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])))


def _assert_near(got, want, dtype, algo):
    """float64: to rounding. float32 (the SIMD kernels): error relative to the reference's
    largest magnitude, looser for F(4x4) Winograd, whose float32 error is ~10x the others'."""
    if dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=algo)
        return
    scale = want.abs().max().item() if want.numel() else 0.0
    tol = (1e-4 if algo == "winograd" else 1e-5) * max(scale, 1.0)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, msg=algo)


def _conv_inputs(case):
    """(generator, x, w, b or None, conv keyword arguments) of a conv case, in float64."""
    gen = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["N"], case["C"], case["H"], case["W"], generator=gen, dtype=torch.float64)
    w = torch.randn(case["K"], case["C"] // case["groups"], case["R"], case["S"], generator=gen,
                    dtype=torch.float64)
    b = torch.randn(case["K"], generator=gen, dtype=torch.float64) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
              groups=case["groups"])
    return gen, x, w, b, kw


def _runnable(x, w, dtype, kw, dev):
    """The algorithms of dev's backend that can run this conv in dtype ("direct" runs all torch
    accepts)."""
    if dev.name == "cpu":
        algos = [a for a in cnnkern.algorithms("cpu")
                 if cnnkern.can_implement(x.to(dtype), w.to(dtype), algo=a, **kw)[0]]
    else:
        # As cnnkern.conv2d resolves "same": symmetric padding, plus an explicit pad of one.
        pad, extra = conv_padding(kw["padding"], w.shape, kw["stride"], kw["dilation"])
        shape = list(x.shape)
        if extra is not None:
            shape[2] += extra[3]
            shape[3] += extra[1]
        args = (shape, w.shape, list(kw["stride"]), list(pad), list(kw["dilation"]),
                kw["groups"], dtype)
        algos = [a for a in dev.algorithms() if not dev.why_not(*args, a)]
    assert algos, "no algorithm can run a case torch accepts"
    return algos


def _on(dev, *tensors):
    return [None if t is None else t.to(dev.device) for t in tensors]


@on_every_device
@given(case=conv_cases())
def test_conv2d_matches_torch_for_every_algorithm_that_can_run(case, dev):
    _check_conv(case, dev)


def _check_conv(case, dev):
    gen, x, w, b, kw = _conv_inputs(case)
    ref_in = [t.clone().requires_grad_() for t in (x, w)] + ([b.clone().requires_grad_()] if b is not None else [])
    ref = F.conv2d(ref_in[0], ref_in[1], ref_in[2] if b is not None else None, **kw)
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    ref_grads = torch.autograd.grad(ref, ref_in, g, allow_unused=True) if ref.numel() else None
    dtype = case["dtype"]
    for algo in _runnable(x, w, dtype, kw, dev):
        event(f"ran {algo}")
        ins = [_layout(t.to(dtype), case["layout"]) for t in _on(dev, x, w)]
        ins += [t.to(dtype) for t in _on(dev, b)] if b is not None else []
        ins = [t.requires_grad_() for t in ins]
        out = cnnkern.conv2d(ins[0], ins[1], ins[2] if b is not None else None, algo=algo, **kw)
        assert out.shape == ref.shape and out.dtype == dtype, algo
        _assert_near(out.cpu(), ref.detach(), dtype, algo)
        if ref.numel():
            grads = torch.autograd.grad(out, ins, g.to(dtype).to(out.device))
            for got, want in zip(grads, ref_grads):
                _assert_near(got.cpu(), want, dtype, algo)


@st.composite
def pool_cases(draw):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, ((k[0] - 1) * dilation[0] + 1) // 2)),
           draw(st.integers(0, ((k[1] - 1) * dilation[1] + 1) // 2)))
    return dict(N=draw(st.integers(0, 3)), C=draw(st.integers(1, 6)), H=draw(st.integers(1, 30)),
                W=draw(st.integers(1, 30)), kernel=k,
                stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))), padding=pad,
                dilation=dilation, ceil_mode=draw(st.booleans()),
                count_include_pad=draw(st.booleans()),
                divisor=draw(st.sampled_from([None, None, 1, 3])),
                layout=draw(st.sampled_from(LAYOUTS)), nan=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def _pool_pair(case, fn_ours, fn_ref, x, dev, ref_grad=None):
    """Both raise (same decision, ours with a message) or both agree in value and gradient
    (torch's, or ref_grad(g) where given)."""
    xr = x.clone().requires_grad_()
    xo = _layout(_on(dev, x.clone())[0], case["layout"]).requires_grad_()
    try:
        ref = fn_ref(xr)
    except RuntimeError:
        with pytest.raises((RuntimeError, ValueError)) as e:
            fn_ours(xo)
        assert str(e.value)
        return
    out = fn_ours(xo)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-9, equal_nan=True)
    if ref.numel():
        g = torch.randn_like(ref)
        want = ref_grad(g) if ref_grad else torch.autograd.grad(ref, xr, g)[0]
        torch.testing.assert_close(torch.autograd.grad(out, xo, g.to(out.device))[0].cpu(),
                                   want, rtol=1e-9, atol=1e-9, equal_nan=True)


@on_every_device
@given(case=pool_cases())
def test_max_pool2d_matches_torch(case, dev):
    _check_max_pool(case, dev)


def _padding_only(size, k, stride, pad, dil, out):
    """Along one axis, per output position: whether every tap of its window is padding."""
    return [all(not 0 <= o * stride - pad + j * dil < size for j in range(k)) for o in range(out)]


def _max_pool_grad_without_padding_only_windows(x, args):
    """The max-pool gradient with none from windows that lie entirely in the padding (their
    -inf output depends on no input), or None when there are none. torch scatters such an
    output's gradient to the index it returned, a position outside the window, even outside the
    plane (a write past the tensor: the long profile crashed in torch's own backward); cnnkern's
    CUDA kernels give zero, as here. The CPU backend does not yet (issue 15)."""
    try:
        out, idx = F.max_pool2d(x, *args, return_indices=True)
    except RuntimeError:
        return None
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), _ = args
    rows = torch.tensor(_padding_only(x.shape[2], kh, sh, ph, dh, out.shape[2]))
    cols = torch.tensor(_padding_only(x.shape[3], kw, sw, pw, dw, out.shape[3]))
    dead = rows[:, None] | cols[None, :]
    if not dead.any():
        return None

    def grad(g):
        flat = idx.masked_fill(dead, 0).flatten(2)
        g = g.masked_fill(dead, 0).flatten(2)
        plane = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], dtype=x.dtype)
        return plane.scatter_add_(2, flat, g).view_as(x)
    return grad


def _check_max_pool(case, dev):
    gen = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["N"], case["C"], case["H"], case["W"], generator=gen, dtype=torch.float64)
    if case["nan"] and x.numel():
        x.view(-1)[torch.randint(0, x.numel(), (max(1, x.numel() // 20),), generator=gen)] = float("nan")
    args = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
    ref_grad = _max_pool_grad_without_padding_only_windows(x, args)
    if ref_grad is not None:
        event("a window entirely in the padding")
    _pool_pair(case, lambda t: cnnkern.max_pool2d(t, *args), lambda t: F.max_pool2d(t, *args), x,
               dev, ref_grad)

    def indices(fn, t):
        return fn(t, *args, return_indices=True)[1]
    try:
        want = indices(F.max_pool2d, x)
    except RuntimeError:
        return
    got = indices(cnnkern.max_pool2d, _layout(_on(dev, x)[0], case["layout"]))
    assert torch.equal(got.cpu(), want)


@on_every_device
@given(case=pool_cases())
def test_avg_pool2d_matches_torch(case, dev):
    _check_avg_pool(case, dev)


def _check_avg_pool(case, dev):
    gen = torch.Generator().manual_seed(case["seed"])
    x = torch.randn(case["N"], case["C"], case["H"], case["W"], generator=gen, dtype=torch.float64)
    pad = tuple(min(p, k // 2) for p, k in zip(case["padding"], case["kernel"]))
    args = (case["kernel"], case["stride"], pad, case["ceil_mode"], case["count_include_pad"],
            case["divisor"])
    _pool_pair(case, lambda t: cnnkern.avg_pool2d(t, *args), lambda t: F.avg_pool2d(t, *args), x,
               dev)


ADAPTIVE = dict(N=st.integers(0, 3), C=st.integers(1, 5), H=st.integers(1, 30),
                W=st.integers(1, 30), oh=st.integers(1, 12), ow=st.integers(1, 12),
                layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**16))


@on_every_device
@given(**ADAPTIVE)
def test_adaptive_avg_pool2d_matches_torch(N, C, H, W, oh, ow, layout, seed, dev):
    _check_adaptive((N, C, H, W), (oh, ow), layout, seed, dev)


def _check_adaptive(shape, out_size, layout, seed, dev):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    case = {"layout": layout}
    _pool_pair(case, lambda t: cnnkern.adaptive_avg_pool2d(t, out_size),
               lambda t: F.adaptive_avg_pool2d(t, out_size), x, dev)


@st.composite
def invalid_conv_args(draw):
    """Arguments with at least one thing torch may reject."""
    rank = draw(st.sampled_from([4, 4, 4, 3, 2, 5]))
    shape = [draw(st.integers(0, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 8)),
             draw(st.integers(1, 8))][4 - min(rank, 4):] + [2] * max(0, rank - 4)
    w_rank = draw(st.sampled_from([4, 4, 3]))
    w_shape = [draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 9)),
               draw(st.integers(1, 9))][:w_rank]
    return dict(
        x_shape=shape, w_shape=w_shape,
        x_dtype=draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.int64])),
        w_dtype=draw(st.sampled_from([torch.float32, torch.float32, torch.float64])),
        bias=draw(st.sampled_from([None, 1, 2, 5])),
        stride=draw(st.sampled_from([1, 2, 0, -1, (1, 0)])),
        padding=draw(st.sampled_from([0, 1, -1, (0, 2), "same", "valid", "bogus"])),
        dilation=draw(st.sampled_from([1, 2, 0])),
        groups=draw(st.sampled_from([1, 2, 3, 0])),
    )


@on_every_device
@given(a=invalid_conv_args())
def test_invalid_conv_arguments_are_rejected_whenever_torch_rejects_them(a, dev):
    x = torch.zeros(a["x_shape"], dtype=a["x_dtype"], device=dev.device)
    w = torch.zeros(a["w_shape"], dtype=a["w_dtype"], device=dev.device)
    b = (None if a["bias"] is None
         else torch.zeros(a["bias"], dtype=a["w_dtype"], device=dev.device))
    kw = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
              groups=a["groups"])
    try:
        F.conv2d(x, w, b, **kw)
        torch_ok = True
    except (RuntimeError, ValueError, TypeError):
        torch_ok = False
    try:
        cnnkern.conv2d(x, w, b, **kw)
        ours_ok = True
    except (RuntimeError, ValueError, TypeError) as e:
        ours_ok = False
        assert str(e).strip(), "an error without a message"
    if not torch_ok:
        assert not ours_ok, f"torch rejects {a} but cnnkern accepted it"
    # cnnkern may reject more (integer dtypes: torch's CPU conv supports some; we do not)
    elif not ours_ok:
        assume(False)


@st.composite
def conv_bn_relu_cases(draw):
    case = draw(conv_cases())
    case.update(training=draw(st.booleans()), relu=draw(st.booleans()),
                affine=draw(st.booleans()), running=draw(st.sampled_from([True, True, False])),
                momentum=draw(st.sampled_from([0.1, 0.5, 1.0])),
                eps=draw(st.sampled_from([1e-5, 1e-3])))
    return case


def _bn_tolerance(z, var, eps, dtype, algo):
    """BN divides the conv's error by the batch (or running) standard deviation: the float32
    tolerance on the output is the conv's, relative to max|z|, times max 1/sqrt(var + eps)."""
    if dtype == torch.float64:
        return 1e-8
    scale = (z.abs().max().item() if z.numel() else 0.0) * (var + eps).rsqrt().max().item()
    return (1e-4 if algo == "winograd" else 1e-5) * max(scale, 1.0)


@on_every_device
@given(case=conv_bn_relu_cases())
def test_conv_bn_relu_matches_torch_for_every_algorithm_that_can_run(case, dev):
    """cnnkern.conv_bn_relu (eval: BN folded, ReLU in the epilogue; training: conv +
    bn_relu_train) against F.conv2d -> F.batch_norm -> F.relu in float64: output, running
    statistics, and (float64 draws) every gradient; torch's rejections (one value per channel
    in training, no running statistics in eval) must be ours too."""
    _check_conv_bn_relu(case, dev)


def _check_conv_bn_relu(case, dev):
    gen, x, w, b, kw = _conv_inputs(case)
    d64 = torch.float64
    gamma = torch.rand(case["K"], generator=gen, dtype=d64) + 0.5 if case["affine"] else None
    beta = torch.randn(case["K"], generator=gen, dtype=d64) if case["affine"] else None
    rm = torch.randn(case["K"], generator=gen, dtype=d64) if case["running"] else None
    rv = torch.rand(case["K"], generator=gen, dtype=d64) + 0.5 if case["running"] else None
    bn = dict(training=case["training"], momentum=case["momentum"], eps=case["eps"])
    leaves = [t for t in (x, w, b, gamma, beta) if t is not None]

    def ref_fn(ins, rm_, rv_):
        it = iter(ins)
        xi, wi = next(it), next(it)
        bi, gi, be = (next(it) if t is not None else None for t in (b, gamma, beta))
        z = F.conv2d(xi, wi, bi, **kw)
        y = F.batch_norm(z, rm_, rv_, gi, be, **bn)
        return (F.relu(y) if case["relu"] else y), z

    ref_in = [t.clone().requires_grad_() for t in leaves]
    ref_rm, ref_rv = (None if t is None else t.clone() for t in (rm, rv))
    try:
        ref, z = ref_fn(ref_in, ref_rm, ref_rv)
        torch_error = None
    except (RuntimeError, ValueError) as e:
        torch_error = e
    dtype = case["dtype"]
    for algo in _runnable(x, w, dtype, kw, dev):
        ins = [(_layout(t.to(dtype), case["layout"]) if t.dim() == 4 else t.to(dtype))
               .requires_grad_() for t in _on(dev, *leaves)]
        it = iter(ins)
        xi, wi = next(it), next(it)
        bi, gi, be = (next(it) if t is not None else None for t in (b, gamma, beta))
        our_rm, our_rv = (None if t is None else t.to(dtype, copy=True) for t in _on(dev, rm, rv))
        call = lambda: cnnkern.conv_bn_relu(xi, wi, bi, gi, be, our_rm, our_rv, **bn, **kw,  # noqa: E731
                                            relu=case["relu"], algo=algo)
        if torch_error is not None or not (case["training"] or case["running"]):
            # Eval needs running statistics: torch lets an empty batch through without them
            # (its empty-input shortcut); we reject that call as well.
            with pytest.raises((RuntimeError, ValueError)) as e:
                call()
            assert str(e.value).strip(), "an error without a message"
            event("rejected, as by torch" if torch_error is not None else "rejected: eval "
                  "without running statistics")
            continue
        event(f"{'train' if case['training'] else 'eval'} ran {algo}")
        out = call()
        assert out.shape == ref.shape and out.dtype == dtype, algo
        if case["training"]:
            var = z.detach().var(dim=(0, 2, 3), unbiased=False) if z.numel() else torch.ones(1)
        else:
            var = rv
        tol = _bn_tolerance(z.detach(), var, case["eps"], dtype, algo)
        torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=0, atol=tol, msg=algo,
                                   equal_nan=True)
        for got, want in ((our_rm, ref_rm), (our_rv, ref_rv)):
            if want is not None:
                torch.testing.assert_close(got.double().cpu(), want, rtol=0,
                                           atol=1e-8 if dtype == d64 else 1e-4 * max(
                                               1.0, want.abs().max().item()), equal_nan=True)
        if dtype == d64 and ref.numel():
            g = torch.randn(ref.shape, generator=gen, dtype=d64)
            for got, want in zip(torch.autograd.grad(out, ins, g.to(out.device)),
                                 torch.autograd.grad(ref, ref_in, g, retain_graph=True)):
                torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-7, msg=algo)
