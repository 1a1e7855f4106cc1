"""A ReLU module called at several places (ResNet's `self.relu`, after bn1 and after the
residual add) is fused into the conv + BN before it anyway: convert leaves it as
SkipAppliedReLU, which passes the fused output through and applies the ReLU everywhere else
(cnnkern/_relu_mark.py). The original model is the reference, in float64: same outputs and
gradients; and the ReLU runs only where the fused op did not already apply it.
"""

import pytest
import torch
import torch.nn as tnn

import cnnkern
from cnnkern import _relu_mark
from cnnkern._relu_mark import SkipAppliedReLU, mark_relu_applied, relu_applied
from conftest import assert_close


class Block(tnn.Module):
    """torchvision's BasicBlock shape: one inplace `self.relu`, after bn1 and after the add."""

    def __init__(self, c=6, write_in_place=False):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c)
        self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c)
        self.relu = tnn.ReLU(inplace=True)
        self.write_in_place = write_in_place

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        if self.write_in_place:
            # After the fused ReLU, a write: the next call of self.relu must apply it again.
            return self.relu(out.sub_(0.75))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def count_relu_calls(monkeypatch):
    """A list that gets one entry per F.relu call (torch.nn.functional.relu itself: the
    original model's nn.ReLU calls count too, so callers look at the length around a call)."""
    calls = []
    real = _relu_mark.F.relu

    def counting(x, inplace=False):
        calls.append(tuple(x.shape))
        return real(x, inplace=inplace)
    monkeypatch.setattr(_relu_mark.F, "relu", counting)
    return calls


def relu_calls_in(calls, fn, *args):
    before = len(calls)
    out = fn(*args)
    return out, len(calls) - before


def test_mark_follows_the_tensors_version():
    t = torch.randn(4)
    assert not relu_applied(t)
    assert mark_relu_applied(t) is t and relu_applied(t)
    t.add_(1)                                   # any in-place write invalidates the mark
    assert not relu_applied(t)
    assert not relu_applied(t.view(2, 2))       # another tensor object carries no mark
    with torch.inference_mode():                # no version counter: no mark, no error
        u = torch.randn(4)
        assert mark_relu_applied(u) is u and not relu_applied(u)


def test_block_converted_matches_and_relu_runs_only_after_the_add(monkeypatch):
    torch.manual_seed(0)
    original = Block().double()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert type(model.relu) is SkipAppliedReLU and model.relu.inplace
    assert model.conv1.fused_relu and not model.conv2.fused_relu
    assert "ReLU relu -> SkipAppliedReLU" in report.entry("conv1").detail
    calls = count_relu_calls(monkeypatch)
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    for mode in (True, False):
        original.train(mode), model.train(mode)
        xo, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo = original(xo)
        ym, n = relu_calls_in(calls, model, xm)
        assert n == 1  # the ReLU after the add; bn1's ran inside the fused op
        assert_close(ym, yo)
        g = torch.randn_like(yo)
        params_o, params_m = list(original.parameters()), list(model.parameters())
        grads_o = torch.autograd.grad(yo, [xo] + params_o, g)
        grads_m = torch.autograd.grad(ym, [xm] + params_m, g)
        for a, b in zip(grads_m, grads_o):
            assert_close(a, b)


def test_output_written_in_place_gets_the_relu_again(monkeypatch):
    torch.manual_seed(1)
    original = Block(write_in_place=True).double()
    model = cnnkern.convert(original, algo="im2col")
    assert type(model.relu) is SkipAppliedReLU and model.conv1.fused_relu
    calls = count_relu_calls(monkeypatch)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    for mode in (True, False):
        original.train(mode), model.train(mode)
        with torch.no_grad():
            y, n = relu_calls_in(calls, model, x)
            assert_close(y, original(x))
        assert n == 1 and (y >= 0).all() and (y == 0).any()  # the ReLU after sub_ did run


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_inference_mode_applies_the_relu_again(training):
    torch.manual_seed(2)
    original = Block().train(training)
    model = cnnkern.convert(original, algo="im2col")
    x = torch.randn(2, 6, 8, 8)
    with torch.inference_mode():
        assert_close(model(x), original(x))
