"""cnnkern.nn modules against their torch.nn counterparts."""

import copy

import pytest
import torch
import torch.nn as tnn

import cnnkern
import cnnkern.nn as cnn
from conftest import OpRecorder, assert_close, assert_exact, int_tensor

CONV_CONFIGS = [
    pytest.param(dict(in_channels=3, out_channels=4, kernel_size=3), id="3x3"),
    pytest.param(dict(in_channels=3, out_channels=6, kernel_size=(3, 2), stride=(2, 1),
                      padding=(1, 0), dilation=(1, 2), groups=3), id="asym_groups3"),
    pytest.param(dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4,
                      bias=False), id="depthwise_nobias"),
    pytest.param(dict(in_channels=2, out_channels=5, kernel_size=4, padding="same"), id="same_even"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=3, padding="valid"), id="valid"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=3, padding=2,
                      padding_mode="reflect"), id="reflect"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=(3, 5), padding=(1, 2),
                      padding_mode="replicate", stride=2), id="replicate_s2"),
    pytest.param(dict(in_channels=2, out_channels=4, kernel_size=3, padding=(2, 1),
                      padding_mode="circular", dilation=(1, 2)), id="circular_dil"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=2, padding="same",
                      padding_mode="reflect"), id="same_reflect_even"),
    pytest.param(dict(in_channels=4, out_channels=2, kernel_size=1), id="1x1"),
]


def _pair_of_convs(cfg, dtype=torch.float32):
    ref = tnn.Conv2d(**cfg, dtype=dtype)
    mine = cnn.Conv2d(**cfg, dtype=dtype)
    return ref, mine


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_is_a_torch_conv_with_same_state_dict_keys(cfg):
    ref, mine = _pair_of_convs(cfg)
    assert isinstance(mine, tnn.Conv2d)
    assert list(mine.state_dict().keys()) == list(ref.state_dict().keys())
    for k, v in ref.state_dict().items():
        assert mine.state_dict()[k].shape == v.shape, k
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                 "groups", "padding_mode"):
        assert getattr(mine, attr) == getattr(ref, attr), attr
    assert (mine.bias is None) == (ref.bias is None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_loads_torch_state_dict_and_matches(cfg, dtype):
    ref, mine = _pair_of_convs(cfg, dtype)
    mine.load_state_dict(ref.state_dict())  # strict
    x = torch.randn(2, cfg["in_channels"], 9, 8, dtype=dtype)
    xr, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = ref(xr), mine(xm)
    assert_close(out, out_ref)
    g = torch.randn(out_ref.shape, dtype=dtype)
    out_ref.backward(g)
    out.backward(g)
    assert_close(xm.grad, xr.grad)
    assert_close(mine.weight.grad, ref.weight.grad)
    if ref.bias is not None:
        assert_close(mine.bias.grad, ref.bias.grad)


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_torch_conv_loads_cnnkern_state_dict(cfg):
    ref, mine = _pair_of_convs(cfg)
    with torch.no_grad():
        for p in mine.parameters():
            p.copy_(int_tensor(*p.shape))
    ref.load_state_dict(mine.state_dict())  # strict
    for k, v in mine.state_dict().items():
        assert torch.equal(ref.state_dict()[k], v), k
    x = int_tensor(1, cfg["in_channels"], 7, 7)
    with torch.no_grad():
        assert_close(mine(x), ref(x).double())


def test_conv2d_uses_cnnkern_op():
    m = cnn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    with OpRecorder() as rec:
        m(x).sum().backward()
    assert "cnnkern::conv2d" in rec.names
    assert "cnnkern::conv2d_backward_weight" in rec.names
    assert not [n for n in rec.names if n.startswith("aten::") and "conv" in n], rec.names


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_use_cnnkern_op(mode):
    m = cnn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    with OpRecorder() as rec:
        m(torch.randn(1, 2, 5, 5))
    assert "cnnkern::conv2d" in rec.names
    assert not [n for n in rec.names if n.startswith("aten::") and "conv" in n], rec.names


def test_conv2d_algo_kwarg_passed_through():
    m = cnn.Conv2d(2, 3, 3, algo="direct")
    assert m.algo == "direct"
    with OpRecorder() as rec:
        m(torch.randn(1, 2, 5, 5))
    calls = rec.args_of("cnnkern::conv2d")
    assert calls and "direct" in calls[0], calls
    default = cnn.Conv2d(2, 3, 3)
    assert default.algo == "auto"
    with OpRecorder() as rec:
        default(torch.randn(1, 2, 5, 5))
    assert "auto" in rec.args_of("cnnkern::conv2d")[0]


def test_conv2d_unbuilt_algo_fails_clearly():
    unbuilt = [a for a in ("winograd", "winograd_f2", "im2col") if a not in cnnkern.algorithms("cpu")]
    if not unbuilt:
        pytest.skip("every algorithm is built for the CPU")
    m = cnn.Conv2d(2, 3, 3, algo=unbuilt[0])
    with pytest.raises((RuntimeError, ValueError), match=unbuilt[0]):
        m(torch.randn(1, 2, 5, 5))


def test_conv2d_state_dict_has_no_algo():
    # algo is configuration, not state: a torch checkpoint must load and vice versa.
    m = cnn.Conv2d(2, 3, 3, algo="direct")
    assert set(m.state_dict()) == {"weight", "bias"}


def test_conv2d_repr():
    cfg = dict(in_channels=3, out_channels=6, kernel_size=3, stride=2, padding=1,
               padding_mode="reflect", groups=3)
    r = repr(cnn.Conv2d(**cfg))
    assert r.startswith("Conv2d(")
    assert tnn.Conv2d(**cfg).extra_repr() in r, r


def test_conv2d_device_dtype_kwargs_and_deepcopy():
    m = cnn.Conv2d(2, 3, 3, dtype=torch.float64, device="cpu", algo="direct")
    assert m.weight.dtype == torch.float64
    m2 = copy.deepcopy(m)
    assert isinstance(m2, cnn.Conv2d) and m2.algo == "direct"
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    assert_exact(m2(x), m(x))


def test_conv2d_unbatched():
    ref, mine = _pair_of_convs(dict(in_channels=2, out_channels=3, kernel_size=3, padding=1))
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 5)
    assert_close(mine(x), ref(x))


