"""torch.compile(fullgraph=True) of networks made of cnnkern layers: no graph breaks, the cnnkern
ops (forward and backward) are in the graphs, and results match eager; on the CPU and a GPU
("cuda"; the `dev` fixture, tests/conftest.py). Not in the CUDA emulator: it is a
TorchDispatchMode, under which torch.compile does not trace."""

import copy

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import cnnkern
import cnnkern.nn as cnn
from conftest import COMPILABLE_DEVICES, assert_close

ON_EVERY_DEVICE = pytest.mark.parametrize("dev", COMPILABLE_DEVICES, indirect=True)


class SmallCNN(tnn.Module):
    """conv -> relu -> maxpool -> grouped conv ("same") -> relu -> avgpool (ceil) ->
    adaptive avgpool -> linear. Input (N, 1, 12, 12)."""

    def __init__(self):
        super().__init__()
        self.conv1 = cnn.Conv2d(1, 4, 3, padding=1)
        self.pool1 = cnn.MaxPool2d(2)
        self.conv2 = cnn.Conv2d(4, 6, 3, padding="same", groups=2)
        self.pool2 = cnn.AvgPool2d(2, ceil_mode=True)
        self.gap = cnn.AdaptiveAvgPool2d((2, 2))
        self.fc = tnn.Linear(24, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = self.gap(x)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _run(model, x):
    """Forward, then backward of a fixed loss; returns (output, input grad, param grads)."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x)
    weights = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape)
    (out * weights).sum().backward()
    grads = {n.removeprefix("_orig_mod."): p.grad for n, p in model.named_parameters()}
    return out.detach(), x.grad, grads


def _compare_eager_compiled(model, compiled, x, dtype=torch.float32):
    out_e, gx_e, gp_e = _run(model, x)
    out_c, gx_c, gp_c = _run(compiled, x)
    assert_close(out_c, out_e.double(), dtype=dtype)
    assert_close(gx_c, gx_e.double(), dtype=dtype)
    assert gp_e.keys() == gp_c.keys()
    for name in gp_e:
        assert gp_c[name] is not None, name
        assert_close(gp_c[name], gp_e[name].double(), dtype=dtype, msg=lambda m, n=name: f"{n}: {m}")


class GraphCapture:
    """An aot_autograd backend that records the forward and backward graphs' op names."""

    def __init__(self):
        self.fw, self.bw = [], []

    @staticmethod
    def _names(gm):
        return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]

    def backend(self):
        def fw(gm, _):
            self.fw.append(self._names(gm))
            return make_boxed_func(gm.forward)

        def bw(gm, _):
            self.bw.append(self._names(gm))
            return make_boxed_func(gm.forward)

        return aot_autograd(fw_compiler=fw, bw_compiler=bw)


@ON_EVERY_DEVICE
def test_small_cnn_aot_eager_matches_eager(dev):
    model = SmallCNN().to(dev.device)
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager", fullgraph=True)
    _compare_eager_compiled(model, compiled, torch.randn(2, 1, 12, 12, device=dev.device))


@ON_EVERY_DEVICE
def test_small_cnn_graphs_contain_cnnkern_ops(dev):
    cap = GraphCapture()
    model = SmallCNN().to(dev.device)
    compiled = torch.compile(model, backend=cap.backend(), fullgraph=True)
    _run(compiled, torch.randn(2, 1, 12, 12, device=dev.device))
    fw = [n for g in cap.fw for n in g]
    bw = [n for g in cap.bw for n in g]
    for op in ("conv2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d"):
        assert any(n.startswith(f"cnnkern.{op}.") for n in fw), (op, fw)
    for op in ("conv2d_backward_input", "conv2d_backward_weight", "max_pool2d_backward",
               "avg_pool2d_backward", "adaptive_avg_pool2d_backward"):
        assert any(n.startswith(f"cnnkern.{op}.") for n in bw), (op, bw)
    aten_conv_or_pool = [n for n in fw + bw if n.startswith("aten.")
                         and ("conv" in n or "pool" in n)]
    assert not aten_conv_or_pool, aten_conv_or_pool


@ON_EVERY_DEVICE
def test_small_cnn_inductor_matches_eager(dev):
    model = SmallCNN().to(dev.device)
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True)  # default backend: inductor
    _compare_eager_compiled(model, compiled, torch.randn(2, 1, 12, 12, device=dev.device))


@ON_EVERY_DEVICE
def test_dynamic_shapes_aot_eager(dev):
    """dynamic=True drives the fake kernels with symbolic sizes; two batch/spatial sizes."""
    model = SmallCNN().to(dev.device)
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager", fullgraph=True,
                             dynamic=True)
    for shape in ((2, 1, 12, 12), (3, 1, 14, 10)):
        _compare_eager_compiled(model, compiled, torch.randn(shape, device=dev.device))


@ON_EVERY_DEVICE
def test_functional_ops_compile_fullgraph(dev):
    def f(x, w, b):
        y = cnnkern.conv2d(x, w, b, stride=(1, 2), padding="valid", dilation=(2, 1))
        y, idx = cnnkern.max_pool2d(y, 2, 1, 1, ceil_mode=True, return_indices=True)
        y = cnnkern.avg_pool2d(y, 2, count_include_pad=False, divisor_override=None)
        return cnnkern.adaptive_avg_pool2d(y, (None, 2)), idx

    x = torch.randn(2, 3, 11, 12, dtype=torch.float64, device=dev.device)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=dev.device)
    b = torch.randn(4, dtype=torch.float64, device=dev.device)
    eager_out, eager_idx = f(x, w, b)
    comp_out, comp_idx = torch.compile(f, backend="aot_eager", fullgraph=True)(x, w, b)
    assert_close(comp_out, eager_out)
    assert torch.equal(comp_idx, eager_idx)


@ON_EVERY_DEVICE
def test_lenet5_compile_matches_eager(dev):
    model = cnnkern.models.lenet5().to(dev.device).eval()  # eval: deterministic even with dropout
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager", fullgraph=True)
    _compare_eager_compiled(model, compiled, torch.randn(2, 1, 32, 32, device=dev.device))


@ON_EVERY_DEVICE
def test_lenet5_compile_inductor_matches_eager(dev):
    model = cnnkern.models.lenet5().to(dev.device).eval()
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True)
    x = torch.randn(3, 1, 32, 32, device=dev.device)
    with torch.no_grad():
        assert_close(compiled(x), model(x).double())
