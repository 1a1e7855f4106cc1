"""The CUDA pooling kernels' per-element work, checked on the CPU, NCHW and channels_last.

csrc/core/pool2d_element.h holds everything a CUDA pooling thread computes: the coordinates of
its element in either layout, the window, the max (with torch's index and NaN rule) or the
average of one output, and the gather of one grad_input element over the outputs whose
windows contain it. The tests-only ops torch.ops.cnnkern_testing.pool_emu_* (cpu/pool2d_test_ops.cpp)
run the public ops' bodies (layout choice, output allocation) with those functions element
after element, as the CUDA grid does (outputs NaN-filled first, every read bounds-checked), so
they are compared here with torch.nn.functional on every curated pooling case: values,
indices, and output strides. The CPU channels_last kernels must give bitwise the same results
as these functions (they promise the same order of operations).
"""

import pytest
import torch
import torch.nn.functional as F

from torch._prims_common import suggest_memory_format

import cnnkern  # noqa: F401  (loads the ops)
from conftest import load_testing_ops, assert_close, assert_exact, int_tensor
from shapes import AVG_POOL_CASES, POOL_CASES, adaptive_params, pool_params

ops = load_testing_ops()  # torch.ops.cnnkern_testing
CL = torch.channels_last
LAYOUTS = [pytest.param(torch.contiguous_format, id="nchw"), pytest.param(CL, id="nhwc")]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
AVG_SETTINGS = [
    pytest.param(True, None, id="include_pad"),
    pytest.param(False, None, id="exclude_pad"),
    pytest.param(True, 3, id="divisor3"),
    pytest.param(False, 2, id="divisor2_exclude_pad"),
]


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _max_args(case):
    s = case.stride if case.stride is not None else case.kernel_size
    return (_pair(case.kernel_size), _pair(s), _pair(case.padding), _pair(case.dilation),
            case.ceil_mode)


def _avg_args(case, cip, div):
    s = case.stride if case.stride is not None else case.kernel_size
    return (_pair(case.kernel_size), _pair(s), _pair(case.padding), case.ceil_mode, cip, div)


def _torch_grads(fn, x, g):
    """(output(s), x.grad) from torch with grad_output g."""
    xl = x.detach().clone().requires_grad_(True)
    res = fn(xl)
    (res[0] if isinstance(res, tuple) else res).backward(g)
    return res, xl.grad


def in_layout(t, layout):
    """A copy of t with `layout`'s strides (t.contiguous(memory_format=...) keeps NCHW strides
    where they also count as channels_last, e.g. N x C x 1 x 1, and those suggest NCHW)."""
    return torch.empty(t.shape, dtype=t.dtype, memory_format=layout).copy_(t)


def assert_same_strides(actual, expected, what):
    if expected.numel() == 0:
        return  # no elements, no layout (torch keeps an empty input's strides in places)
    assert actual.stride() == expected.stride(), (
        f"{what}: strides {actual.stride()} != torch's {expected.stride()}")


# ---------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------


def check_max(x, case):
    args = _max_args(case)
    kw = case.max_kwargs()
    ref, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    out, idx = ops.pool_emu_max_pool2d_with_indices(x, *args)
    assert_exact(out, ref, equal_nan=True)
    assert_exact(idx, ref_idx)
    assert_same_strides(out, ref, "output")
    assert_same_strides(idx, ref_idx, "indices")
    g = in_layout(int_tensor(*out.shape, dtype=x.dtype), suggest_memory_format(x))
    _, ref_gx = _torch_grads(lambda t: F.max_pool2d(t, **kw), x, g)
    gx = ops.pool_emu_max_pool2d_backward(g, idx, list(x.shape), *args)
    assert_exact(gx, ref_gx)
    assert_same_strides(gx, ref_gx, "grad_input")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", pool_params())
def test_max_element(case, layout, dtype):
    check_max(in_layout(torch.randn(case.input_shape, dtype=dtype), layout), case)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0]))
def test_max_element_nan_and_ties(case, layout):
    x = int_tensor(*case.input_shape, lo=0, hi=3, dtype=torch.float64)  # many ties
    x[torch.rand(case.input_shape) < 0.15] = float("nan")
    check_max(in_layout(x, layout), case)


def test_max_element_grad_output_in_another_layout():
    # grad_input follows the indices (the forward input's layout), as torch's does; a
    # grad_output in the other layout is read through a copy.
    case = POOL_CASES[4]
    x = in_layout(torch.randn(case.input_shape, dtype=torch.float64), CL)
    args = _max_args(case)
    out, idx = ops.pool_emu_max_pool2d_with_indices(x, *args)
    g = int_tensor(*out.shape, dtype=torch.float64)  # NCHW
    _, ref_gx = _torch_grads(lambda t: F.max_pool2d(t, **case.max_kwargs()), x, g)
    gx = ops.pool_emu_max_pool2d_backward(g, idx, list(x.shape), *args)
    assert_exact(gx, ref_gx)
    assert_same_strides(gx, ref_gx, "grad_input")
    assert ref_gx.is_contiguous(memory_format=CL)