# ---------------------------------------------------------------------------------------------
# ConvTranspose2d
# ---------------------------------------------------------------------------------------------

TRANSPOSED_CONFIGS = [
    pytest.param(dict(in_channels=3, out_channels=4, kernel_size=3), id="3x3"),
    pytest.param(dict(in_channels=4, out_channels=6, kernel_size=(4, 3), stride=(2, 3),
                      padding=(1, 0), output_padding=(1, 2), groups=2), id="asym_groups2_outpad"),
    pytest.param(dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=2,
                      dilation=3, output_padding=1, bias=False), id="dilated_nobias"),
    pytest.param(dict(in_channels=5, out_channels=5, kernel_size=16, stride=8, padding=4,
                      bias=False), id="fcn_upscore8"),
]


def _pair_of_transposed(cfg, dtype=torch.float32):
    ref = tnn.ConvTranspose2d(**cfg, dtype=dtype)
    mine = cnn.ConvTranspose2d(**cfg, dtype=dtype)
    mine.load_state_dict(ref.state_dict())  # strict
    return ref, mine


@pytest.mark.parametrize("cfg", TRANSPOSED_CONFIGS)
def test_conv_transpose2d_has_torchs_constructor_and_keys(cfg):
    ref, mine = _pair_of_transposed(cfg)
    assert isinstance(mine, tnn.ConvTranspose2d) and mine.algo == "auto"
    assert list(mine.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert mine.state_dict()[k].shape == v.shape, k
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                 "output_padding", "dilation", "groups", "padding_mode"):
        assert getattr(mine, attr) == getattr(ref, attr), attr
    assert ref.extra_repr() in repr(mine) and "algo='auto'" in repr(mine)
    back = tnn.ConvTranspose2d(**cfg)
    back.load_state_dict(mine.state_dict())  # strict, the other way


@pytest.mark.parametrize("cfg", TRANSPOSED_CONFIGS)
def test_conv_transpose2d_matches_torch_with_gradients(cfg):
    ref, mine = _pair_of_transposed(cfg, torch.float64)
    x = torch.randn(2, cfg["in_channels"], 5, 4, dtype=torch.float64)
    xr, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = ref(xr), mine(xm)
    assert_close(out, out_ref)
    g = torch.randn(out_ref.shape, dtype=torch.float64)
    out_ref.backward(g)
    out.backward(g)
    assert_close(xm.grad, xr.grad)
    for (name, p_ref), (_, p) in zip(ref.named_parameters(), mine.named_parameters()):
        assert_close(p.grad, p_ref.grad, msg=lambda m, n=name: f"{n}: {m}")


