"""The CUDA direct convolution's forward kernels (csrc/cuda/conv2d_direct.cu, tiled as
csrc/core/direct_tile.h plans), on a GPU and in the CUDA emulator, against
torch.nn.functional.conv2d in float64.

The shapes are larger than the curated matrix's (tests/shapes.py) so that every tile edge is
crossed: outputs over 16 x 16 and not a multiple of it (partial spatial tiles), more than 32
output channels and not a multiple of 32 (a partial channel block), more than 8 input channels
per group and not a multiple of 8 (a partial shared-memory stage). Each case names the kernel
variant it must run, and the test checks that the backend's plan (cnnkern.explain's workspace
text) chose it, so a change of plan cannot silently leave a variant untested.

- float32/float64 with integer-valued inputs: every partial sum is an integer below 2**24, so
  the result must equal the float64 reference exactly, whatever the summation order;
- float16/bfloat16: flash-attention's rule (error against float64 at most K_LOWP times
  torch's own error in that dtype, plus one eps of the output's scale).
"""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import CUDA_DEVICES, assert_exact, check_conv_low_precision, int_tensor
from shapes import ConvCase

HALO_UNIT = "3x3 stride 1 (halo tile)"
HALO_STRIDED = "3x3 strided/dilated (halo tile)"
TAPS = "one tap per stage (any RxS, 1x1)"
K_LOWP = 3.0


@dataclass(frozen=True)
class Case:
    conv: ConvCase
    kernel: str  # the variant the plan must choose


# fmt: off
CASES = [
    #                id                            N   C   H   W   K   R  S  stride  padding  dilation groups
    Case(ConvCase("3x3_s1_partial_tiles_and_stages", 2, 13, 20, 19, 40, 3, 3, 1,      1,       1,       1), HALO_UNIT),
    Case(ConvCase("3x3_s1_valid_wide",               1,  3, 18, 35,  5, 3, 3, 1,      0,       1,       1), HALO_UNIT),
    Case(ConvCase("3x3_s1_groups2",                  1,  6, 17, 17,  8, 3, 3, 1,      1,       1,       2), HALO_UNIT),
    Case(ConvCase("3x3_s1_depthwise",                1,  5, 17,  9,  5, 3, 3, 1,      1,       1,       5), HALO_UNIT),
    Case(ConvCase("3x3_s2",                          2,  9, 35, 33, 36, 3, 3, 2,      1,       1,       1), HALO_STRIDED),
    Case(ConvCase("3x3_dilation2",                   1,  4, 21, 20,  6, 3, 3, 1,      2,       2,       1), HALO_STRIDED),
    Case(ConvCase("3x3_asym_stride_dilation",        1, 10, 19, 23,  4, 3, 3, (2, 1), (1, 2),  (1, 2),  2), HALO_STRIDED),
    # A halo tile of (15*7 + 18 + 1)^2 pixels does not fit one channel in shared memory.
    Case(ConvCase("3x3_huge_dilation_runs_taps",     1,  3, 40, 40,  2, 3, 3, 7,      9,       9,       1), TAPS),
    Case(ConvCase("1x1",                             2, 20, 17, 18, 36, 1, 1, 1,      0,       1,       1), TAPS),
    Case(ConvCase("1x1_stride2_pad1",                1,  6, 17, 18,  4, 1, 1, 2,      1,       1,       1), TAPS),
    Case(ConvCase("5x5_groups2",                     1,  4, 30, 21,  4, 5, 5, 1,      2,       1,       2), TAPS),
    Case(ConvCase("7x7_stride2",                     1,  3, 37, 36,  8, 7, 7, 2,      3,       1,       1), TAPS),
]
# fmt: on
CASE_PARAMS = [pytest.param(c, id=c.conv.id) for c in CASES]
# One case per variant, for the tests that need not run every shape.
ONE_PER_KERNEL = [pytest.param(c, id=c.conv.id) for c in
                  {c.kernel: c for c in reversed(CASES)}.values()]
EXACT_DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
LOWP = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
LAYOUTS = [pytest.param(torch.contiguous_format, id="nchw"),
           pytest.param(torch.channels_last, id="channels_last")]


def _explain_ops(dev):
    """The op library of the backend under test: the emulated build's or cnnkern's own."""
    return torch.ops.cnnkern_emu if dev.emulated else torch.ops.cnnkern


