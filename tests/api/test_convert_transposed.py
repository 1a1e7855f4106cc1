"""cnnkern.convert on models with transposed convolutions: nn.ConvTranspose2d becomes
cnnkern.nn.ConvTranspose2d; segmentation models (the lecture's FCN-8s, torchvision's LR-ASPP)
give the original's outputs and gradients in eval and train mode; and the profile of a
converted model shows cnnkern's convolution ops only, forward and backward.

Gradients are judged as test_convert.py judges training: in float32 the converted model must
stay as close to the float64 original as the float32 original does (within F32_FACTOR); the
outputs are compared with assert_close's float32 tolerances.
"""

import copy

import pytest
import torch
import torch.nn as tnn

import cnnkern
import cnnkern.nn as cnn
from cnnkern import models
from conftest import assert_close
from test_convert import F32_FACTOR, assert_state_close, one_thread  # noqa: F401  (fixture)

torchvision = pytest.importorskip("torchvision")


class TinySeg(tnn.Module):
    """An encoder (Conv-BN-ReLU, max pool, Conv-BN + torch.relu) and a decoder of transposed
    convs: a grouped one called with output_size (the skip's full 4-D size), and a dilated one
    with output_padding."""

    def __init__(self, classes=3):
        super().__init__()
        self.enc1 = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8),
                                   tnn.ReLU(inplace=True))
        self.pool = tnn.MaxPool2d(2)
        self.enc2 = tnn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = tnn.BatchNorm2d(16)
        self.up1 = tnn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, groups=2)
        self.up2 = tnn.ConvTranspose2d(8, classes, 3, stride=2, padding=2, output_padding=1,
                                       dilation=2)

    def forward(self, x):
        skip = self.enc1(x)
        h = torch.relu(self.bn2(self.enc2(self.pool(skip))))
        h = self.up1(h, output_size=skip.shape)
        return self.up2(h + skip)                       # twice the input's size


def test_conv_transpose2d_is_replaced_sharing_its_parameters():
    original = TinySeg()
    params = dict(original.named_parameters())
    model, report = cnnkern.convert(original, algo="im2col", inplace=True, report=True)
    for name in ("up1", "up2"):
        layer = getattr(model, name)
        assert type(layer) is cnn.ConvTranspose2d and layer.algo == "im2col"
        assert layer.weight is params[f"{name}.weight"] and layer.bias is params[f"{name}.bias"]
        entry = report.entry(name)
        assert (entry.kind, entry.replaced) == ("conv_transpose2d", True)
        assert entry.detail == "cnnkern.nn.ConvTranspose2d(algo='im2col')"
    assert str(report).startswith("cnnkern.convert: replaced 1 conv_bn, 1 conv_bn_relu, "
                                  "2 conv_transpose2d, 1 max_pool2d; 0 not replaced")
    assert list(model.state_dict()) == list(TinySeg().state_dict())
    TinySeg().load_state_dict(model.state_dict())        # strict: the original keys

    reference = TinySeg()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    for mode in (False, True):
        model.train(mode), reference.train(mode)
        out = model(x)
        assert out.shape == (2, 3, 32, 32)
        assert_close(out, reference(x))


def test_algo_that_cannot_run_a_transposed_conv_falls_back_with_a_warning():
    # winograd runs 3x3 stride-1 convs: up1 and up2 (stride 2) get "auto", the encoder keeps it.
    with pytest.warns(UserWarning, match=r"algo 'winograd' cannot run 2 layer\(s\) \(up1, up2\)"):
        model, report = cnnkern.convert(TinySeg(), algo="winograd", report=True)
    assert model.up1.algo == "auto" and model.enc2.algo == "winograd"
    assert ("winograd needs a 3x3 kernel with stride 1 and dilation 1; got 3x3 kernel, stride 2, "
            "dilation 2, so it runs 'auto'") in report.entry("up2").detail


def _outputs_and_grads(model, x, key):
    """The output and the gradients of a fixed random projection of it, with respect to the
    input and every parameter (in named_parameters order)."""
    x = x.to(next(model.parameters()).dtype).requires_grad_()
    torch.manual_seed(0)              # the same dropout masks in every model and dtype
    out = model(x)
    out = out[key] if key else out
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return out, torch.autograd.grad(out, [x] + list(model.parameters()), g)


