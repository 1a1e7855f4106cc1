"""bn_relu_backward with a grad_out that is a channel slice of a bigger tensor, as torch.cat's
backward hands each branch of an inception module: the CPU kernels read it as it is (each
(image, channel) plane contiguous, images further apart), without the contiguous copy the op
made before. Same bits as with a contiguous grad_out; reference: torch's batch_norm + relu
backward in float64. Other strided grad_outs (not plane-contiguous) are still copied.
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern  # noqa: F401  (loads torch.ops.cnnkern)
from conftest import assert_close

OPS = torch.ops.cnnkern


def reference_grads(z, gamma, beta, dy, eps, relu):
    """(grad_z, grad_gamma, grad_beta) of relu(batch_norm(z)) by torch's autograd, float64."""
    z64 = z.double().requires_grad_()
    g64, b64 = gamma.double().requires_grad_(), beta.double().requires_grad_()
    out = F.batch_norm(z64, None, None, g64, b64, training=True, eps=eps)
    if relu:
        out = F.relu(out)
    return torch.autograd.grad(out, (z64, g64, b64), dy.double())


def run(dy, z, gamma, beta, eps, relu):
    _, mean, invstd, _ = OPS.bn_relu_train(z, gamma, beta, eps, relu)
    return OPS.bn_relu_backward(dy, z, mean, invstd, gamma, beta, relu)


def channel_slice(shape, first, extra, dtype):
    """A grad_out of `shape` cut out of a tensor with `extra` more channels, starting at
    channel `first` (not contiguous when extra > 0 and the batch has several images)."""
    n, k, h, w = shape
    big = torch.randn(n, k + extra, h, w, dtype=dtype)
    return big[:, first:first + k]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "norelu"])
@pytest.mark.parametrize("shape, first, extra", [((4, 6, 7, 9), 3, 10),    # middle branch
                                                 ((3, 5, 14, 14), 0, 7),   # first branch
                                                 ((2, 8, 1, 1), 8, 8),     # 1x1 planes
                                                 ((1, 4, 5, 5), 2, 4)])    # one image
def test_channel_slice_grad_matches_contiguous_and_torch(dtype, relu, shape, first, extra):
    torch.manual_seed(7)
    eps = 1e-5
    z = torch.randn(shape, dtype=dtype) * 2 + 0.5
    gamma = torch.rand(shape[1], dtype=dtype) + 0.5
    beta = torch.randn(shape[1], dtype=dtype) * 0.3
    dy = channel_slice(shape, first, extra, dtype)
    assert dy.is_contiguous() == (shape[0] == 1)
    got = run(dy, z, gamma, beta, eps, relu)
    same = run(dy.contiguous(), z, gamma, beta, eps, relu)
    for a, b in zip(got, same):   # bit for bit: the same sums in the same order
        assert torch.equal(a, b)
    for a, r in zip(got, reference_grads(z, gamma, beta, dy, eps, relu)):
        assert_close(a, r)
    assert got[0].is_contiguous()


def test_channel_slice_is_read_without_a_copy():
    torch.manual_seed(8)
    z = torch.randn(8, 16, 14, 14)
    gamma, beta = torch.rand(16) + 0.5, torch.randn(16)
    _, mean, invstd, _ = OPS.bn_relu_train(z, gamma, beta, 1e-5, True)
    dy = channel_slice(z.shape, 16, 32, torch.float32)
    with torch.profiler.profile() as prof:
        OPS.bn_relu_backward(dy, z, mean, invstd, gamma, beta, True)
    names = {e.name for e in prof.events()}
    assert not names & {"aten::contiguous", "aten::clone", "aten::copy_"}, names
    # A grad_out that is not plane-contiguous (every other column) is copied, and still right.
    dy2 = torch.randn(8, 16, 14, 28)[..., ::2]
    with torch.profiler.profile() as prof:
        got = OPS.bn_relu_backward(dy2, z, mean, invstd, gamma, beta, True)
    assert "aten::clone" in {e.name for e in prof.events()}
    for a, b in zip(got, OPS.bn_relu_backward(dy2.contiguous(), z, mean, invstd, gamma, beta,
                                              True)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_channel_slice_matches_contiguous(dtype):
    torch.manual_seed(9)
    z = (torch.randn(3, 4, 6, 6) * 2).to(dtype)
    gamma, beta = (torch.rand(4) + 0.5).to(dtype), torch.randn(4).to(dtype)
    dy = channel_slice(z.shape, 1, 5, dtype)
    for a, b in zip(run(dy, z, gamma, beta, 1e-5, True),
                    run(dy.contiguous(), z, gamma, beta, 1e-5, True)):
        assert torch.equal(a, b)
