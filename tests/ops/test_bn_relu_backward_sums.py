"""The float32 sums of bn_relu_backward on the CPU (csrc/cpu/bn_relu/bn_relu_core_impl.h):
summed in float in blocks of 32 steps of 8 values, each block added to double lanes. Planes of
several blocks, a partial block and a tail; channels_last rows; a mean far from zero and a
gradient with a mean of its own (large sums of large terms). Reference: the op's definition
(sum_g = sum g, sum_gx = sum g * (z - mean) about the mean it is given, times invstd for
grad_gamma) in float64.
"""

import pytest
import torch

import cnnkern  # noqa: F401  (loads torch.ops.cnnkern)

OPS = torch.ops.cnnkern

# 37 x 45 = 1665 values a plane: 6 full blocks of 256, a partial block and one value of tail.
SHAPES = [pytest.param((2, 3, 37, 45), torch.contiguous_format, id="nchw-blocks-tail"),
          pytest.param((3, 12, 20, 21), torch.channels_last, id="channels_last")]


@pytest.mark.parametrize("shape, layout", SHAPES)
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "norelu"])
def test_float32_sums_near_double_with_a_far_mean(shape, layout, relu, cpu_isa):
    torch.manual_seed(4)
    eps = 1e-5
    # The mean (3e4) is far from the spread (1) and dy has mean 1: the terms of sum g are
    # all about 1, those of sum g * (z - mean) large and of both signs.
    z = (torch.randn(shape) + 3e4).contiguous(memory_format=layout)
    dy = (torch.randn(shape) + 1.0).contiguous(memory_format=layout)
    K = shape[1]
    gamma, beta = torch.rand(K) + 0.5, torch.randn(K) * 0.3
    _, mean, invstd, _ = OPS.bn_relu_train(z, gamma, beta, eps, relu)
    gz, g_gamma, g_beta = OPS.bn_relu_backward(dy, z, mean, invstd, gamma, beta, relu)
    assert gz.is_contiguous(memory_format=layout)
    # grad_z is not compared here: its pass takes the float32 mean, 1e-3 off the exact one at
    # this offset, for any sums (tests/ops/test_fused.py compares it at ordinary offsets).
    # The sums against the scale of their terms: blocks of 32 float additions stay within a
    # few 1e-6 of it (float32 eps 1.2e-7 x 32 at worst). The mask is the forward's own.
    zc = z.double() - mean.double()[None, :, None, None]
    g = dy.double()
    if relu:
        out = OPS.bn_relu_train(z, gamma, beta, eps, relu)[0]
        g = torch.where(out > 0, g, 0)
    ref_gamma = (g * zc).sum((0, 2, 3)) * invstd.double()
    ref_beta = g.sum((0, 2, 3))
    scale_gamma = (g * zc).abs().sum((0, 2, 3)) * invstd.double()
    scale_beta = g.abs().sum((0, 2, 3))
    assert ((g_gamma.double() - ref_gamma).abs() <= 4e-6 * scale_gamma).all(), \
        (g_gamma, ref_gamma)
    assert ((g_beta.double() - ref_beta).abs() <= 4e-6 * scale_beta).all(), (g_beta, ref_beta)