def _error(grads, reference):
    """The largest gradient error over all tensors, relative to the largest reference gradient
    (a tensor whose exact gradient is ~0, such as a conv bias ahead of a train-mode BN, has
    no relative error of its own to speak of)."""
    scale = max(float(r.abs().max()) for r in reference)
    return max(float((g.double() - r).abs().max()) for g, r in zip(grads, reference)) / scale


def assert_converts_like_the_original(original, x, algo="im2col", key=None):
    """Eval, then train mode: float32 outputs within float32 tolerances of the original's,
    gradients as close to the float64 original's as the float32 original's (x F32_FACTOR),
    and the same running statistics after the train-mode pass."""
    original64 = copy.deepcopy(original).double()
    model = cnnkern.convert(original, algo=algo)
    for mode in (False, True):
        for m in (original, original64, model):
            m.train(mode)
        out, grads = _outputs_and_grads(model, x, key)
        torch_out, torch_grads = _outputs_and_grads(original, x, key)
        _, grads64 = _outputs_and_grads(original64, x, key)
        assert_close(out, torch_out)
        ours, theirs = _error(grads, grads64), _error(torch_grads, grads64)
        assert ours <= F32_FACTOR * theirs + 1e-6, (mode, ours, theirs)
    assert_state_close(model.state_dict(), original.state_dict(), rtol=1e-5, atol=1e-6)
    return model


def test_lecture_fcn8s_converts_like_the_original():
    original = models.fcn_vgg16(num_classes=5, fc_channels=32, backend="torch")
    model = assert_converts_like_the_original(original, torch.randn(1, 3, 64, 64))
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        assert type(getattr(model, name)) is cnn.ConvTranspose2d, name
    assert not any(type(m) in (tnn.Conv2d, tnn.ConvTranspose2d, tnn.MaxPool2d)
                   for m in model.modules())


def test_torchvision_lraspp_converts_like_the_original():
    seg = torchvision.models.segmentation
    original = seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    model = assert_converts_like_the_original(original, torch.randn(2, 3, 64, 64), key="out")
    assert not any(type(m) in (tnn.Conv2d, tnn.AdaptiveAvgPool2d) for m in model.modules())


# Torch's convolution entry points on the CPU; any op with "mkldnn" in its name counts too.
TORCH_CONV_OPS = {"aten::convolution", "aten::_convolution", "aten::conv2d",
                  "aten::conv_transpose2d", "aten::convolution_backward",
                  "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
                  "aten::slow_conv_transpose2d", "aten::slow_conv_dilated2d"}


def _profiled_ops(model, x):
    """The op names the profiler records over a train-mode forward + backward and an
    eval-mode forward."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model.train()
        model(x).square().mean().backward()
        model.eval()
        model(x)
    return {e.name for e in prof.events()}


def _torch_conv_ops(names):
    return sorted(n for n in names if n in TORCH_CONV_OPS or "mkldnn" in n.lower()
                  or n.startswith("aten::") and "conv" in n)


def test_profile_of_a_converted_model_has_cnnkern_convolutions_only():
    original = TinySeg()
    x = torch.randn(2, 3, 16, 16)
    # The check sees torch's convolutions where they run...
    assert {"aten::convolution", "aten::conv_transpose2d",
            "aten::convolution_backward"} <= set(_torch_conv_ops(_profiled_ops(original, x)))
    # ...and there are none left in the converted model, forward or backward.
    names = _profiled_ops(cnnkern.convert(original), x)
    assert _torch_conv_ops(names) == []
    assert {"cnnkern::conv2d_backward_input", "cnnkern::conv2d", "cnnkern::conv2d_relu",
            "cnnkern::conv2d_backward_weight", "cnnkern::bn_relu_train",
            "cnnkern::bn_relu_backward", "cnnkern::max_pool2d_with_indices",
            "cnnkern::max_pool2d_backward"} <= names, sorted(n for n in names if "cnnkern" in n)
