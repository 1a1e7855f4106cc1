"""cnnkern.convert: whole models with cnnkern layers and fused Conv-BN(-ReLU), against the original.

The original model (torch's conv, BN, ReLU, pooling) is the reference: the converted copy must
give the same outputs in eval and train mode, the same running buffers and losses over a few
optimiser steps, and the same state_dict keys both ways.

Training is compared in float64 (cnnkern's CPU kernels take it), where any difference in the
BN semantics (momentum, biased/unbiased variance, num_batches_tracked) shows far above
rounding; in float32, train-mode BN and SGD amplify rounding step after step, so there the
converted model must stay as close to a float64 run as the float32 original does (within a
factor; flash-attention's rule). algo="im2col" keeps single outputs at float32 rounding level
(Winograd F(4x4) adds ~1e-5 relative); the torchvision VGG test runs "auto".
"""

import copy
import warnings

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import cnnkern
import cnnkern.nn as cnn
from cnnkern import nn as _fused_modules  # the fused modules and the fused op they call
from cnnkern.nn import FusedAwayBatchNorm2d, FusedConvBatchNorm2d
from cnnkern._relu_mark import SkipAppliedReLU
from cnnkern.tools.check import set_algo
from cnnkern.conversion import ConvertReport
from conftest import assert_close, assert_exact

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run whole models of small layers, where a second OpenMP thread costs more
    than it brings, and on a busy 2-core machine far more (SmallResNet's training test: 0.3 s
    at one thread, 11 s at two while other jobs ran). Results do not depend on the thread
    count (tests/reliability/test_reliability.py checks that), so one thread tests the same
    thing."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# float64 training: rounding (1e-16) amplified by train-mode BN over a few SGD steps stays far
# below this; a wrong momentum, variance or gradient is off at the percent level.
F64_RTOL, F64_ATOL = 1e-8, 1e-10
# float32: the converted model's distance to the float64 run, at most this many times the
# float32 original's (plus a floor for when torch's own happens to be tiny).
F32_FACTOR = 10


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

class BasicBlock(tnn.Module):
    """torchvision's BasicBlock: `self.relu` (inplace) runs after bn1 and after the residual add."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                             tnn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(tnn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 8, 5, 2, 2, bias=False)
        self.bn1 = tnn.BatchNorm2d(8)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def small_vgg_bn(classes=10):
    """VGG-with-BN layout: Sequential of Conv, BN, ReLU(inplace), pools; then a classifier."""
    features = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(inplace=True),
        tnn.MaxPool2d(2, 2),
        tnn.Conv2d(8, 16, 3, padding=1), tnn.BatchNorm2d(16), tnn.ReLU(inplace=True),
        tnn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        tnn.Conv2d(16, 16, 3, padding=1), tnn.BatchNorm2d(16), tnn.ReLU(),
    )
    return tnn.Sequential(features, tnn.AdaptiveAvgPool2d(2), tnn.Flatten(),
                          tnn.Linear(64, classes))


class Functional(tnn.Module):
    """Chains whose ReLU is a function, and BNs with the settings nn.BatchNorm2d.forward handles."""

    def __init__(self, classes=10):
        super().__init__()
        self.c1 = tnn.Conv2d(3, 6, 3, padding=1)
        self.b1 = tnn.BatchNorm2d(6, momentum=None)                    # cumulative average
        self.c2 = tnn.Conv2d(6, 6, 3, padding="same", padding_mode="reflect", groups=2)
        self.b2 = tnn.BatchNorm2d(6, track_running_stats=False)        # batch stats always
        self.c3 = tnn.Conv2d(6, 8, 2, stride=2, padding="valid", bias=False)
        self.b3 = tnn.BatchNorm2d(8, affine=False, eps=1e-3, momentum=0.3)
        self.c4 = tnn.Conv2d(8, 8, 4, padding="same", dilation=1)   # odd total padding
        self.b4 = tnn.BatchNorm2d(8)
        self.fc = tnn.Linear(8, classes)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)), inplace=True)
        x = torch.relu(self.b2(self.c2(x)))
        x = self.b3(self.c3(x)).relu_()
        x = self.b4(self.c4(x))                                       # no ReLU
        return self.fc(x.mean((2, 3)))


class DataDependent(tnn.Module):
    """fx cannot trace a branch on a tensor's value."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