def test_conv_transpose2d_gradients_with_output_padding_not_below_stride():
    cfg = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=2, dilation=3,
               output_padding=2)
    ref, mine = _pair_of_transposed(cfg, torch.float64)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64)
    out_ref = ref(x.requires_grad_())
    assert_close(mine(x), out_ref)                      # the forward is right
    g = torch.randn(out_ref.shape, dtype=torch.float64)
    want = torch.autograd.grad(out_ref, (x, ref.weight), g)
    got = torch.autograd.grad(mine(x), (x, mine.weight), g)
    for a, r in zip(got, want):
        assert_close(a, r)


def test_conv_transpose2d_output_size_as_torch_takes_it():
    ref, mine = _pair_of_transposed(dict(in_channels=6, out_channels=4, kernel_size=3, stride=3,
                                         padding=1), torch.float64)
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    # stride 3: each spatial size has three valid values, (in-1)*3 - 2 + 3 + {0, 1, 2}.
    sizes = [None, [10, 13], (11, 14), [12, 15], [2, 4, 12, 13], torch.Size([2, 4, 10, 15])]
    for size in sizes:
        out = mine(x, output_size=size)
        assert_close(out, ref(x, output_size=size))
        if size is not None:
            assert list(out.shape[-2:]) == list(size)[-2:]
    # Unbatched: the 2 spatial sizes, or (C, H, W).
    assert_close(mine(x[0], output_size=[4, 11, 14]), ref(x[0], output_size=[4, 11, 14]))
    assert mine(x[0], [11, 14]).shape == (4, 11, 14)
    # Sizes torch refuses, with torch's errors.
    for bad in ([13, 13], [9, 13], [4, 12, 13]):
        with pytest.raises(ValueError) as theirs:
            ref(x, output_size=bad)
        with pytest.raises(ValueError) as ours:
            mine(x, output_size=bad)
        assert str(ours.value) == str(theirs.value)


def test_conv_transpose2d_uses_cnnkern_ops_and_algo():
    m = cnn.ConvTranspose2d(3, 4, 4, stride=2, padding=1, algo="direct")
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    with OpRecorder() as rec:
        m(x).sum().backward()
    # The forward is conv2d_backward_input; its backward the conv and the weight gradient.
    for op in ("conv2d_backward_input", "conv2d", "conv2d_backward_weight"):
        calls = rec.args_of(f"cnnkern::{op}")
        assert len(calls) == 1 and "direct" in calls[0], (op, rec.names)
    assert not [n for n in rec.names if n.startswith("aten::") and "conv" in n], rec.names


def test_conv_transpose2d_from_torch_shares_parameters():
    ref = tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                              dilation=2)
    mine = cnn.ConvTranspose2d.from_torch(ref, algo="im2col")
    assert mine.weight is ref.weight and mine.bias is ref.bias and mine.algo == "im2col"
    assert mine.extra_repr() == ref.extra_repr() + ", algo='im2col'"
    x = torch.randn(2, 4, 5, 5)
    assert_close(mine(x), ref(x))
    nobias = cnn.ConvTranspose2d.from_torch(tnn.ConvTranspose2d(2, 2, 2, bias=False))
    assert nobias.bias is None and list(nobias.state_dict()) == ["weight"]


def test_conv_transpose2d_padding_mode_other_than_zeros_is_refused():
    with pytest.raises(ValueError, match="padding mode"):   # torch's constructor refuses it
        cnn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    m = cnn.ConvTranspose2d(2, 2, 3)
    m.padding_mode = "reflect"           # set afterwards, as torch's forward, forward refuses
    with pytest.raises(ValueError, match="cnnkern.nn.ConvTranspose2d: only padding_mode='zeros' "
                                         "is supported .*; got 'reflect'"):
        m(torch.randn(1, 2, 4, 4))


# ---------------------------------------------------------------------------------------------
# Pooling modules
# ---------------------------------------------------------------------------------------------

MAX_CONFIGS = [
    pytest.param(dict(kernel_size=2), id="k2"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1), id="k3s2p1"),
    pytest.param(dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True), id="asym_ceil"),
    pytest.param(dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), id="ceil_pad"),
]


