"""Every public op under torch.compile(fullgraph=True): no graph break, forward and gradients
as eager (tests/ops/test_compile.py compiles whole networks of the layers)."""

import pytest
import torch

import cnnkern
from conftest import assert_close


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _t(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def _rm_rv():
    return torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)


OPS = {
    "conv2d": (lambda x, w, b: cnnkern.conv2d(x, w, b, 2, "valid", 1), (5, 6), True),
    "conv2d_same": (lambda x, w, b: cnnkern.conv2d(x, w, b, padding="same", dilation=2),
                    (5, 6), True),
    "conv_transpose2d": (lambda x, w, b: cnnkern.conv_transpose2d(x, w, b, 2, 1, 1), (5, 6),
                         True),
    "conv_bn_relu_train": (lambda x, w, b: cnnkern.conv_bn_relu(
        x, w, None, b, b * 0.5, *_rm_rv(), True, 0.1, 1e-5, padding=1), (5, 6), True),
    "conv_bn_add_relu_train": (lambda x, w, b: cnnkern.conv_bn_relu(
        x, w, None, b, b * 0.5, *_rm_rv(), True, 0.1, 1e-5, padding=1, residual=x), (5, 6), True),
    "conv_bn_eval": (lambda x, w, b: cnnkern.conv_bn_relu(
        x, w, None, b, b * 0.5, *_rm_rv(), False, relu=False), (5, 6), True),
    "max_pool2d": (lambda x: cnnkern.max_pool2d(x, 2, 1, 1, ceil_mode=True), (5, 6), False),
    "avg_pool2d": (lambda x: cnnkern.avg_pool2d(x, 3, 2, 1, True, False), (5, 6), False),
    "adaptive_avg_pool2d": (lambda x: cnnkern.adaptive_avg_pool2d(x, (2, None)), (5, 6), False),
}


@pytest.mark.parametrize("name", list(OPS))
def test_op_compiles_fullgraph_and_matches_eager(name):
    fn, (h, w_), conv = OPS[name]
    args = (_t(2, 4, h, w_),) + ((_t(4, 4, 3, 3), _t(4)) if conv else ())
    results = []
    for f in (fn, torch.compile(fn, backend="aot_eager", fullgraph=True)):
        out = f(*args)
        grads = torch.autograd.grad(out, args, torch.ones_like(out))
        results.append((out, grads))
    (out, grads), (ref, ref_grads) = results[1], results[0]
    assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_layer_compiles_fullgraph(training):
    m = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1).double().train(training)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():  # eval without grad: the layer's fold cache is skipped while tracing
        ref = m(x)
        out = torch.compile(m, backend="aot_eager", fullgraph=True)(x)
    assert_close(out, ref)