class Untraceable(tnn.Module):
    """Untraceable at the top and in one Sequential; a traceable block below them."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8),
                                   tnn.ReLU(), DataDependent(),
                                   tnn.Conv2d(8, 8, 3, padding=1), tnn.BatchNorm2d(8))
        self.block = BasicBlock(8, 8)
        self.head = tnn.Linear(8, classes)

    def forward(self, x):
        x = self.stem(x)
        if x.mean() > -100:          # data-dependent: always true here, but fx cannot know
            x = self.block(x)
        return self.head(x.mean((2, 3)))


class OutputUsedTwice(tnn.Module):
    """c1's output feeds the BN and a skip connection: fusing would lose the skip's input."""

    def __init__(self, classes=10):
        super().__init__()
        self.c1 = tnn.Conv2d(3, 8, 3, padding=1)
        self.b1 = tnn.BatchNorm2d(8)
        self.c2 = tnn.Conv2d(8, 8, 3, padding=1)
        self.b2 = tnn.BatchNorm2d(8)
        self.act = tnn.ReLU()
        self.fc = tnn.Linear(8, classes)

    def forward(self, x):
        y = self.c1(x)
        x = F.relu(self.b1(y)) + y
        x = self.act(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


class ModeDependent(tnn.Module):
    """The BN runs only in training: a chain in one mode only must not be fused."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = tnn.Conv2d(3, 8, 3, padding=1)
        self.bn = tnn.BatchNorm2d(8)
        self.fc = tnn.Linear(8, classes)

    def forward(self, x):
        x = self.conv(x)
        if self.training:
            x = self.bn(x)
        return self.fc(F.relu(x).mean((2, 3)))


def vgg11_bn_small(classes=10):
    """torchvision's vgg11_bn with a small classifier (its 4096-wide one is 100M weights)."""
    model = torchvision.models.vgg11_bn(num_classes=classes)
    model.avgpool = tnn.AdaptiveAvgPool2d(1)
    model.classifier = tnn.Linear(512, classes)
    return model


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state_close(actual, expected, rtol=F64_RTOL, atol=F64_ATOL):
    assert list(actual.keys()) == list(expected.keys())
    for k in expected:
        if expected[k].is_floating_point():
            torch.testing.assert_close(actual[k], expected[k], rtol=rtol, atol=atol, msg=k)
        else:
            assert torch.equal(actual[k], expected[k]), k   # num_batches_tracked


def train(models, steps, shape, classes=10, lr=0.05):
    """The same SGD-with-momentum steps (same batches, cast to each model's dtype) on each model.

    Returns each model's losses.
    """
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(*shape, generator=gen), torch.randint(classes, (shape[0],),
                                                                 generator=gen))
               for _ in range(steps)]
    losses = []
    for model in models:
        dtype = next(model.parameters()).dtype
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        losses.append([])
        for x, y in batches:
            opt.zero_grad()
            loss = F.cross_entropy(model(x.to(dtype)), y)
            loss.backward()
            opt.step()
            losses[-1].append(loss.item())
    return losses


def trains_like_in_float64(make, algo, steps, shape, factor=F32_FACTOR):
    """Trains make()'s model and its conversion in float64 (must agree to rounding) and in
    float32 (must stay within `factor` x the float32 original's distance to float64)."""
    original64 = make().double()
    model64 = cnnkern.convert(original64, algo=algo)
    original32 = make()
    original32.load_state_dict(original64.state_dict())
    model32 = cnnkern.convert(original32, algo=algo)

    ref, ours = train([original64, model64], steps, shape)
    torch.testing.assert_close(ours, ref, rtol=F64_RTOL, atol=0)
    assert_state_close(model64.state_dict(), original64.state_dict())

    torch32, ours32 = train([original32, model32], steps, shape)
    loss_err = max(abs(a - b) for a, b in zip(ours32, ref))
    torch_loss_err = max(abs(a - b) for a, b in zip(torch32, ref))
    assert loss_err <= factor * torch_loss_err + 1e-6, (loss_err, torch_loss_err)
    ref_state = original64.state_dict()

    def distance(state):      # relative L2 over all floating-point entries
        keys = [k for k, v in ref_state.items() if v.is_floating_point()]
        num = sum(float((state[k].double() - ref_state[k]).square().sum()) for k in keys)
        return (num / sum(float(ref_state[k].square().sum()) for k in keys)) ** 0.5

    ours_d, torch_d = distance(model32.state_dict()), distance(original32.state_dict())
    assert ours_d <= factor * torch_d + 1e-7, (ours_d, torch_d)
    for k, v in ref_state.items():
        if not v.is_floating_point():
            assert torch.equal(model32.state_dict()[k], v), k
    return original64, model64