@pytest.mark.parametrize("cfg", MAX_CONFIGS)
def test_max_pool_module(cfg):
    ref, mine = tnn.MaxPool2d(**cfg), cnn.MaxPool2d(**cfg)
    assert isinstance(mine, tnn.MaxPool2d)
    assert mine.state_dict() == {} and list(mine.parameters()) == []
    assert mine.extra_repr() == ref.extra_repr()
    x = torch.randn(2, 3, 9, 8)
    xr, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = ref(xr), mine(xm)
    assert_exact(out, out_ref)
    g = int_tensor(*out.shape)
    out_ref.backward(g)
    out.backward(g)
    assert_exact(xm.grad, xr.grad)


def test_max_pool_module_return_indices():
    ref = tnn.MaxPool2d(3, 2, 1, return_indices=True)
    mine = cnn.MaxPool2d(3, 2, 1, return_indices=True)
    x = torch.randn(1, 2, 7, 7)
    out, idx = mine(x)
    out_ref, idx_ref = ref(x)
    assert_exact(out, out_ref)
    assert_exact(idx, idx_ref)
    with OpRecorder() as rec:
        mine(x)
    assert "cnnkern::max_pool2d_with_indices" in rec.names


AVG_CONFIGS = [
    pytest.param(dict(kernel_size=2), id="k2"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), id="exclude_pad"),
    pytest.param(dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), ceil_mode=True), id="asym_ceil"),
    pytest.param(dict(kernel_size=3, stride=1, padding=1, divisor_override=5), id="divisor"),
]


@pytest.mark.parametrize("cfg", AVG_CONFIGS)
def test_avg_pool_module(cfg):
    ref, mine = tnn.AvgPool2d(**cfg), cnn.AvgPool2d(**cfg)
    assert isinstance(mine, tnn.AvgPool2d)
    assert mine.state_dict() == {} and list(mine.parameters()) == []
    assert mine.extra_repr() == ref.extra_repr()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    xr, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = ref(xr), mine(xm)
    assert_close(out, out_ref)
    g = torch.randn(out.shape, dtype=torch.float64)
    out_ref.backward(g)
    out.backward(g)
    assert_close(xm.grad, xr.grad)
    with OpRecorder() as rec:
        mine(x)
    assert "cnnkern::avg_pool2d" in rec.names


@pytest.mark.parametrize("output_size", [1, 3, (2, 5), (None, 3), (4, None)], ids=str)
def test_adaptive_avg_pool_module(output_size):
    ref, mine = tnn.AdaptiveAvgPool2d(output_size), cnn.AdaptiveAvgPool2d(output_size)
    assert isinstance(mine, tnn.AdaptiveAvgPool2d)
    assert mine.state_dict() == {}
    assert repr(mine) == repr(ref)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    xr, xm = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = ref(xr), mine(xm)
    assert_close(out, out_ref)
    g = torch.randn(out.shape, dtype=torch.float64)
    out_ref.backward(g)
    out.backward(g)
    assert_close(xm.grad, xr.grad)
    with OpRecorder() as rec:
        mine(x)
    assert "cnnkern::adaptive_avg_pool2d" in rec.names


def test_sequential_of_torch_layers_swapped_for_cnnkern():
    """A torch Sequential and its cnnkern twin (same state dict) agree."""
    ref = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(8, 8, 3, groups=2, padding_mode="replicate", padding=1), tnn.ReLU(),
        tnn.AvgPool2d(2, ceil_mode=True), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(8, 4))
    mine = tnn.Sequential(
        cnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), cnn.MaxPool2d(2),
        cnn.Conv2d(8, 8, 3, groups=2, padding_mode="replicate", padding=1), tnn.ReLU(),
        cnn.AvgPool2d(2, ceil_mode=True), cnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(8, 4))
    assert list(mine.state_dict()) == list(ref.state_dict())
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 11, 10)
    out_ref, out = ref(x), mine(x)
    assert_close(out, out_ref)
    out_ref.sum().backward()
    out.sum().backward()
    for (n, p_ref), (_, p) in zip(ref.named_parameters(), mine.named_parameters()):
        assert_close(p.grad, p_ref.grad, msg=lambda m, n=n: f"{n}: {m}")
