"""Every public op on device="meta" (sizes only, no data) gives the output shapes and dtypes
torch's own op gives, forward and backward: the fake kernels (cnnkern/_registrations) are pure
Python, they never ask the C++ library about a device it does not know."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
import torch.nn.functional as F

import cnnkern

DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def _meta(*shape, dtype=torch.float32, grad=True):
    return torch.empty(shape, device="meta", dtype=dtype, requires_grad=grad)


def _assert_like(ours, theirs, what):
    assert ours.device.type == "meta", what
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype), (what, ours, theirs)


def _check(ours, theirs, inputs):
    """ours(*inputs) and theirs(*inputs): the outputs alike, and the gradients of every input
    that requires grad alike (through a meta grad_output, the first output's)."""
    out, ref = ours(*inputs), theirs(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for i, (o, r) in enumerate(zip(outs, refs, strict=True)):
        _assert_like(o, r, f"output {i}")
    wrt = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grad = torch.empty_like(refs[0])
    for i, (g, gr) in enumerate(zip(torch.autograd.grad(outs[0], wrt, grad),
                                    torch.autograd.grad(refs[0], wrt, grad))):
        _assert_like(g, gr, f"gradient {i}")


CONV = [  # (input, weight, bias?, keyword arguments)
    pytest.param((2, 3, 9, 8), (4, 3, 3, 3), True, dict(padding=1), id="3x3_pad1"),
    pytest.param((2, 3, 11, 10), (6, 3, 5, 5), False, dict(stride=2, dilation=(1, 2)),
                 id="5x5_s2_dil"),
    pytest.param((1, 4, 7, 7), (4, 2, 2, 2), True, dict(padding="same", groups=2),
                 id="same_even_groups"),
    pytest.param((3, 9, 8), (4, 3, 3, 3), True, dict(padding="valid"), id="unbatched"),
    pytest.param((0, 3, 5, 5), (4, 3, 3, 3), True, {}, id="empty_batch"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, ws, bias, kw", CONV)
def test_conv2d(xs, ws, bias, kw, dtype):
    x, w = _meta(*xs, dtype=dtype), _meta(*ws, dtype=dtype)
    b = _meta(ws[0], dtype=dtype) if bias else None
    _check(lambda *t: cnnkern.conv2d(*t, **kw), lambda *t: F.conv2d(*t, **kw), (x, w, b))


@pytest.mark.parametrize("algo", ["auto"] + list(cnnkern.KNOWN_ALGORITHMS))
def test_conv2d_any_algo_name(algo):
    # Which algorithm can run is the C++ op's question, asked when it runs: a fake kernel
    # has only sizes, so every name gives the shape.
    x, w = _meta(2, 3, 6, 6), _meta(4, 3, 3, 3)
    _check(lambda *t: cnnkern.conv2d(*t, padding=1, algo=algo),
           lambda *t: F.conv2d(*t, padding=1), (x, w))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1, output_padding=1),
                                dict(stride=(2, 3), dilation=2, groups=2)], ids=str)
def test_conv_transpose2d(kw, dtype):
    x, w, b = _meta(2, 4, 5, 6, dtype=dtype), _meta(4, 3, 3, 3, dtype=dtype), _meta(
        3 * kw.get("groups", 1), dtype=dtype)
    _check(lambda *t: cnnkern.conv_transpose2d(*t, **kw),
           lambda *t: F.conv_transpose2d(*t, **kw), (x, w, b))


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no_relu"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_bn_relu(training, relu, dtype):
    x, w = _meta(2, 3, 7, 6, dtype=dtype), _meta(5, 3, 3, 3, dtype=dtype)
    gamma, beta = _meta(5, dtype=dtype), _meta(5, dtype=dtype)
    rm, rv = _meta(5, dtype=dtype, grad=False), _meta(5, dtype=dtype, grad=False)

    def ours(x, w, gamma, beta):
        return cnnkern.conv_bn_relu(x, w, None, gamma, beta, rm, rv, training, 0.1, 1e-5,
                                    stride=2, padding=1, relu=relu)

    def theirs(x, w, gamma, beta):
        y = F.batch_norm(F.conv2d(x, w, None, 2, 1), rm, rv, gamma, beta, training, 0.1, 1e-5)
        return F.relu(y) if relu else y

    _check(ours, theirs, (x, w, gamma, beta))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_layer(training):
    """The nn layer too (eval: the cached BN fold; training: num_batches_tracked and the
    running statistics are updated, on meta)."""
    m = cnnkern.nn.ConvBNReLU2d(3, 4, 3, padding=1, device="meta").train(training)
    ref = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
                              torch.nn.BatchNorm2d(4), torch.nn.ReLU()).to("meta").train(training)
    _check(m, ref, (_meta(2, 3, 6, 5),))
    with torch.no_grad():
        _assert_like(m(_meta(2, 3, 6, 5)), ref(_meta(2, 3, 6, 5)), "no-grad output")