def kinds(report, kind):
    return sorted(report.names(kind))


# ---------------------------------------------------------------------------------------------
# torchvision models
# ---------------------------------------------------------------------------------------------

def test_resnet18_report_outputs_and_keys():
    original = torchvision.models.resnet18(num_classes=10)
    before = snapshot(original)
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert isinstance(report, ConvertReport) and type(model) is type(original)

    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert kinds(report, "conv_bn_relu") == sorted(["conv1"] + [b + ".conv1" for b in blocks])
    assert kinds(report, "conv_bn") == sorted(
        [b + ".conv2" for b in blocks] + [f"layer{i}.0.downsample.0" for i in (2, 3, 4)])
    assert report.names("max_pool2d") == ["maxpool"]
    assert report.names("adaptive_avg_pool2d") == ["avgpool"]
    assert report.skipped == [] and report.analysis == {"": "torch.fx"}
    # The stem's ReLU is used once: fused and removed. A block's is applied again after the
    # add: it is fused into conv1 too, and stays as SkipAppliedReLU for the add.
    assert isinstance(model.relu, tnn.Identity) and model.conv1.fused_relu
    assert type(model.layer1[0].relu) is SkipAppliedReLU and model.layer1[0].relu.inplace
    assert ("the ReLU module is called 2 times: it stays as SkipAppliedReLU"
            in report.entry("layer1.0.conv1").detail)
    assert type(model.layer1[0].conv1) is FusedConvBatchNorm2d
    assert model.layer1[0].conv1.fused_relu and not model.layer1[0].conv2.fused_relu
    assert type(model.layer1[0].bn1) is FusedAwayBatchNorm2d
    assert model.layer1[0].conv1.bn is model.layer1[0].bn1
    assert all(type(m) is not tnn.Conv2d for m in model.modules())

    # Keys both ways; the original is untouched.
    assert list(model.state_dict()) == list(before)
    fresh = torchvision.models.resnet18(num_classes=10)
    fresh.load_state_dict(model.state_dict())            # strict
    assert_state_close(snapshot(original), before, 0, 0)
    assert not any(type(m).__module__.startswith("cnnkern") for m in original.modules())

    x = torch.randn(2, 3, 64, 64)
    for mode in (False, True):
        original.train(mode), model.train(mode)
        assert_close(model(x), original(x))
    assert_state_close(model.state_dict(), original.state_dict(), rtol=1e-5, atol=1e-6)

    # Training the converted copy leaves the original's parameters and buffers alone.
    before = snapshot(original)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    opt.step()
    assert_state_close(snapshot(original), before, 0, 0)
    assert not torch.equal(model.conv1.weight, original.conv1.weight)


def resnet18_small():
    """torchvision's resnet18, first two stages (the last two are most of its 11M weights)."""
    model = torchvision.models.resnet18(num_classes=10)
    model.layer3, model.layer4, model.fc = tnn.Identity(), tnn.Identity(), tnn.Linear(128, 10)
    return model


def test_resnet18_trains_like_the_original():
    original, model = trains_like_in_float64(resnet18_small, "im2col", steps=3,
                                             shape=(4, 3, 16, 16))
    assert int(model.bn1.num_batches_tracked) == 3
    original.eval(), model.eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert_close(model(x), original(x))


