"""A module whose whole forward is conv -> BN -> a ReLU call (torchvision GoogLeNet's
BasicConv2d: `return F.relu(self.bn(self.conv(x)), inplace=True)`): convert fuses the ReLU
into the conv + BN and replaces the module's forward by a call of the fused layer
(cnnkern/_block_forward.py), so the ReLU no longer runs a second time in forward and backward.
The original model is the reference, in float64: same outputs, gradients and running
statistics; anything else around a ReLU call keeps it as it was.
"""

import copy
import io

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cnnkern
from cnnkern._block_forward import FusedBlockForward
from conftest import assert_close
from model_match import check_matches, run

RELUS = {
    "F.relu_inplace": lambda x: F.relu(x, inplace=True),
    "F.relu_positional": lambda x: F.relu(x, True),
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    ".relu_()": lambda x: x.relu_(),
}


class BasicConv(tnn.Module):
    """GoogLeNet's BasicConv2d, with the ReLU call picked by `relu`."""

    def __init__(self, cin, cout, relu="F.relu_inplace", **kwargs):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = tnn.BatchNorm2d(cout, eps=0.001)
        self.relu = relu

    def forward(self, x):
        return RELUS[self.relu](self.bn(self.conv(x)))


class Net(tnn.Module):
    """Two branches of BasicConv blocks concatenated (an inception module in small), a block
    whose forward does more than the chain, and a head."""

    def __init__(self, relu="F.relu_inplace"):
        super().__init__()
        self.stem = BasicConv(3, 6, relu, kernel_size=3, padding=1)
        self.a = BasicConv(6, 4, relu, kernel_size=1)
        self.b = tnn.Sequential(BasicConv(6, 4, relu, kernel_size=1),
                                BasicConv(4, 4, relu, kernel_size=3, padding=1))
        self.extra = PlusOne(8, 8)
        self.fc = tnn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.a(x), self.b(x)], 1)
        return self.fc(self.extra(x).mean((2, 3)))


class PlusOne(tnn.Module):
    """conv -> BN -> ReLU call, then more: the ReLU call must stay."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, 3, padding=1)
        self.bn = tnn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x))) + 1


BLOCKS = ["stem", "a", "b.0", "b.1"]


@pytest.mark.parametrize("relu", list(RELUS))
def test_block_relu_is_fused_and_the_model_matches(relu):
    torch.manual_seed(0)
    original = Net(relu).double()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    for name in BLOCKS:
        block = model.get_submodule(name)
        assert isinstance(block.forward, FusedBlockForward), name
        assert block.conv.fused_relu and type(block).__name__ == "BasicConv"
        entry = report.entry(f"{name}.conv")
        assert entry.kind == "conv_bn_relu" and "call after it is fused in" in entry.detail
        assert f"it ends {name}," in entry.detail
    # The block that does more keeps its ReLU call; only its conv + BN are fused.
    assert "forward" not in vars(model.extra) and not model.extra.conv.fused_relu
    assert "the F.relu call after it stays" in report.entry("extra.conv").detail
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    check_matches(model, original, x)


def test_fused_block_does_not_call_the_relu_again(monkeypatch):
    model = cnnkern.convert(Net(), algo="im2col")
    calls = []
    real = F.relu

    def counting(x, inplace=False):
        calls.append(tuple(x.shape))
        return real(x, inplace=inplace)
    monkeypatch.setattr(F, "relu", counting)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert calls == [(2, 8, 8, 8)]    # only PlusOne's, which stays


def test_model_that_is_the_block_itself():
    torch.manual_seed(1)
    original = BasicConv(3, 5, kernel_size=3, padding=1).double()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert isinstance(model.forward, FusedBlockForward) and model.conv.fused_relu
    assert "it ends <model>," in report.entry("conv").detail
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    out, gx, _ = run(model, x, True)
    ref, rx, _ = run(original, x, True)
    assert_close(out, ref)
    assert_close(gx, rx)
    assert (out >= 0).all() and (out == 0).any()


def test_copies_and_pickles_call_their_own_block():
    torch.manual_seed(2)
    model = cnnkern.convert(Net())
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    expected = model(x)
    for other in (copy.deepcopy(model), loaded):
        for name in BLOCKS:
            block = other.get_submodule(name)
            assert block.forward.block is block     # not the original's module
        other.eval()
        assert torch.equal(other(x), expected)
        with torch.no_grad():                       # a change to the copy shows in the copy only
            other.stem.bn.bias.add_(10.0)
        assert not torch.equal(other(x), expected)
        assert torch.equal(model(x), expected)


class NotAChain(tnn.Module):
    """Forwards that look like the chain but are not exactly it: each keeps its ReLU call."""

    def __init__(self, kind):
        super().__init__()
        self.conv, self.bn, self.kind = tnn.Conv2d(3, 4, 3), tnn.BatchNorm2d(4), kind

    def forward(self, x):
        y = self.bn(self.conv(x))
        if self.kind == "leaky":
            return F.leaky_relu(y)
        if self.kind == "clamped":
            return F.relu(y).clamp_max(1.0)
        return F.relu(y), x          # "tuple": the input is returned too


@pytest.mark.parametrize("kind", ["tuple", "leaky", "clamped"])
def test_forward_that_does_more_keeps_the_relu_call(kind):
    model = cnnkern.convert(NotAChain(kind))
    assert "forward" not in vars(model)
    assert not model.conv.fused_relu


def test_fused_block_compiles_without_graph_breaks():
    torch.manual_seed(3)
    model = cnnkern.convert(Net()).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), model(x))
