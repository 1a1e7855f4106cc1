"""torch.library.opcheck on every cnnkern tensor op: schema, autograd registration, fake
kernels (incl. dynamic shapes) and AOT dispatch, on every backend: the CPU, a GPU ("cuda") and
the CUDA emulator ("cuda_emu"; the `dev` fixture, tests/conftest.py), where the fake kernels
must agree with the CUDA backend's real outputs.

An opcheck is mostly tracing, seconds of it under the emulator's AddressSanitizer: there each op
is checked on its first case, in float32 with gradients (the CPU and a GPU take every case)."""

import pytest
import torch

import cnnkern  # noqa: F401  (loads the ops)
from conftest import DEVICES, cross, per_device

OPS = torch.ops.cnnkern
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
GRAD = [pytest.param(True, id="grad"), pytest.param(False, id="nograd")]


def every_device(*lists):
    """per_device parameters: every case on the CPU and a GPU, the first in the emulator."""
    cases = cross(*lists)
    return per_device(cpu=cases, gpu=cases, emu=cases[:1])


def _rg(t, requires_grad):
    return t.requires_grad_(requires_grad) if t is not None else None


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert result, result
    assert all(v == "SUCCESS" for v in result.values()), result


# (input shape, weight shape, bias?, stride, padding, dilation, groups)
CONV_ARGS = [
    pytest.param((2, 3, 6, 6), (4, 3, 3, 3), True, [1, 1], [1, 1], [1, 1], 1, id="3x3_pad1"),
    pytest.param((1, 4, 7, 6), (6, 2, 3, 2), False, [2, 1], [0, 1], [1, 2], 2, id="groups2_asym"),
    pytest.param((2, 3, 5, 5), (3, 1, 3, 3), True, [2, 2], [1, 1], [1, 1], 3, id="depthwise_s2"),
    pytest.param((1, 2, 3, 3), (2, 2, 5, 5), True, [1, 1], [2, 2], [1, 1], 1, id="kernel_gt_input"),
    pytest.param((0, 2, 4, 4), (3, 2, 3, 3), True, [1, 1], [0, 0], [1, 1], 1, id="empty_batch"),
]


@pytest.mark.parametrize("dev, xs, ws, bias, stride, padding, dilation, groups, dtype, "
                         "requires_grad", every_device(CONV_ARGS, DTYPES, GRAD), indirect=["dev"])
def test_conv2d(xs, ws, bias, stride, padding, dilation, groups, dtype, requires_grad, dev):
    x = _rg(torch.randn(xs, dtype=dtype, device=dev.device), requires_grad)
    w = _rg(torch.randn(ws, dtype=dtype, device=dev.device), requires_grad)
    b = _rg(torch.randn(ws[0], dtype=dtype, device=dev.device), requires_grad) if bias else None
    _opcheck(OPS.conv2d.default, (x, w, b, stride, padding, dilation, groups, "auto"))


@pytest.mark.parametrize("dev, xs, ws, bias, stride, padding, dilation, groups, dtype",
                         every_device(CONV_ARGS, DTYPES), indirect=["dev"])
def test_conv2d_backward_ops(xs, ws, bias, stride, padding, dilation, groups, dtype, dev):
    x = torch.randn(xs, dtype=dtype, device=dev.device)
    w = torch.randn(ws, dtype=dtype, device=dev.device)
    out_shape = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups).shape
    g = torch.randn(out_shape, dtype=dtype, device=dev.device)
    _opcheck(OPS.conv2d_backward_input.default,
             (g, w, list(xs), stride, padding, dilation, groups, "auto"))
    _opcheck(OPS.conv2d_backward_weight.default,
             (g, x, list(ws), stride, padding, dilation, groups, "auto"))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv2d_direct_algo(dev):
    x = torch.randn(1, 2, 5, 5, device=dev.device, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, device=dev.device, requires_grad=True)
    _opcheck(OPS.conv2d.default, (x, w, None, [1, 1], [1, 1], [1, 1], 1, "direct"))


# (input shape, kernel, stride, padding, dilation, ceil_mode)
MAX_ARGS = [
    pytest.param((2, 3, 6, 6), [2, 2], [2, 2], [0, 0], [1, 1], False, id="k2s2"),
    pytest.param((1, 2, 7, 8), [3, 2], [2, 1], [1, 1], [1, 2], True, id="asym_ceil_dil"),
    pytest.param((1, 2, 5, 5), [2, 2], [2, 2], [1, 1], [1, 1], True, id="ceil_drop_last"),
    pytest.param((0, 2, 4, 4), [2, 2], [2, 2], [0, 0], [1, 1], False, id="empty_batch"),
]