def test_vgg11_bn_trains_like_the_original_with_auto():
    model, report = cnnkern.convert(vgg11_bn_small(), report=True)       # algo="auto"
    assert kinds(report, "conv_bn_relu") == sorted(f"features.{i}" for i in
                                                   (0, 4, 8, 11, 15, 18, 22, 25))
    assert len(report.names("max_pool2d")) == 5 and report.skipped == []
    assert all(isinstance(model.features[i + 2], tnn.Identity) for i in (0, 4, 8, 11))
    # auto may run Winograd F(4x4) (single-conv float32 error 5-10x torch's); over a training
    # step the error is dominated by BN and SGD, and stays at torch's (0.5x measured).
    trains_like_in_float64(vgg11_bn_small, "auto", steps=2, shape=(2, 3, 32, 32))


def test_vgg16_bn_eval_and_train_outputs():
    original = torchvision.models.vgg16_bn(num_classes=10)
    original.avgpool, original.classifier = tnn.AdaptiveAvgPool2d(1), tnn.Linear(512, 10)
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert len(report.names("conv_bn_relu")) == 13 and report.skipped == []
    x = torch.randn(2, 3, 64, 64)
    for mode in (False, True):
        original.train(mode), model.train(mode)
        assert_close(model(x), original(x))
    assert_state_close(model.state_dict(), original.state_dict(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Hand-written models
# ---------------------------------------------------------------------------------------------

MODELS = {
    "resnet": (SmallResNet, dict(conv_bn_relu=["conv1", "layer1.conv1", "layer2.conv1"],
                                  conv_bn=["layer1.conv2", "layer2.conv2",
                                           "layer2.downsample.0"])),
    "vgg_bn": (small_vgg_bn, dict(conv_bn_relu=["0.0", "0.4", "0.8"], conv_bn=[])),
    "functional": (Functional, dict(conv_bn_relu=[], conv_bn=["c1", "c2", "c3", "c4"])),
    "untraceable": (Untraceable, dict(conv_bn_relu=["stem.0", "block.conv1"],
                                      conv_bn=["block.conv2", "stem.4"])),
    "used_twice": (OutputUsedTwice, dict(conv_bn_relu=["c2"], conv_bn=[])),
}


# Functional's "same" padding with an even kernel makes torch's own conv warn.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", list(MODELS))
def test_small_models_match_in_eval_and_train(name):
    make, expected = MODELS[name]
    original = make()
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    for kind, names in expected.items():
        assert kinds(report, kind) == sorted(names), (kind, str(report))
    assert not any(type(m) in (tnn.Conv2d, tnn.MaxPool2d, tnn.AvgPool2d, tnn.AdaptiveAvgPool2d)
                   for m in model.modules())
    x = torch.randn(3, 3, 16, 16)
    for mode in (False, True, False):                  # eval, train, back to eval
        original.train(mode), model.train(mode)
        assert_close(model(x), original(x))
    assert_state_close(model.state_dict(), original.state_dict(), rtol=1e-5, atol=1e-6)
    clone = make()
    clone.load_state_dict(model.state_dict())          # strict: the keys are the original's
    model.load_state_dict(original.state_dict())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", list(MODELS))
def test_small_models_train_like_the_original(name):
    original, model = trains_like_in_float64(MODELS[name][0], "im2col", steps=3,
                                             shape=(4, 3, 16, 16))
    original.eval(), model.eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert_close(model(x), original(x))


def test_functional_model_bn_settings_are_honoured():
    model = cnnkern.convert(Functional(), algo="im2col")
    model(torch.randn(2, 3, 8, 8))
    model(torch.randn(2, 3, 8, 8))
    assert int(model.b1.num_batches_tracked) == 2 and model.b1.momentum is None
    assert model.b2.running_mean is None and model.b2.num_batches_tracked is None
    assert model.b3.weight is None and int(model.b3.num_batches_tracked) == 2
    # A functional ReLU is code that stays: only conv + BN are fused.
    details = [e.detail for e in cnnkern.convert(Functional(), report=True)[1].fused]
    assert "the F.relu call after it stays" in details[0]
    assert "the torch.relu call after it stays" in details[1]
    assert "the .relu_() call after it stays" in details[2]


def test_untraceable_model_is_analysed_per_part():
    model, report = cnnkern.convert(Untraceable(), report=True)
    assert report.analysis[""].startswith("untraceable (")
    assert report.analysis["stem"].startswith("untraceable (")
    assert report.analysis["stem"].endswith("nn.Sequential scan of its children")
    assert report.analysis["block"] == "torch.fx"
    # In the scanned Sequential the ReLU module is removed; BN 4 has no ReLU after it.
    assert isinstance(model.stem[2], tnn.Identity) and type(model.stem[3]) is DataDependent
    assert str(report).splitlines()[0].startswith("cnnkern.convert: replaced ")


def test_conv_output_used_twice_is_not_fused_but_converted():
    model, report = cnnkern.convert(OutputUsedTwice(), report=True)
    entry = report.entry("c1", "conv_bn")
    assert not entry.replaced and entry.bn == "b1"
    assert "output is used 2 times" in entry.detail
    assert type(model.c1) is cnn.Conv2d and type(model.b1) is tnn.BatchNorm2d
    assert report.entry("c1", "conv2d").replaced
    # The ReLU after the fused c2 chain is used once: it is removed.
    assert isinstance(model.act, tnn.Identity)


def test_chain_present_in_one_mode_only_is_not_fused():
    original = ModeDependent()
    model, report = cnnkern.convert(original, report=True)
    assert "differs between train and eval" in report.entry("conv", "conv_bn").detail
    assert type(model.conv) is cnn.Conv2d and type(model.bn) is tnn.BatchNorm2d
    x = torch.randn(2, 3, 8, 8)
    for mode in (True, False):
        original.train(mode), model.train(mode)
        assert_close(model(x), original(x))


class Aliased(tnn.Module):
    """`self.same` is `self.conv` under a second name; `self.twice` is called twice."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4)
        self.same = self.conv
        self.twice, self.bn2 = tnn.Conv2d(4, 4, 3, padding=1), tnn.BatchNorm2d(4)
        self.hooked, self.bn3 = tnn.Conv2d(4, 4, 3, padding=1), tnn.BatchNorm2d(4)
        self.hooked.register_forward_hook(lambda m, i, o: None)

    def forward(self, x):
        x = self.bn(self.conv(x))
        x = self.bn2(self.twice(self.twice(x)))
        return self.bn3(self.hooked(x))


def test_shared_or_hooked_modules_are_reported():
    original = Aliased()
    model, report = cnnkern.convert(original, report=True)
    assert "registered under several names (conv, same)" in report.entry("conv", "conv_bn").detail
    assert "the conv is called 2 times" in report.entry("twice", "conv_bn").detail
    assert "the conv has hooks (forward_hooks)" in report.entry("hooked", "conv_bn").detail
    assert "hooks (forward_hooks) that a swap would drop" in report.entry("hooked", "conv2d").detail
    assert type(model.hooked) is tnn.Conv2d
    # An alias is swapped at every name it has, so the two names stay one module.
    assert model.conv is model.same and type(model.conv) is cnn.Conv2d
    assert list(model.state_dict()) == list(original.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert_close(model(x), original(x))


def test_bn_subclass_and_conv_subclass_are_left_alone():
    class MyConv(tnn.Conv2d):
        pass

    class MyBN(tnn.BatchNorm2d):
        pass

    model = tnn.Sequential(MyConv(3, 4, 3), tnn.BatchNorm2d(4), tnn.Conv2d(4, 4, 3), MyBN(4),
                           tnn.Conv2d(4, 4, 3), tnn.SyncBatchNorm(4))
    converted, report = cnnkern.convert(model, report=True)
    assert "subclass of nn.Conv2d" in report.entry("0", "conv2d").detail
    assert "subclass of nn.BatchNorm2d" in report.entry("2", "conv_bn").detail
    assert "SyncBatchNorm, not nn.BatchNorm2d" in report.entry("4", "conv_bn").detail
    assert [type(m) for m in converted] == [MyConv, tnn.BatchNorm2d, cnn.Conv2d, MyBN,
                                            cnn.Conv2d, tnn.SyncBatchNorm]


# ---------------------------------------------------------------------------------------------
# Options: algo, fuse, inplace, report
# ---------------------------------------------------------------------------------------------

def test_algo_reaches_every_layer_and_the_fused_op(monkeypatch):
    seen = []
    real = _fused_modules._conv_bn_relu

    def recording(*args, **kwargs):
        seen.append(kwargs["algo"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_fused_modules, "_conv_bn_relu", recording)
    model = cnnkern.convert(SmallResNet(), algo="direct")
    assert {m.algo for m in model.modules() if isinstance(m, cnn.Conv2d)} == {"direct"}
    seen.clear()                       # convert may have tried the op once (copy_output)
    model(torch.randn(2, 3, 16, 16))
    assert seen == ["direct"] * 6


def test_algo_that_cannot_run_a_layer_falls_back_with_a_warning():
    with pytest.warns(UserWarning, match="algo 'winograd' cannot run 3 layer"):
        model, report = cnnkern.convert(SmallResNet(), algo="winograd", report=True)
    assert model.layer1.conv1.algo == "winograd"                        # 3x3 stride 1
    assert model.conv1.algo == "auto" and model.layer2.downsample[0].algo == "auto"
    assert ("cannot run this problem on CPU: winograd needs a 3x3 kernel with stride 1 and "
            "dilation 1; got 5x5 kernel, stride 2" in report.entry("conv1").detail)
    assert report.entry("conv1").detail.endswith("so it runs 'auto'")


def test_fuse_false_swaps_layers_only():
    original = SmallResNet()
    model, report = cnnkern.convert(original, fuse=False, report=True)
    assert report.fused == [] and report.analysis == {}
    assert len(report.names("conv2d")) == 6
    assert all(type(m) is tnn.BatchNorm2d for m in model.modules() if isinstance(m, tnn.BatchNorm2d))
    x = torch.randn(2, 3, 16, 16)
    assert_close(model(x), original(x))


def test_inplace_keeps_parameter_objects_so_an_existing_optimiser_trains_it():
    model = small_vgg_bn().double()
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    converted = cnnkern.convert(model, algo="im2col", inplace=True)
    assert converted is model and type(model[0][0]) is FusedConvBatchNorm2d
    assert all(a is b for a, b in zip(model.parameters(), params))
    for m, o in ((model, opt), (reference, ref_opt)):
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    assert_state_close(model.state_dict(), reference.state_dict())


def test_model_that_is_a_single_layer():
    conv = tnn.Conv2d(3, 4, 3)
    converted, report = cnnkern.convert(conv, algo="im2col", report=True)
    assert type(converted) is cnn.Conv2d and converted.algo == "im2col"
    assert report.names() == [""] and "<model>" in str(report)
    x = torch.randn(1, 3, 6, 6)
    assert_close(converted(x), conv(x))
    assert type(cnnkern.convert(tnn.MaxPool2d(2))) is cnn.MaxPool2d


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_models_are_converted_and_keep_torch_accuracy(dtype):
    # The CPU kernels take float16/bfloat16 (computed in float32, rounded once per op).
    original = small_vgg_bn().eval()
    with torch.no_grad():
        for m in original.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model, report = cnnkern.convert(copy.deepcopy(original).to(dtype), report=True)
    assert "0.0" in report.names("conv_bn_relu") and "0.3" in report.names("max_pool2d")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ours = model(x.to(dtype))
        theirs = copy.deepcopy(original).to(dtype)(x.to(dtype))
        ref64 = copy.deepcopy(original).double()(x.to(dtype).double())
    assert ours.dtype == dtype
    err = (ours.double() - ref64).abs().max().item()
    torch_err = (theirs.double() - ref64).abs().max().item()
    assert err <= 3 * torch_err + torch.finfo(dtype).eps * ref64.abs().max().item(), \
        (err, torch_err)


def test_dtypes_without_cnnkern_kernels_are_left_alone():
    original = tnn.Sequential(tnn.Conv2d(3, 4, 3), tnn.Conv2d(4, 2, 1)).to(torch.complex64)
    model, report = cnnkern.convert(original, report=True)
    assert report.replaced == []
    assert ("its weight has dtype complex64; cnnkern's cpu kernels take float32, float64, "
            "float16, bfloat16" in report.entry("0", "conv2d").detail)
    assert "complex64" in report.entry("1", "conv2d").detail
    x = torch.randn(2, 3, 16, 16, dtype=torch.complex64)
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)


def test_converting_twice_changes_nothing_more():
    model = cnnkern.convert(SmallResNet())
    again, report = cnnkern.convert(model, report=True)
    assert report.replaced == []
    assert all("already" in e.detail for e in report.skipped if e.kind == "conv2d")


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="model must be an nn.Module; got int"):
        cnnkern.convert(3)
    with pytest.raises(TypeError, match="algo must be a string; got 3"):
        cnnkern.convert(tnn.Conv2d(1, 1, 1), algo=3)


def test_pooling_layers_keep_every_argument():
    layers = [tnn.MaxPool2d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True),
              tnn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=5),
              tnn.AdaptiveAvgPool2d((None, 3))]
    x = torch.randn(2, 3, 11, 10)
    for layer in layers:
        new = cnnkern.convert(layer)
        assert type(new).__module__ == "cnnkern.nn"
        assert new.extra_repr() == layer.extra_repr()
        for a, b in zip(torch.utils._pytree.tree_leaves(new(x)),
                        torch.utils._pytree.tree_leaves(layer(x))):
            assert_close(a, b) if a.is_floating_point() else assert_exact(a, b)  # indices


# ---------------------------------------------------------------------------------------------
# The fused modules stay coherent with their BN
# ---------------------------------------------------------------------------------------------

def test_fused_conv_sees_loaded_and_moved_bn_state():
    original = SmallResNet().eval()
    model = cnnkern.convert(original, algo="im2col").eval()
    for m in original.modules():                # non-trivial running stats, loaded afterwards
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.normal_()
    model.load_state_dict(original.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert_close(model(x), original(x))
    # .double() replaces the buffers' tensors: the fused conv reads them through the BN module.
    model.double(), original.double()
    assert model.bn1.running_mean.dtype == torch.float64
    assert_close(model(x.double()), original(x.double()))


def test_deepcopy_and_pickle_keep_the_bn_link():
    import io

    model = cnnkern.convert(SmallResNet())
    for copied in (copy.deepcopy(model), torch.load(_saved(model, io), weights_only=False)):
        assert copied.layer1.conv1.bn is copied.layer1.bn1
        assert copied.layer1.conv1.bn is not model.layer1.bn1


def _saved(model, io):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return buf


class _KeepsOutput(torch.autograd.Function):
    """Identity that keeps its output for backward, as a memory-lean fused op may."""

    @staticmethod
    def forward(ctx, y):
        out = y.clone()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        ctx.saved_tensors          # raises if the output was modified in place since
        return grad


def test_output_written_in_place_is_copied_if_the_fused_op_keeps_it(monkeypatch):
    # torchvision's BasicBlock writes into bn2's output (`out += identity`) and applies its
    # ReLU(inplace=True) to bn1's: fine with F.batch_norm, an autograd error with an op that
    # keeps its output for backward, unless the fused conv returns a copy.
    real = _fused_modules._conv_bn_relu
    monkeypatch.setattr(_fused_modules, "_conv_bn_relu",
                        lambda *a, **k: _KeepsOutput.apply(real(*a, **k)))
    original = resnet18_small().double()
    # fuse_residual=False: keep the block's own `out += identity` (with the tail fused, the
    # block no longer writes into the fused output: tests/api/test_convert_residual.py).
    model, report = cnnkern.convert(original, algo="im2col", report=True, fuse_residual=False)
    copied = sorted(n for n, m in model.named_modules() if getattr(m, "copy_output", False))
    # conv2's output takes `out += identity`; conv1's ReLU is fused in, and SkipAppliedReLU
    # passes it through instead of writing into it.
    assert copied == sorted(f"layer{i}.{j}.conv2" for i in (1, 2) for j in (0, 1))
    assert "its output is copied while autograd records" in report.entry("layer1.0.conv2").detail
    ref_losses, losses = train([original, model], steps=2, shape=(2, 3, 32, 32))
    torch.testing.assert_close(losses, ref_losses, rtol=F64_RTOL, atol=0)
    model.layer1[0].conv2.copy_output = False                  # the copy is what makes it work
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model(torch.randn(2, 3, 32, 32, dtype=torch.float64)).sum().backward()


def test_no_copy_when_the_fused_op_lets_its_output_be_modified():
    # F.batch_norm's output survives in-place changes; the fused op without ReLU saves z, not
    # its output, so ResNet's `out += identity` needs no copy.
    if not _fused_modules.output_survives_in_place_change(False):
        pytest.skip("the fused op keeps its conv + BN output for backward")
    model = cnnkern.convert(torchvision.models.resnet18(num_classes=10))
    assert not any(getattr(m, "copy_output", False) for m in model.modules())


def test_unbatched_input_is_rejected_as_batchnorm2d_does():
    original = small_vgg_bn()
    model = cnnkern.convert(original)
    for m in (original, model):
        with pytest.raises(ValueError, match="expected 4D input \\(got 3D input\\)"):
            m(torch.randn(3, 16, 16))


def test_check_set_algo_workflow_covers_converted_convs():
    model = cnnkern.convert(SmallResNet())
    plan = set_algo(model, "winograd")
    model(torch.randn(1, 3, 16, 16))
    assert plan["layer1.conv1"] == "winograd"                 # a fused conv is a cnnkern conv
    assert plan["conv1"].startswith("auto (") and "winograd needs a 3x3" in plan["conv1"]
    assert model.layer1.conv1.algo == "winograd"


class CallsBatchNormForward(tnn.Module):
    """Calls the BN module, then its forward once more directly."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return self.bn.forward(y * 2)


def test_bn_forward_called_directly_is_not_fused():
    # fx would trace into bn.forward, where _check_input_dim branches on the input: the model
    # does not trace, and outside an nn.Sequential nothing is fused.
    original = CallsBatchNormForward()
    model, report = cnnkern.convert(original, report=True)
    assert report.analysis[""].startswith("untraceable (TraceError")
    assert type(model.bn) is tnn.BatchNorm2d and type(model.conv) is cnn.Conv2d
    x = torch.randn(2, 3, 8, 8)
    assert_close(model(x), original(x))


def test_tracing_uses_the_training_flag_only():
    class FreezesOnTrain(SmallResNet):
        def train(self, mode=True):
            raise AssertionError("convert must not call train()")

    original = FreezesOnTrain()
    for m in original.modules():
        m.training = False
    model = cnnkern.convert(original)
    assert not model.training and not model.layer1.bn1.training


def test_converted_model_on_cuda_matches_cudnn(monkeypatch, dev):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    original = SmallResNet().to(dev.device)
    model, report = cnnkern.convert(original, report=True)
    assert report.skipped == [] and len(report.fused) == 6
    x = torch.randn(4, 3, 16, 16, device=dev.device)
    for mode in (False, True):
        original.train(mode), model.train(mode)
        assert_close(model(x), original(x))
    assert_state_close(model.state_dict(), original.state_dict(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_channels_last_model_stays_channels_last(training):
    """A channels_last model, converted, keeps channels_last after every layer, as the
    original does (it used to switch to NCHW after its first conv): the output, the input's
    gradient and every parameter's gradient have the original's strides and values."""
    torch.manual_seed(0)
    original = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(8, 8, 3, padding=1, groups=2), tnn.AvgPool2d(2),
        tnn.ConvTranspose2d(8, 4, 2, stride=2)).double().to(memory_format=torch.channels_last)
    converted = cnnkern.convert(copy.deepcopy(original), fuse=True)
    for m in (original, converted):
        m.train(training)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64).to(memory_format=torch.channels_last)
    outs, grads = [], []
    for m in (original, converted):
        xi = x.clone().requires_grad_()
        y = m(xi)
        y.backward(torch.ones_like(y))
        outs.append(y)
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    assert outs[1].is_contiguous(memory_format=torch.channels_last)
    assert outs[1].stride() == outs[0].stride()
    assert_close(outs[1], outs[0])
    for ours, ref in zip(grads[1], grads[0]):
        assert ours.stride() == ref.stride()
        assert_close(ours, ref)
