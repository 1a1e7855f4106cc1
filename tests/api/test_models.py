"""cnnkern.models.lenet5 against a plain-torch twin."""

import copy

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cnnkern
import cnnkern.nn as cnn
from conftest import OpRecorder, assert_close


class TorchLeNet5(tnn.Module):
    """LeNet-5 (LeCun et al. 1998) in plain torch: C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84,
    output 10, on 32x32 input. 61,706 parameters."""

    def __init__(self):
        super().__init__()
        self.c1 = tnn.Conv2d(1, 6, 5)
        self.c3 = tnn.Conv2d(6, 16, 5)
        self.c5 = tnn.Conv2d(16, 120, 5)
        self.f6 = tnn.Linear(120, 84)
        self.out = tnn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = torch.flatten(F.relu(self.c5(x)), 1)
        return self.out(F.relu(self.f6(x)))


LENET5_PARAMS = 156 + 2416 + 48120 + 10164 + 850  # = 61,706


def to_torch(module):
    """A copy of `module` with every cnnkern.nn layer replaced by its torch.nn twin."""
    m = module
    if isinstance(m, cnn.Conv2d):
        t = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                       m.dilation, m.groups, m.bias is not None, m.padding_mode,
                       dtype=m.weight.dtype)
        t.load_state_dict(m.state_dict())
        return t
    if isinstance(m, cnn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices,
                             m.ceil_mode)
    if isinstance(m, cnn.AvgPool2d):
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                             m.divisor_override)
    if isinstance(m, cnn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(m.output_size)
    for name, child in list(m.named_children()):
        setattr(m, name, to_torch(child))
    return m


@pytest.fixture
def lenet():
    return cnnkern.models.lenet5().eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_lenet5_output_shape_32x32(lenet, batch):
    out = lenet(torch.randn(batch, 1, 32, 32))
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()


def test_lenet5_default_model_takes_28x28():
    # Spec: lenet5() takes (N,1,32,32) and 28x28 input, 10 outputs.
    out = cnnkern.models.lenet5().eval()(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def _lenet_for(hw):
    """lenet5() takes 32x32 and 28x28 input alike (28x28 is padded to 32x32)."""
    return cnnkern.models.lenet5().eval()


def test_lenet5_parameter_count_matches_reference(lenet):
    ref = TorchLeNet5()
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ref == LENET5_PARAMS == 61706
    assert sum(p.numel() for p in lenet.parameters()) == n_ref
    assert sorted(p.numel() for p in lenet.parameters()) == sorted(p.numel() for p in ref.parameters())


def test_lenet5_reference_twin_forward_shape():
    # The plain-torch reference itself: 32x32 -> 10 logits.
    assert TorchLeNet5()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_lenet5_is_built_from_cnnkern_layers(lenet):
    kinds = {type(m) for m in lenet.modules()}
    assert cnn.Conv2d in kinds
    assert sum(isinstance(m, cnn.Conv2d) for m in lenet.modules()) >= 2
    with OpRecorder() as rec:
        lenet(torch.randn(2, 1, 32, 32))
    assert rec.names.count("cnnkern::conv2d") >= 2
    assert any(n.startswith("cnnkern::") and "pool" in n for n in rec.names), rec.names
    assert not [n for n in rec.names if n.startswith("aten::") and ("conv" in n or "pool" in n)]


@pytest.mark.parametrize("hw", [32, 28])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_lenet5_matches_torch_twin_forward_and_backward(hw, dtype):
    model = _lenet_for(hw).to(dtype)
    twin = to_torch(copy.deepcopy(model))
    x = torch.randn(4, 1, hw, hw, dtype=dtype)
    with OpRecorder() as rec:
        twin(x)
    assert not [n for n in rec.names if n.startswith("cnnkern::")], (
        "the torch twin still runs cnnkern ops (lenet5 calls cnnkern functions directly?): "
        f"{rec.names}")
    xm, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, out_t = model(xm), twin(xt)
    assert_close(out, out_t)
    target = torch.tensor([0, 3, 7, 9])
    F.cross_entropy(out, target).backward()
    F.cross_entropy(out_t, target).backward()
    assert_close(xm.grad, xt.grad)
    named_twin = dict(twin.named_parameters())
    assert named_twin.keys() == dict(model.named_parameters()).keys()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert_close(p.grad, named_twin[name].grad, msg=lambda m, n=name: f"{n}: {m}")


def test_lenet5_state_dict_round_trip(lenet):
    other = cnnkern.models.lenet5().eval()
    other.load_state_dict(lenet.state_dict())
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(other(x), lenet(x))


def test_lenet5_trains_a_step():
    torch.manual_seed(0)
    model = cnnkern.models.lenet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(16, 1, 32, 32)
    y = torch.randint(0, 10, (16,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
