"""float64 torch.autograd.gradcheck for every differentiable op, on tiny shapes, on every
backend: the CPU, a GPU ("cuda") and the CUDA emulator ("cuda_emu"; the `dev` fixture,
tests/conftest.py)."""

import pytest
import torch
from torch.autograd import gradcheck

import cnnkern
from conftest import DEVICES, per_device


@pytest.fixture
def f64(dev):
    """Factory keyword arguments: float64 on the backend's device."""
    return dict(dtype=torch.float64, device=dev.device)


def _req(*ts):
    return tuple(t.requires_grad_(True) if t is not None else None for t in ts)


CONV_GRADCHECK = [
    # id, input shape, weight shape, bias?, kwargs
    ("plain", (2, 2, 5, 5), (3, 2, 3, 3), True, dict()),
    ("pad1", (1, 3, 4, 5), (2, 3, 3, 3), True, dict(padding=1)),
    ("stride2", (1, 2, 6, 7), (2, 2, 3, 3), True, dict(stride=2, padding=1)),
    ("asym_stride_pad", (1, 2, 6, 5), (2, 2, 2, 3), False, dict(stride=(2, 1), padding=(0, 1))),
    ("dilation2", (1, 2, 7, 6), (2, 2, 3, 3), True, dict(dilation=2, padding=1)),
    ("asym_dilation", (1, 1, 6, 7), (2, 1, 2, 3), False, dict(dilation=(2, 1))),
    ("groups2", (2, 4, 5, 5), (4, 2, 3, 3), True, dict(groups=2, padding=1)),
    ("depthwise", (1, 3, 5, 4), (3, 1, 3, 3), True, dict(groups=3, padding=1, stride=2)),
    ("1x1", (2, 3, 3, 4), (2, 3, 1, 1), True, dict()),
    ("same_even_kernel", (1, 2, 5, 5), (2, 2, 2, 2), True, dict(padding="same")),
    ("same_dilated", (1, 2, 5, 6), (2, 2, 3, 2), False, dict(padding="same", dilation=(1, 3))),
    ("valid", (1, 2, 5, 5), (2, 2, 3, 3), False, dict(padding="valid")),
    ("kernel_gt_input", (1, 1, 2, 3), (2, 1, 4, 4), True, dict(padding=2)),
    ("mixed", (2, 4, 7, 6), (2, 2, 3, 2), True, dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                                                     groups=2)),
]


CONV_CASES = [pytest.param(*c[1:], id=c[0]) for c in CONV_GRADCHECK]


# In the emulator, all but the two largest (5 s and 3 s under AddressSanitizer there; groups stay
# covered by "depthwise", every other feature of "mixed" by a case of its own).
@pytest.mark.parametrize("dev, xs, ws, has_bias, kwargs", per_device(
    cpu=CONV_CASES, gpu=CONV_CASES,
    emu=[c for c in CONV_CASES if c.id not in ("groups2", "mixed")]), indirect=["dev"])
