"""Memory format: every op's outputs and gradients come back in the layout torch's own op gives
them (channels_last or NCHW, with the same strides), forward and backward, on every backend;
and the fake kernels promise the strides the real ops return.

The rule (csrc/ops/layout.h): a convolution's output and gradients are channels_last when its
input or weight is; BatchNorm's and pooling's follow their input. Values are checked too
(float64 against torch), since a layout copy in the wrong place would also show there.
"""

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import cnnkern
from conftest import DEVICES, assert_close

CL = torch.channels_last
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": CL}


def _leaf(shape, layout, device, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
    return t.contiguous(memory_format=layout).requires_grad_()


def _check_like_torch(ours, ref, what):
    assert ours.stride() == ref.stride(), (
        f"{what}: strides {ours.stride()} but torch gives {ref.stride()} (size {list(ref.shape)})")
    assert_close(ours, ref, msg=what)


def _run_both(fn_ours, fn_torch, tensors, grad_layout, device):
    """Runs both functions on copies of `tensors` (leaves), back-propagates one grad_output
    (in grad_layout) through each, and compares the outputs and every gradient."""
    ours_in = [t.detach().clone(memory_format=torch.preserve_format).requires_grad_()
               for t in tensors]
    ref_in = [t.detach().clone(memory_format=torch.preserve_format).requires_grad_()
              for t in tensors]
    out, ref = fn_ours(*ours_in), fn_torch(*ref_in)
    _check_like_torch(out, ref, "output")
    g = torch.randn(ref.shape, dtype=ref.dtype, device=device).contiguous(
        memory_format=grad_layout)
    out.backward(g)
    ref.backward(g)
    for i, (a, b) in enumerate(zip(ours_in, ref_in)):
        _check_like_torch(a.grad, b.grad, f"gradient of argument {i}")


@pytest.mark.parametrize("grad_layout", list(LAYOUTS))
@pytest.mark.parametrize("w_layout", list(LAYOUTS))
@pytest.mark.parametrize("x_layout", list(LAYOUTS))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv2d_layout_like_torch(x_layout, w_layout, grad_layout, dev):
    x = _leaf((2, 4, 7, 6), LAYOUTS[x_layout], dev.device, 0)
    w = _leaf((6, 2, 3, 3), LAYOUTS[w_layout], dev.device, 1)
    b = _leaf((6,), torch.contiguous_format, dev.device, 2)
    kw = dict(stride=(2, 1), padding=1, groups=2)
    _run_both(lambda x, w, b: cnnkern.conv2d(x, w, b, **kw, algo="direct"),
              lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b], LAYOUTS[grad_layout],
              dev.device)


@pytest.mark.parametrize("w_layout", list(LAYOUTS))
@pytest.mark.parametrize("x_layout", list(LAYOUTS))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv_transpose2d_layout_like_torch(x_layout, w_layout, dev):
    x = _leaf((2, 4, 5, 4), LAYOUTS[x_layout], dev.device, 3)
    w = _leaf((4, 3, 3, 3), LAYOUTS[w_layout], dev.device, 4)
    kw = dict(stride=2, padding=1, output_padding=1)
    _run_both(lambda x, w: cnnkern.conv_transpose2d(x, w, **kw, algo="direct"),
              lambda x, w: F.conv_transpose2d(x, w, **kw), [x, w], CL, dev.device)


def _bn(x, w, training, fused):
    """conv -> BN (-> ReLU) with fixed statistics: cnnkern's fused op or torch's sequence."""
    k = w.shape[0]
    gamma = torch.linspace(0.5, 1.5, k, dtype=x.dtype, device=x.device)
    beta = torch.linspace(-0.2, 0.2, k, dtype=x.dtype, device=x.device)
    mean = torch.linspace(-0.1, 0.1, k, dtype=x.dtype, device=x.device)
    var = torch.linspace(0.8, 1.2, k, dtype=x.dtype, device=x.device)
    if fused:
        return cnnkern.conv_bn_relu(x, w, None, gamma, beta, mean, var, training=training,
                                    padding=1, algo="direct")
    z = F.conv2d(x, w, None, padding=1)
    return F.relu(F.batch_norm(z, mean, var, gamma, beta, training=training))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("x_layout", list(LAYOUTS))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_conv_bn_relu_layout_like_torch(x_layout, training, dev):
    x = _leaf((3, 4, 6, 5), LAYOUTS[x_layout], dev.device, 5)
    w = _leaf((5, 4, 3, 3), torch.contiguous_format, dev.device, 6)
    _run_both(lambda x, w: _bn(x, w, training, fused=True),
              lambda x, w: _bn(x, w, training, fused=False), [x, w], LAYOUTS[x_layout],
              dev.device)


POOLS = {
    "max": (lambda x: cnnkern.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1)),
    "avg": (lambda x: cnnkern.avg_pool2d(x, 3, 2, 1), lambda x: F.avg_pool2d(x, 3, 2, 1)),
    "adaptive": (lambda x: cnnkern.adaptive_avg_pool2d(x, (3, 2)),
                 lambda x: F.adaptive_avg_pool2d(x, (3, 2))),
}


@pytest.mark.parametrize("grad_layout", list(LAYOUTS))
@pytest.mark.parametrize("x_layout", list(LAYOUTS))
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_pool_layout_like_torch(pool, x_layout, grad_layout, dev):
    x = _leaf((2, 5, 7, 6), LAYOUTS[x_layout], dev.device, 7)
    ours, ref = POOLS[pool]
    _run_both(ours, ref, [x], LAYOUTS[grad_layout], dev.device)


@pytest.mark.parametrize("w_layout", list(LAYOUTS))
@pytest.mark.parametrize("x_layout", list(LAYOUTS))
def test_fake_strides_match_the_real_ops(x_layout, w_layout):
    """What torch.compile and torch.export plan with (the fakes) is what runs."""
    def run(x, w):
        y = cnnkern.conv2d(x, w, None, padding=1)
        t = cnnkern.conv_transpose2d(y, w, padding=1)
        z = cnnkern.conv_bn_relu(x, w, None, None, None, None, None, training=True, padding=1)
        return y, t, z, cnnkern.max_pool2d(y, 2)

    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=LAYOUTS[x_layout])
    w = torch.randn(4, 3, 3, 3).contiguous(memory_format=LAYOUTS[w_layout])
    real = run(x, w)
    with FakeTensorMode() as mode:
        fake = run(mode.from_tensor(x), mode.from_tensor(w))
    for r, f in zip(real, fake):
        assert (f.shape, f.stride()) == (r.shape, r.stride())