@pytest.mark.parametrize("dev, xs, k, s, p, d, ceil, dtype, requires_grad",
                         every_device(MAX_ARGS, DTYPES, GRAD), indirect=["dev"])
def test_max_pool2d_with_indices(xs, k, s, p, d, ceil, dtype, requires_grad, dev):
    x = _rg(torch.randn(xs, dtype=dtype, device=dev.device), requires_grad)
    _opcheck(OPS.max_pool2d_with_indices.default, (x, k, s, p, d, ceil))


@pytest.mark.parametrize("dev, xs, k, s, p, d, ceil, dtype, requires_grad",
                         every_device(MAX_ARGS, DTYPES, GRAD), indirect=["dev"])
def test_max_pool2d_values_only(xs, k, s, p, d, ceil, dtype, requires_grad, dev):
    x = _rg(torch.randn(xs, dtype=dtype, device=dev.device), requires_grad)
    _opcheck(OPS.max_pool2d.default, (x, k, s, p, d, ceil))


@pytest.mark.parametrize("dev, xs, k, s, p, d, ceil, dtype", every_device(MAX_ARGS, DTYPES),
                         indirect=["dev"])
def test_max_pool2d_backward(xs, k, s, p, d, ceil, dtype, dev):
    x = torch.randn(xs, dtype=dtype, device=dev.device)
    out, idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, d, ceil)
    g = torch.randn(out.shape, dtype=dtype, device=dev.device)
    _opcheck(OPS.max_pool2d_backward.default, (g, idx, list(xs), k, s, p, d, ceil))


# (input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_ARGS = [
    pytest.param((2, 3, 6, 6), [2, 2], [2, 2], [0, 0], False, True, None, id="k2s2"),
    pytest.param((1, 2, 7, 8), [3, 2], [2, 1], [1, 1], True, False, None, id="asym_ceil_excl"),
    pytest.param((1, 2, 5, 5), [3, 3], [1, 1], [1, 1], False, True, 4, id="divisor4"),
    pytest.param((0, 2, 4, 4), [2, 2], [2, 2], [0, 0], False, True, None, id="empty_batch"),
]


@pytest.mark.parametrize("dev, xs, k, s, p, ceil, cip, div, dtype, requires_grad",
                         every_device(AVG_ARGS, DTYPES, GRAD), indirect=["dev"])
def test_avg_pool2d(xs, k, s, p, ceil, cip, div, dtype, requires_grad, dev):
    x = _rg(torch.randn(xs, dtype=dtype, device=dev.device), requires_grad)
    _opcheck(OPS.avg_pool2d.default, (x, k, s, p, ceil, cip, div))


@pytest.mark.parametrize("dev, xs, k, s, p, ceil, cip, div, dtype",
                         every_device(AVG_ARGS, DTYPES), indirect=["dev"])
def test_avg_pool2d_backward(xs, k, s, p, ceil, cip, div, dtype, dev):
    x = torch.randn(xs, dtype=dtype, device=dev.device)
    out = torch.ops.aten.avg_pool2d(x, k, s, p, ceil, cip, div)
    g = torch.randn(out.shape, dtype=dtype, device=dev.device)
    _opcheck(OPS.avg_pool2d_backward.default, (g, list(xs), k, s, p, ceil, cip, div))


ADAPTIVE_ARGS = [
    pytest.param((2, 3, 8, 8), [4, 4], id="divisible"),
    pytest.param((1, 2, 7, 9), [3, 4], id="non_divisible"),
    pytest.param((2, 2, 5, 6), [1, 1], id="global"),
    pytest.param((1, 2, 3, 2), [5, 4], id="upsample"),
]


@pytest.mark.parametrize("dev, xs, out_size, dtype, requires_grad",
                         every_device(ADAPTIVE_ARGS, DTYPES, GRAD), indirect=["dev"])
def test_adaptive_avg_pool2d(xs, out_size, dtype, requires_grad, dev):
    x = _rg(torch.randn(xs, dtype=dtype, device=dev.device), requires_grad)
    _opcheck(OPS.adaptive_avg_pool2d.default, (x, out_size))