POOL = [  # (input, kernel_size, stride, padding, dilation, ceil_mode)
    pytest.param((2, 3, 9, 8), 2, None, 0, 1, False, id="k2"),
    pytest.param((1, 2, 7, 8), (3, 2), (2, 1), 1, (1, 2), True, id="asym_ceil_dil"),
    pytest.param((2, 5, 5), 2, 2, 1, 1, True, id="unbatched_ceil"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, k, s, p, d, ceil", POOL)
def test_max_pool2d(xs, k, s, p, d, ceil, dtype):
    _check(lambda x: cnnkern.max_pool2d(x, k, s, p, d, ceil, return_indices=True),
           lambda x: F.max_pool2d(x, k, s, p, d, ceil, return_indices=True),
           (_meta(*xs, dtype=dtype),))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, k, s, p, d, ceil", POOL)
def test_avg_pool2d(xs, k, s, p, d, ceil, dtype):
    _check(lambda x: cnnkern.avg_pool2d(x, k, s, p, ceil, False, None),
           lambda x: F.avg_pool2d(x, k, s, p, ceil, False, None), (_meta(*xs, dtype=dtype),))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs, size", [((2, 3, 9, 8), (4, 3)), ((1, 2, 3, 5), (7, None)),
                                      ((2, 6, 6), 1)], ids=str)
def test_adaptive_avg_pool2d(xs, size, dtype):
    _check(lambda x: cnnkern.adaptive_avg_pool2d(x, size),
           lambda x: F.adaptive_avg_pool2d(x, size), (_meta(*xs, dtype=dtype),))


def test_channels_last_layout_is_kept_as_torch_keeps_it():
    x = _meta(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    for ours, theirs in ((cnnkern.max_pool2d(x, 2), F.max_pool2d(x, 2)),
                         (cnnkern.avg_pool2d(x, 2), F.avg_pool2d(x, 2)),
                         (cnnkern.adaptive_avg_pool2d(x, 3), F.adaptive_avg_pool2d(x, 3))):
        assert ours.stride() == theirs.stride()


def _error(fn, *args):
    with pytest.raises(RuntimeError) as info:
        fn(*args)
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize("call", [
    lambda x, w: cnnkern.conv2d(x(1, 1, 4, 4), w(1, 1, 5, 5)),
    lambda x, w: cnnkern.conv2d(x(1, 4, 6, 6), w(2, 3, 3, 3)),
    lambda x, w: cnnkern.conv2d(x(1, 4, 6, 6), w(3, 2, 3, 3), groups=2),
    lambda x, w: cnnkern.conv2d(x(1, 4, 6, 6), w(2, 4, 5, 5), algo="winograd"),
    lambda x, w: cnnkern.max_pool2d(x(1, 1, 2, 2), 3),
    lambda x, w: cnnkern.max_pool2d(x(1, 1, 6, 6), 2, 1, 2),
    lambda x, w: cnnkern.avg_pool2d(x(1, 1, 6, 6), 2, divisor_override=0),
], ids=["kernel_too_large", "channels", "groups", "algo", "pool_output", "pool_padding",
        "divisor"])
def test_meta_refuses_what_eager_refuses_with_its_message(call):
    """The fakes run the C++ op's checks (meta has no backend to judge an algorithm by, so
    that case is the CPU's under FakeTensorMode on CPU tensors, and sizes only on meta)."""
    eager = _error(call, torch.randn, torch.randn)
    with FakeTensorMode() as mode:
        fake = _error(call, *(lambda *s: mode.from_tensor(torch.randn(*s)),) * 2)
    assert fake == eager
    meta = (lambda *s: _meta(*s),) * 2
    if "algo" in eager:
        call(*meta)  # no backend on meta: the shape is fine
    else:
        assert _error(call, *meta) == eager


def test_mixed_devices_are_an_error():
    with pytest.raises(RuntimeError, match=r"weight must be on the same device"):
        torch.ops.cnnkern.conv2d(torch.randn(1, 2, 5, 5), _meta(3, 2, 3, 3), None, [1, 1],
                                 [0, 0], [1, 1], 1, "auto")