def planned_kernel(dev, conv, dtype):
    """The direct forward kernel variant the backend's plan runs for `conv` in `dtype`."""
    st, pad, dil = (torch.nn.modules.utils._pair(v) for v in
                    (conv.stride, conv.padding, conv.dilation))
    _, names, why_not, _, _, what = _explain_ops(dev).conv2d_explain(
        list(conv.input_shape), list(conv.weight_shape), st, pad, dil, conv.groups, dtype,
        "cuda", "fwd")
    i = names.index("direct")
    assert why_not[i] == "", why_not[i]
    return what[i].split("kernel ", 1)[1]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", EXACT_DTYPES)
@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_forward_exact_on_integer_inputs(case, dtype, layout, dev):
    c = case.conv
    assert planned_kernel(dev, c, dtype) == case.kernel
    x = int_tensor(*c.input_shape, dtype=dtype, device=dev.device).to(memory_format=layout)
    w = int_tensor(*c.weight_shape, dtype=dtype, device=dev.device)
    b = int_tensor(c.K, dtype=dtype, device=dev.device)
    y = cnnkern.conv2d(x, w, b, algo="direct", **c.kwargs())
    ref = F.conv2d(x.double(), w.double(), b.double(), **c.kwargs())
    assert y.shape == c.output_shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=layout)
    assert_exact(y, ref.to(dtype))


@pytest.mark.parametrize("dtype", LOWP)
@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_forward_low_precision_error_vs_torch(case, dtype, dev):
    c = case.conv
    assert planned_kernel(dev, c, dtype) == case.kernel
    check_conv_low_precision(c, dtype, dev.device, K_LOWP)


@pytest.mark.parametrize("case", ONE_PER_KERNEL)
@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_relu_epilogue_and_no_bias(case, dev):
    """conv2d_relu (the fused-BN eval path) clamps in each variant's epilogue; without a bias
    nothing is added."""
    c = case.conv
    x = int_tensor(*c.input_shape, device=dev.device)
    w = int_tensor(*c.weight_shape, device=dev.device)
    st, pad, dil = (torch.nn.modules.utils._pair(v) for v in (c.stride, c.padding, c.dilation))
    y = torch.ops.cnnkern.conv2d_relu(x, w, None, st, pad, dil, c.groups, "direct")
    ref = F.conv2d(x.double(), w.double(), None, **c.kwargs())
    assert (ref < 0).any() and (ref > 0).any()  # the clamp has something to do
    assert_exact(y, ref.clamp_min(0).float())


@pytest.mark.parametrize("case", ONE_PER_KERNEL)
@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_forward_is_bitwise_deterministic(case, dev):
    """Each output is summed in one fixed order whatever the thread and block schedule (the
    emulator runs the second call in another order)."""
    c = case.conv
    x = torch.randn(c.input_shape, device=dev.device)
    w = torch.randn(c.weight_shape, device=dev.device)
    first = cnnkern.conv2d(x, w, algo="direct", **c.kwargs())
    dev.reorder()
    second = cnnkern.conv2d(x, w, algo="direct", **c.kwargs())
    assert torch.equal(first, second)


@pytest.mark.parametrize("input_size, weight_size, what", [
    ((1, 1, 50000, 50000), (1, 1, 1, 1), "an input or output plane of 2^31 elements or more"),
    ((1, 1 << 23, 4, 4), (1, 1 << 23, 3, 3), "2^26 or more weights per filter"),
], ids=["plane", "filter"])
@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_refuses_problems_beyond_32_bit_offsets(input_size, weight_size, what, dev):
    """The kernels index within a plane in 32 bits: a problem where that could overflow is
    refused, by the rules and by the op, with the reason. The tensors are one element
    expanded (the op refuses before it makes anything contiguous)."""
    reason = dev.why_not(input_size, weight_size, [1, 1], [0, 0], [1, 1], 1, torch.float32,
                         "direct")
    assert "32 bits" in reason and what in reason, reason
    x = torch.zeros(1, 1, 1, 1, device=dev.device).expand(input_size)
    w = torch.zeros(1, 1, 1, 1, device=dev.device).expand(weight_size)
    with pytest.raises(RuntimeError, match="32 bits") as e:
        cnnkern.conv2d(x, w, algo="direct")
    assert what in str(e.value)
