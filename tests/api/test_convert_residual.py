"""convert on torchvision's ResNets: each BasicBlock / Bottleneck's tail (`out += identity`,
ReLU) joins its last fused conv + BN (cnnkern/_block_forward.py, ResidualBlockForward).
References: the torch model itself in float64 (logits, input and parameter gradients,
running statistics), in training and eval; fuse_residual=False keeps the torch add + ReLU.
"""

import copy
import io

import pytest
import torch

import cnnkern
from cnnkern._block_forward import ResidualBlockForward
from model_match import check_matches, run

tv = pytest.importorskip("torchvision.models")


def blocks(model):
    return [(n, m) for n, m in model.named_modules()
            if type(m).__name__ in ("BasicBlock", "Bottleneck")]


@pytest.mark.parametrize("arch,n_blocks", [("resnet18", 8), ("resnet50", 16)])
def test_resnet_blocks_fuse_the_tail_and_match_torch(arch, n_blocks):
    torch.manual_seed(0)
    original = getattr(tv, arch)(num_classes=10).double()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    found = blocks(model)
    assert len(found) == n_blocks
    for name, block in found:
        assert isinstance(block.forward, ResidualBlockForward), name
        assert report.entry(name, "residual_add_relu").replaced
    assert len(report.names("residual_add_relu")) == n_blocks
    check_matches(model, original, torch.randn(2, 3, 40, 40, dtype=torch.float64))


def test_fused_tail_calls_the_op_and_no_separate_relu(monkeypatch):
    torch.manual_seed(1)
    model = cnnkern.convert(tv.resnet18(num_classes=4), algo="im2col")
    calls = []
    real = torch.ops.cnnkern.bn_add_relu_train

    class Ops:
        def __getattr__(self, name):
            return getattr(torch.ops.cnnkern, name)

        def bn_add_relu_train(self, *a):
            calls.append(tuple(a[0].shape))
            return real(*a)
    import cnnkern.functional as fn
    monkeypatch.setattr(fn, "_ops", Ops())
    model.train()(torch.randn(2, 3, 32, 32)).sum().backward()
    assert len(calls) == 8


def test_fuse_residual_false_keeps_the_torch_tail():
    torch.manual_seed(2)
    original = tv.resnet18(num_classes=5).double()
    model, report = cnnkern.convert(original, algo="im2col", report=True, fuse_residual=False)
    assert not any("forward" in vars(m) for _, m in blocks(model))
    assert report.names("residual_add_relu") == []
    check_matches(model, original, torch.randn(2, 3, 48, 48, dtype=torch.float64))


def test_fused_and_unfused_tail_give_the_same_bits_in_float32():
    torch.manual_seed(3)
    original = tv.resnet18(num_classes=5)
    a = cnnkern.convert(original, algo="im2col")
    b = cnnkern.convert(original, algo="im2col", fuse_residual=False)
    x = torch.randn(2, 3, 32, 32)
    out_a, gx_a, g_a = run(a, x, True)
    out_b, gx_b, g_b = run(b, x, True)
    assert torch.equal(out_a, out_b) and torch.equal(gx_a, gx_b)
    for k in g_a:
        assert torch.equal(g_a[k], g_b[k]), k


def test_subclass_with_its_own_forward_is_left_alone():
    class Scaled(tv.resnet.BasicBlock):
        def forward(self, x):
            return super().forward(x) * 0.5
    torch.manual_seed(4)
    original = tv.ResNet(Scaled, [1, 1, 1, 1], num_classes=3).double()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert report.names("residual_add_relu") == []
    check_matches(model, original, torch.randn(2, 3, 48, 48, dtype=torch.float64))


def test_converted_resnet_deep_copies_and_pickles():
    torch.manual_seed(5)
    model = cnnkern.convert(tv.resnet18(num_classes=3), algo="im2col")
    x = torch.randn(2, 3, 32, 32)
    want = model.eval()(x)
    twin = copy.deepcopy(model)
    assert twin.layer1[0].forward.block is twin.layer1[0]
    assert torch.equal(twin(x), want)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded.eval()(x), want)
