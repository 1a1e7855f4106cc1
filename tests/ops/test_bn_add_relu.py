"""cnnkern::bn_add_relu_train, a ResNet block's tail out = relu(BN(z) + residual) in the fused
BN op's two passes, and its backward (the residual's gradient and z's from one masked
gradient). References: torch in float64 (outputs, both gradients, gamma/beta grads, batch
statistics), and bitwise the unfused cnnkern sequence (bn_relu_train without ReLU, then torch's
add and relu), which the fused op rounds exactly as.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close

ops = torch.ops.cnnkern

SHAPES = [(2, 3, 5, 7), (4, 8, 6, 6), (1, 5, 3, 1)]


def case(shape, dtype, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float64).mul(2).add(0.5).to(dtype)
    r = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5).to(dtype)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).to(dtype)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if channels_last:
        z = z.to(memory_format=torch.channels_last)
    return z, r, w, b, dy


def fused(z, r, w, b, dy, eps=1e-5):
    z, r, w, b = (t.detach().clone().requires_grad_() for t in (z, r, w, b))
    out, mean, invstd, var = ops.bn_add_relu_train(z, r, w, b, eps)
    out.backward(dy)
    return out.detach(), (mean, invstd, var), (z.grad, r.grad, w.grad, b.grad)


def torch_float64(z, r, w, b, dy, eps=1e-5):
    z, r, w, b = (t.detach().double().requires_grad_() for t in (z, r, w, b))
    out = torch.relu(F.batch_norm(z, None, None, w, b, True, 0.0, eps) + r)
    out.backward(dy.double())
    return out.detach(), (z.grad, r.grad, w.grad, b.grad)


def unfused_cnnkern(z, r, w, b, dy, eps=1e-5):
    z, r, w, b = (t.detach().clone().requires_grad_() for t in (z, r, w, b))
    bn, *_ = ops.bn_relu_train(z, w, b, eps, False)
    out = torch.relu(bn + r)
    out.backward(dy)
    return out.detach(), (z.grad, r.grad, w.grad, b.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_torch_float64(shape, dtype, channels_last):
    z, r, w, b, dy = case(shape, dtype, channels_last=channels_last)
    out, (mean, invstd, var), grads = fused(z, r, w, b, dy)
    ref, rgrads = torch_float64(z, r, w, b, dy)
    assert out.dtype == dtype and (out == 0).any() and (out > 0).any()
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, ref)
    zd = z.double()
    assert_close(mean, zd.mean((0, 2, 3)))
    assert_close(var, zd.var((0, 2, 3), unbiased=False))
    assert_close(invstd, (zd.var((0, 2, 3), unbiased=False) + 1e-5).rsqrt())
    for name, got, want in zip(("z", "residual", "weight", "bias"), grads, rgrads):
        assert_close(got, want, msg=name)


@pytest.mark.parametrize("shape", SHAPES)
def test_bitwise_the_unfused_sequence(shape):
    z, r, w, b, dy = case(shape, torch.float32, seed=3)
    out, _, grads = fused(z, r, w, b, dy)
    ref, rgrads = unfused_cnnkern(z, r, w, b, dy)
    assert torch.equal(out, ref)
    for got, want in zip(grads, rgrads):
        assert torch.equal(got, want)


def test_same_bits_for_any_thread_count():
    z, r, w, b, dy = case((3, 16, 9, 9), torch.float32, seed=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused(z, r, w, b, dy)
        torch.set_num_threads(2)
        two = fused(z, r, w, b, dy)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0])
    for a, b_ in zip(one[1] + one[2], two[1] + two[2]):
        assert torch.equal(a, b_)


def test_residual_gradient_is_the_masked_grad_out_by_hand():
    # z = [-1, 1] per channel: mean 0, var 1, BN(z) ~ [-1, 1]; residual [0.5, 0.5]:
    # out = relu([-0.5, 1.5]) = [0, 1.5], so the residual's gradient is dy where out > 0.
    z = torch.tensor([-1.0, 1.0], dtype=torch.float64).view(1, 1, 2, 1)
    r = torch.full_like(z, 0.5, requires_grad=True)
    zz = z.clone().requires_grad_()
    out, *_ = ops.bn_add_relu_train(zz, r, None, None, 1e-12)
    torch.testing.assert_close(out.view(-1), torch.tensor([0.0, 1.5], dtype=torch.float64))
    out.backward(torch.tensor([3.0, 7.0], dtype=torch.float64).view(1, 1, 2, 1))
    assert r.grad.view(-1).tolist() == [0.0, 7.0]


def test_bad_residual_names_it():
    z = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="residual must have the size of z"):
        ops.bn_add_relu_train(z, torch.randn(2, 3, 4, 5), None, None, 1e-5)
    with pytest.raises(RuntimeError, match="residual"):
        ops.bn_add_relu_train(z, torch.randn(2, 3, 4, 4, dtype=torch.float64), None, None, 1e-5)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        ops.bn_add_relu_train(z.bfloat16(), z.bfloat16(), None, None, 1e-5)


def conv_args(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=dtype)
    wt = torch.randn(4, 3, 3, 3, generator=g, dtype=dtype)
    gamma = torch.rand(4, generator=g, dtype=dtype) + 0.5
    beta = torch.randn(4, generator=g, dtype=dtype)
    r = torch.randn(2, 4, 6, 6, generator=g, dtype=dtype)
    return x, wt, gamma, beta, r


@pytest.mark.parametrize("training", [True, False])
def test_functional_residual_matches_torch_with_running_stats(training):
    x, wt, gamma, beta, r = conv_args()
    rm, rv = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    out = cnnkern.conv_bn_relu(x, wt, None, gamma, beta, rm, rv, training, 0.1, 1e-5,
                               padding=1, residual=r)
    ref = torch.relu(F.batch_norm(F.conv2d(x, wt, padding=1), rm2, rv2, gamma, beta, training,
                                  0.1, 1e-5) + r)
    assert_close(out, ref)
    assert_close(rm, rm2)
    assert_close(rv, rv2)


def test_functional_residual_bad_arguments():
    x, wt, gamma, beta, r = conv_args()
    with pytest.raises(ValueError, match="residual needs relu=True"):
        cnnkern.conv_bn_relu(x, wt, None, gamma, beta, None, None, True, padding=1,
                             relu=False, residual=r)
    with pytest.raises(ValueError, match=r"residual must match the conv output \(shape \[2, 4, 6, 6\]"):
        cnnkern.conv_bn_relu(x, wt, None, gamma, beta, None, None, True, padding=1,
                             residual=r[:, :3])
    with pytest.raises(TypeError, match="residual must be a Tensor"):
        cnnkern.conv_bn_relu(x, wt, None, gamma, beta, None, None, True, padding=1,
                             residual=1.0)


def test_opcheck():
    # Schema, fake kernel, autograd registration and AOT dispatch of the op.
    z, r, w, b, _ = case((2, 3, 4, 5), torch.float64, seed=7)
    args = (z.requires_grad_(), r.requires_grad_(), w.requires_grad_(), b.requires_grad_(), 1e-5)
    torch.library.opcheck(ops.bn_add_relu_train.default, args)


def test_functional_residual_half_types_run_unfused_and_match_torch():
    # No fused kernel for bfloat16 (it would round the BN value differently): BN, add, relu.
    x, wt, gamma, beta, r = conv_args(seed=2)
    out = cnnkern.conv_bn_relu(x.bfloat16(), wt.bfloat16(), None, gamma.bfloat16(),
                               beta.bfloat16(), None, None, True, padding=1,
                               residual=r.bfloat16())
    ref = torch.relu(F.batch_norm(F.conv2d(x, wt, padding=1), None, None, gamma, beta, True)
                     + r)
    assert out.dtype == torch.bfloat16
    assert_close(out, ref)