def test_conv2d_gradcheck(xs, ws, has_bias, kwargs, f64):
    x, w = torch.randn(xs, **f64), torch.randn(ws, **f64)
    b = torch.randn(ws[0], **f64) if has_bias else None
    x, w, b = _req(x, w, b)
    assert gradcheck(lambda x, w, b: cnnkern.conv2d(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv2d_gradcheck_unbatched(f64):
    x, w, b = _req(torch.randn(2, 4, 5, **f64), torch.randn(3, 2, 2, 2, **f64), torch.randn(3, **f64))
    assert gradcheck(lambda x, w, b: cnnkern.conv2d(x, w, b, padding=1), (x, w, b))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv2d_raw_op_gradcheck(f64):
    x, w, b = _req(torch.randn(1, 2, 5, 4, **f64), torch.randn(2, 2, 3, 3, **f64), torch.randn(2, **f64))
    assert gradcheck(
        lambda x, w, b: torch.ops.cnnkern.conv2d(x, w, b, [2, 1], [1, 0], [1, 1], 1, "auto"),
        (x, w, b))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv2d_gradcheck_weight_only(f64):
    x = torch.randn(1, 2, 5, 5, **f64)
    (w,) = _req(torch.randn(2, 2, 3, 3, **f64))
    assert gradcheck(lambda w: cnnkern.conv2d(x, w, stride=2), (w,))


def _distinct(*shape, **f64):
    """Values a whole unit apart (a random permutation): no ties, even after gradcheck's eps."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n).to(**f64) - n / 2).reshape(shape)


MAX_GRADCHECK = [
    ("k2s2", (1, 2, 4, 4), dict(kernel_size=2)),
    ("k3s2p1", (2, 1, 5, 5), dict(kernel_size=3, stride=2, padding=1)),
    ("overlap_k3s1", (1, 2, 4, 5), dict(kernel_size=3, stride=1)),
    ("rect_asym", (1, 1, 5, 7), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    ("dilation2", (1, 1, 6, 6), dict(kernel_size=2, stride=1, dilation=2)),
    ("ceil", (1, 2, 5, 5), dict(kernel_size=2, stride=2, ceil_mode=True)),
    ("ceil_pad", (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]


@pytest.mark.parametrize("shape, kwargs", [pytest.param(*c[1:], id=c[0]) for c in MAX_GRADCHECK])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool2d_gradcheck(shape, kwargs, f64):
    (x,) = _req(_distinct(*shape, **f64))
    assert gradcheck(lambda x: cnnkern.max_pool2d(x, **kwargs), (x,))
    assert gradcheck(lambda x: cnnkern.max_pool2d(x, **kwargs, return_indices=True)[0], (x,))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_max_pool2d_gradcheck_unbatched(f64):
    (x,) = _req(_distinct(2, 5, 4, **f64))
    assert gradcheck(lambda x: cnnkern.max_pool2d(x, 2, 1), (x,))


AVG_GRADCHECK = [
    ("k2s2", (1, 2, 4, 4), dict(kernel_size=2)),
    ("k3s2p1_include", (2, 1, 5, 5), dict(kernel_size=3, stride=2, padding=1)),
    ("k3s2p1_exclude", (1, 1, 5, 6), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("ceil_overhang", (1, 1, 5, 5), dict(kernel_size=2, stride=2, ceil_mode=True)),
    ("ceil_pad_exclude", (1, 2, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                            count_include_pad=False)),
    ("divisor_override", (1, 1, 5, 5), dict(kernel_size=(2, 3), stride=1, padding=(1, 1),
                                            divisor_override=4)),
]


@pytest.mark.parametrize("shape, kwargs", [pytest.param(*c[1:], id=c[0]) for c in AVG_GRADCHECK])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_avg_pool2d_gradcheck(shape, kwargs, f64):
    (x,) = _req(torch.randn(shape, **f64))
    assert gradcheck(lambda x: cnnkern.avg_pool2d(x, **kwargs), (x,))


@pytest.mark.parametrize("shape, output_size", [
    ((1, 2, 4, 4), 2), ((2, 1, 5, 7), (3, 4)), ((1, 1, 3, 2), (4, 3)), ((1, 3, 5, 5), 1),
    ((1, 2, 4, 6), (None, 4)), ((2, 5, 4), (3, 3)),
], ids=["divisible", "non_divisible", "upsample", "global", "none_entry", "unbatched"])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_adaptive_avg_pool2d_gradcheck(shape, output_size, f64):
    (x,) = _req(torch.randn(shape, **f64))
    assert gradcheck(lambda x: cnnkern.adaptive_avg_pool2d(x, output_size), (x,))


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_raw_pool_ops_gradcheck(f64):
    (x,) = _req(_distinct(1, 2, 5, 5, **f64))
    assert gradcheck(
        lambda x: torch.ops.cnnkern.max_pool2d_with_indices(x, [2, 2], [2, 2], [1, 1], [1, 1],
                                                            True)[0], (x,))
    assert gradcheck(
        lambda x: torch.ops.cnnkern.avg_pool2d(x, [3, 2], [2, 1], [1, 0], False, False, None),
        (x,))
    assert gradcheck(lambda x: torch.ops.cnnkern.adaptive_avg_pool2d(x, [3, 2]), (x,))