@pytest.mark.parametrize("dev, xs, out_size, dtype", every_device(ADAPTIVE_ARGS, DTYPES),
                         indirect=["dev"])
def test_adaptive_avg_pool2d_backward(xs, out_size, dtype, dev):
    g = torch.randn(xs[0], xs[1], *out_size, dtype=dtype, device=dev.device)
    _opcheck(OPS.adaptive_avg_pool2d_backward.default, (g, list(xs)))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv_ops_with_allow_tf32(dev):
    """The `allow_tf32` argument (cnnkern.backends) through schema, fake and autograd checks."""
    x = torch.randn(2, 3, 6, 6, device=dev.device, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, device=dev.device, requires_grad=True)
    b = torch.randn(4, device=dev.device, requires_grad=True)
    args = ([1, 1], [1, 1], [1, 1], 1, "auto", True)
    _opcheck(OPS.conv2d.default, (x, w, b) + args)
    _opcheck(OPS.conv2d_relu.default, (x, w, b) + args)
    g = torch.randn(2, 4, 6, 6, device=dev.device)
    _opcheck(OPS.conv2d_backward_input.default, (g, w.detach(), [2, 3, 6, 6]) + args)
    _opcheck(OPS.conv2d_backward_weight.default, (g, x.detach(), [4, 3, 3, 3]) + args)


# channels_last: the ops keep that layout (outputs, indices, grad_input), and the fake kernels
# must say the same strides.
CL = torch.channels_last


def _cl(t):
    return torch.empty(t.shape, dtype=t.dtype, device=t.device, memory_format=CL).copy_(t)


def _fake_strides_match(op, args):
    """The fake kernel's output strides are the real kernel's (checked directly as well)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = op(*args)
    with FakeTensorMode() as mode:
        fake = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    for r, f in zip(real if isinstance(real, tuple) else (real,),
                    fake if isinstance(fake, tuple) else (fake,)):
        assert r.stride() == f.stride(), (op, r.stride(), f.stride())


def _opcheck_cl(op, args):
    _opcheck(op, args)
    _fake_strides_match(op, args)


@pytest.mark.parametrize("dev, xs, requires_grad", every_device(
    [pytest.param(xs, id=str(xs)) for xs in [(2, 3, 7, 6), (1, 1, 5, 5), (2, 4, 3, 3)]], GRAD),
    indirect=["dev"])
def test_pool_ops_channels_last(xs, requires_grad, dev):
    x = _rg(_cl(torch.randn(xs, dtype=torch.float64, device=dev.device)), requires_grad)
    _opcheck_cl(OPS.max_pool2d_with_indices.default, (x, [2, 2], [2, 1], [1, 0], [1, 1], True))
    _opcheck_cl(OPS.max_pool2d.default, (x, [2, 2], [2, 1], [1, 0], [1, 1], True))
    _opcheck_cl(OPS.avg_pool2d.default, (x, [3, 2], [2, 2], [1, 1], True, False, None))
    _opcheck_cl(OPS.adaptive_avg_pool2d.default, (x, [2, 3]))
    _opcheck_cl(OPS.adaptive_avg_pool2d.default, (x, [1, 1]))


@pytest.mark.parametrize("dev, xs", every_device(
    [pytest.param(xs, id=str(xs)) for xs in [(2, 3, 7, 6), (1, 1, 5, 5)]]), indirect=["dev"])
def test_pool_backward_ops_channels_last(xs, dev):
    x = _cl(torch.randn(xs, dtype=torch.float64, device=dev.device))
    k, s, p, d = [2, 2], [2, 1], [1, 0], [1, 1]
    out, idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, d, True)
    f64 = dict(dtype=torch.float64, device=dev.device)
    _opcheck_cl(OPS.max_pool2d_backward.default,
             (_cl(torch.randn(out.shape, **f64)), idx, list(xs), k, s, p, d, True))
    out = torch.ops.aten.avg_pool2d(x, k, s, p, True, False, None)
    _opcheck_cl(OPS.avg_pool2d_backward.default,
             (_cl(torch.randn(out.shape, **f64)), list(xs), k, s, p, True, False, None))
    g = _cl(torch.randn(xs[0], xs[1], 2, 3, **f64))
    _opcheck_cl(OPS.adaptive_avg_pool2d_backward.default, (g, list(xs)))