# ---------------------------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count_include_pad, divisor_override", AVG_SETTINGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", pool_params(AVG_POOL_CASES))
def test_avg_element(case, layout, dtype, count_include_pad, divisor_override):
    x = in_layout(torch.randn(case.input_shape, dtype=dtype), layout)
    kw = dict(case.avg_kwargs(), count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    args = _avg_args(case, count_include_pad, divisor_override)
    ref_same_dtype = F.avg_pool2d(x, **kw)
    out = ops.pool_emu_avg_pool2d(x, *args)
    assert_close(out, F.avg_pool2d(x.double(), **kw))
    assert_same_strides(out, ref_same_dtype, "output")
    g = in_layout(torch.randn(out.shape, dtype=dtype), layout)
    _, ref_gx = _torch_grads(lambda t: F.avg_pool2d(t, **kw), x.double(), g.double())
    _, ref_gx_same = _torch_grads(lambda t: F.avg_pool2d(t, **kw), x, g)
    gx = ops.pool_emu_avg_pool2d_backward(g, list(x.shape), *args)
    assert_close(gx, ref_gx)
    assert_same_strides(gx, ref_gx_same, "grad_input")


# ---------------------------------------------------------------------------------------------
# adaptive average pooling
# ---------------------------------------------------------------------------------------------


def _out_hw(H, W, output_size):
    oh, ow = _pair(output_size)
    return [H if oh is None else oh, W if ow is None else ow]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("N, C, H, W, output_size", adaptive_params())
def test_adaptive_element(N, C, H, W, output_size, layout, dtype):
    x = in_layout(torch.randn(N, C, H, W, dtype=dtype), layout)
    out = ops.pool_emu_adaptive_avg_pool2d(x, _out_hw(H, W, output_size))
    assert_close(out, F.adaptive_avg_pool2d(x.double(), output_size))
    assert_same_strides(out, F.adaptive_avg_pool2d(x, output_size), "output")
    g = in_layout(torch.randn(out.shape, dtype=dtype), layout)
    _, ref_gx = _torch_grads(lambda t: F.adaptive_avg_pool2d(t, output_size), x.double(),
                             g.double())
    _, ref_gx_same = _torch_grads(lambda t: F.adaptive_avg_pool2d(t, output_size), x, g)
    gx = ops.pool_emu_adaptive_avg_pool2d_backward(g, list(x.shape))
    assert_close(gx, ref_gx)
    assert_same_strides(gx, ref_gx_same, "grad_input")


# ---------------------------------------------------------------------------------------------
# the CPU channels_last kernels compute what the per-element functions compute
# ---------------------------------------------------------------------------------------------

# Channel counts below, at and past the CPU kernels' vector widths and their 128-channel
# max block.
CL_SHAPES = [(2, 1, 7, 9), (1, 3, 8, 8), (2, 8, 6, 7), (1, 9, 9, 8), (1, 17, 5, 6),
             (1, 130, 5, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CL_SHAPES, ids=str)
@pytest.mark.parametrize("case", pool_params([c for c in POOL_CASES if c.N > 0][::3]))
def test_cpu_channels_last_kernels_bitwise_equal_to_elements(case, shape, dtype, cpu_isa):
    N, C, H, W = shape
    x = torch.randn(N, C, H + case.H, W + case.W, dtype=dtype)
    x[torch.rand(x.shape) < 0.05] = float("nan")
    x = in_layout(x, CL)
    assert suggest_memory_format(x) == CL  # the channels_last kernels run, even with C = 1
    args = _max_args(case)
    out, idx = torch.ops.cnnkern.max_pool2d_with_indices(x, *args)
    e_out, e_idx = ops.pool_emu_max_pool2d_with_indices(x, *args)
    assert_exact(out, e_out, equal_nan=True)
    assert_exact(idx, e_idx)
    g = in_layout(torch.randn(out.shape, dtype=dtype), CL)
    assert_exact(torch.ops.cnnkern.max_pool2d_backward(g, idx, list(x.shape), *args),
                 ops.pool_emu_max_pool2d_backward(g, idx, list(x.shape), *args))
    x = x.nan_to_num(0.5)
    if case.dilation == 1:
        a_args = _avg_args(case, False, None)
        a = torch.ops.cnnkern.avg_pool2d(x, *a_args)
        assert_exact(a, ops.pool_emu_avg_pool2d(x, *a_args))
        assert_exact(torch.ops.cnnkern.avg_pool2d_backward(g, list(x.shape), *a_args),
                     ops.pool_emu_avg_pool2d_backward(g, list(x.shape), *a_args))
    size = [max(1, x.shape[2] // 2), max(1, (x.shape[3] * 2) // 3)]
    a = torch.ops.cnnkern.adaptive_avg_pool2d(x, size)
    assert_exact(a, ops.pool_emu_adaptive_avg_pool2d(x, size))
    ga = in_layout(torch.randn(a.shape, dtype=dtype), CL)
    assert_exact(torch.ops.cnnkern.adaptive_avg_pool2d_backward(ga, list(x.shape)),
                 ops.pool_emu_adaptive_avg_pool2d_backward(ga, list(x.shape)))


def test_max_element_grad_ignores_indices_outside_the_plane():
    # The gather compares stored indices with its own element's position, so an index
    # outside the plane matches nothing and never addresses memory.
    g = torch.ones(1, 2, 2, 2, dtype=torch.float64)
    idx = torch.full((1, 2, 2, 2), 99, dtype=torch.int64)
    gx = ops.pool_emu_max_pool2d_backward(g, idx, [1, 2, 4, 4], [2, 2], [2, 2], [0, 0], [1, 1],
                                           False)
    assert torch.equal(gx, torch.zeros(1, 2, 4, 4, dtype=torch.float64))

