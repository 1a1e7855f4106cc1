"""The fused BatchNorm op's ReLU clamped above (relu_max; ReLU6 = relu_max 6, MobileNetV2's
activation): bn_relu_train / bn_relu_backward, cnnkern.conv_bn_relu and cnnkern.convert of
Conv2d -> BatchNorm2d -> ReLU6 chains, against torch's conv -> batch_norm -> relu6 in float64
(and float32 where the kernels have float32 paths of their own), on the CPU, a GPU and the CUDA
emulator (the `dev` fixture, tests/conftest.py; the emulator takes one small case each)."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnkern
from conftest import DEVICES, assert_close, cross, per_device

OPS = torch.ops.cnnkern
F32, F64 = pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")
NCHW = pytest.param(torch.contiguous_format, id="nchw")
NHWC = pytest.param(torch.channels_last, id="nhwc")


def _bn_inputs(shape, dtype, fmt=torch.contiguous_format, seed=0):
    """z and affine parameters whose normalised values reach well past 6 and below 0: gamma
    3 to 5 puts several percent of the values above 6, so both clamps are exercised."""
    gen = torch.Generator().manual_seed(seed)
    k = shape[1]
    z = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).to(dtype)
    gamma = (torch.rand(k, generator=gen, dtype=torch.float64) * 2 + 3).to(dtype)
    beta = torch.randn(k, generator=gen, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return (z.contiguous(memory_format=fmt), gamma, beta, dy.contiguous(memory_format=fmt))


def _torch_reference(z, gamma, beta, dy, relu_max):
    """torch's batch_norm (training) -> hardtanh(0, relu_max), in float64: the output and the
    gradients of z, gamma and beta for the output gradient dy; and the fraction clamped above."""
    z64, g64, b64 = (t.detach().double().requires_grad_() for t in (z, gamma, beta))
    v = F.batch_norm(z64, None, None, g64, b64, training=True, eps=1e-5)
    y = F.hardtanh(v, 0.0, relu_max)
    y.backward(dy.double())
    above = float((v > relu_max).double().mean())
    return y.detach(), z64.grad, g64.grad, b64.grad, above


def _fused(z, gamma, beta, dy, relu_max):
    """The op pair as autograd runs it: bn_relu_train, then its backward."""
    z, gamma, beta = (t.detach().clone().requires_grad_() for t in (z, gamma, beta))
    y = OPS.bn_relu_train(z, gamma, beta, 1e-5, True, relu_max)[0]
    y.backward(dy)
    return y.detach(), z.grad, gamma.grad, beta.grad


# Planes around the CPU kernels' vector widths and float32 blocks (8 lanes, blocks of 32
# steps = 256 values), a channels_last row count around its block of 16, channels not a
# multiple of 4.
SHAPES = [(3, 5, 1, 7), (2, 6, 17, 17), (2, 3, 23, 23), (1, 7, 40, 40)]


@pytest.mark.parametrize("dev, shape, dtype, fmt", per_device(
    cpu=cross(SHAPES, [F32, F64], [NCHW, NHWC]), gpu=cross(SHAPES, [F32, F64], [NCHW]),
    emu=cross([(2, 3, 5, 6)], [F32], [NCHW])), indirect=["dev"])
@pytest.mark.parametrize("relu_max", [6.0, 0.5])
def test_train_op_and_backward_match_torch_hardtanh(shape, dtype, fmt, relu_max, dev):
    z, gamma, beta, dy = (t.to(dev.device) for t in _bn_inputs(shape, dtype, fmt))
    y_ref, gz_ref, gg_ref, gb_ref, above = _torch_reference(z, gamma, beta, dy, relu_max)
    assert above > 0.01, "the inputs must reach the upper clamp for the test to mean anything"
    y, gz, gg, gb = _fused(z, gamma, beta, dy, relu_max)
    assert float(y.max()) <= relu_max and float(y.min()) >= 0
    assert_close(y, y_ref, msg="output")
    assert_close(gz, gz_ref, msg="grad z")
    assert_close(gg, gg_ref, scale=float(dy.abs().sum(dim=(0, 2, 3)).max()), msg="grad gamma")
    assert_close(gb, gb_ref, scale=float(dy.abs().sum(dim=(0, 2, 3)).max()), msg="grad beta")
    if fmt == torch.channels_last:
        assert gz.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_plain_relu_is_unchanged_by_the_clamp_argument(on_dev):
    # relu_max=None must be the ReLU path exactly (bitwise: the same kernels run).
    z, gamma, beta, dy = (t.to(on_dev.device) for t in _bn_inputs((2, 3, 5, 6), torch.float32))
    a = _fused(z, gamma, beta, dy, None)
    zz, gg, bb = (t.detach().clone().requires_grad_() for t in (z, gamma, beta))
    y = OPS.bn_relu_train(zz, gg, bb, 1e-5, True)[0]
    y.backward(dy)
    for got, want in zip(a, (y.detach(), zz.grad, gg.grad, bb.grad)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("dev, shape", per_device(
    cpu=[(2, 3, 4, 5)], gpu=[(2, 3, 4, 5)], emu=[(1, 2, 3, 3)]), indirect=["dev"])
def test_conv_bn_relu6_gradcheck_float64(shape, on_dev):
    n, k, h, w = shape
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, h, w, generator=gen, dtype=torch.float64).to(on_dev.device)
    wt = torch.randn(k, 2, 3, 3, generator=gen, dtype=torch.float64).to(on_dev.device)
    gamma = (torch.rand(k, generator=gen, dtype=torch.float64) * 3 + 2).to(on_dev.device)
    beta = torch.randn(k, generator=gen, dtype=torch.float64).to(on_dev.device)
    args = [t.requires_grad_() for t in (x, wt, gamma, beta)]

    def f(x, w, gamma, beta):
        z = OPS.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1, "auto")
        return OPS.bn_relu_train(z, gamma, beta, 1e-5, True, 1.5)[0]
    out = f(*args)
    assert bool((out == 1.5).any()) and bool((out == 0).any()), "both clamps must be reached"
    assert torch.autograd.gradcheck(f, args)


def test_opcheck_with_relu_max():
    z = torch.randn(2, 6, 5, 5, requires_grad=True)
    gamma, beta = torch.rand(6, requires_grad=True), torch.randn(6, requires_grad=True)
    result = torch.library.opcheck(OPS.bn_relu_train.default, (z, gamma, beta, 1e-5, True, 6.0))
    assert all(v == "SUCCESS" for v in result.values()), result
    mean, invstd = torch.randn(6), torch.rand(6) + 0.5
    result = torch.library.opcheck(OPS.bn_relu_backward.default,
                                   (torch.randn(2, 6, 5, 5), z.detach(), mean, invstd,
                                    gamma.detach(), beta.detach(), True, 6.0))
    assert all(v == "SUCCESS" for v in result.values()), result


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("relu, relu_max, message", [
    (False, 6.0, "relu_max needs relu=True (it clamps the ReLU's output); got relu=False and "
                 "relu_max=6"),
    (True, 0.0, "relu_max must be positive and finite; got 0"),
    (True, -1.0, "relu_max must be positive and finite; got -1"),
    (True, float("inf"), "relu_max must be positive and finite; got inf"),
])
def test_bad_relu_max_is_an_error_naming_it(relu, relu_max, message, device):
    z = torch.randn(2, 3, 4, 4, device=device)
    with pytest.raises(RuntimeError, match="cnnkern.conv_bn_relu: " + re.escape(message)):
        OPS.bn_relu_train(z, None, None, 1e-5, relu, relu_max)
    mean, invstd = torch.zeros(3, device=device), torch.ones(3, device=device)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        OPS.bn_relu_backward(z, z, mean, invstd, None, None, relu, relu_max)


def test_functional_checks_relu_max():
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    args = (x, w, None, None, None, None, None, True)
    with pytest.raises(ValueError, match=r"relu_max needs relu=True .* relu_max=6"):
        cnnkern.conv_bn_relu(*args, relu=False, relu_max=6)
    for bad in (0, -2.0, float("nan"), True, "6"):
        with pytest.raises(ValueError, match="relu_max must be a positive finite number; got "
                                             + re.escape(repr(bad))):
            cnnkern.conv_bn_relu(*args, relu_max=bad)


# --- cnnkern.convert: Conv2d -> BatchNorm2d -> ReLU6 ----------------------------------------

def _block(cin, cout, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _Net(nn.Module):
    """MobileNetV2's pattern at toy size: Conv-BN-ReLU6 blocks (one depthwise), a Conv-BN
    without activation, a residual add."""

    def __init__(self):
        super().__init__()
        self.stem = _block(3, 8, stride=2)
        self.dw = _block(8, 8, groups=8)
        self.project = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(x))
        return self.head(x.mean((2, 3)))


def _spread_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(2.0, 4.0)   # normalised values past 6 in every channel
                m.bias.uniform_(-1.0, 1.0)


def test_convert_fuses_relu6_and_trains_and_evaluates_as_torch():
    torch.manual_seed(0)
    ref = _Net().double()
    _spread_bn(ref)
    fast, report = cnnkern.convert(ref, report=True)
    text = str(report)
    assert "ReLU6 stem.2 -> nn.Identity" in text and "ReLU6 dw.2 -> nn.Identity" in text, text
    assert type(fast.stem[2]) is nn.Identity and fast.stem[0].relu_max == 6.0
    assert fast.project[0].fused_relu is False
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    for step in range(2):
        ref.train(), fast.train()
        ref.zero_grad(), fast.zero_grad()
        y_ref, y = ref(x), fast(x)
        assert_close(y, y_ref, msg=f"train output, step {step}")
        y_ref.square().sum().backward()
        y.square().sum().backward()
        for (name, p_ref), (_, p) in zip(ref.named_parameters(), fast.named_parameters()):
            assert_close(p.grad, p_ref.grad, msg=f"grad {name}, step {step}")
    for (name, b_ref), (_, b) in zip(ref.named_buffers(), fast.named_buffers()):
        assert_close(b.double(), b_ref.double(), msg=name)
    ref.eval(), fast.eval()
    with torch.no_grad():
        assert_close(fast(x), ref(x), msg="eval output")
    # The stem's activations reach the clamp: the comparison above covers it.
    with torch.no_grad():
        v = ref.stem[1](ref.stem[0](x))
    assert bool((v > 6).any())


def test_convert_leaves_a_relu6_called_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), \
                nn.ReLU6()

        def forward(self, x):
            return self.act(self.act(self.bn(self.conv(x))) - 1)

    fast, report = cnnkern.convert(Twice(), report=True)
    assert type(fast.act) is nn.ReLU6 and fast.conv.fused_relu is False
    assert "the ReLU6 module stays after it: it is called 2 times" in str(report)
    x = torch.randn(2, 3, 6, 6)
    ref = Twice()
    ref.load_state_dict(fast.state_dict())
    assert_close(fast(x), ref(x))


def test_eval_with_grad_clamps_out_of_place():
    # Eval-mode fine-tuning: the upper clamp must not write into conv2d_relu's output.
    torch.manual_seed(0)
    ref = _block(3, 4).double().eval()
    _spread_bn(ref)
    fast = cnnkern.convert(ref)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    fast(x).sum().backward()
    g = x.grad.clone()
    x.grad = None
    ref(x).sum().backward()
    assert_close(g, x.grad)
