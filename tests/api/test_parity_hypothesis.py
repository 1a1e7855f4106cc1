"""Random calls of cnnkern's five functions against torch.nn.functional (hypothesis).

Valid calls: every way torch takes each argument (an int, a 1- or 2-tuple, a list; stride
None, () or [] for pooling; padding "same"/"valid" with even kernels and dilation; output
sizes with None), inputs batched, unbatched or with an empty batch, and tensors contiguous,
channels_last, every other column of a wider tensor, or transposed views. Each must match
torch in value, gradient and layout (outputs and gradients with torch's strides).

Invalid calls: a valid call with one argument broken (a value, a type, a length, a rank, a
size, a dtype); torch must reject it (else the generator is wrong) and cnnkern must too, naming
the function and the argument (the rule: test_parity_common.py).

Profiles (tests/conftest.py): "ci" by default, and a deeper search:
    CNNKERN_HYPOTHESIS_PROFILE=long pytest tests/api/test_parity_hypothesis.py --hypothesis-seed=1
"""

from __future__ import annotations

import copy

import pytest
import torch

from test_parity_common import (FUNCTIONS, assert_rejected_like_torch, assert_same_memory_format,
                                assert_same_values, mean_path_quirk, run_function)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

ints = st.integers
LAYOUTS = ["contiguous", "channels_last", "strided", "transposed"]

# ---------------------------------------------------------------------------------------------
# A case: plain values (what hypothesis prints for a failing example); tensors are made from it
# ---------------------------------------------------------------------------------------------


def _make(shape, layout, gen, dtype=torch.float64):
    """A tensor of `shape` requiring grad, laid out as `layout`: a leaf (contiguous,
    channels_last) or a view of a leaf (strided: every other column of a wider tensor;
    transposed: the last two dimensions of a tensor swapped)."""
    shape = list(shape)
    if layout == "strided" and len(shape) >= 2:
        base = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen, dtype=dtype)
        return base.requires_grad_()[..., ::2]
    if layout == "transposed" and len(shape) >= 2:
        base = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=gen, dtype=dtype)
        return base.requires_grad_().transpose(-1, -2)
    t = torch.randn(*shape, generator=gen, dtype=dtype)
    if layout == "channels_last" and len(shape) in (3, 4):
        t4 = t.unsqueeze(0) if len(shape) == 3 else t
        t4 = t4.contiguous(memory_format=torch.channels_last)
        t = t4.squeeze(0) if len(shape) == 3 else t4
    return t.requires_grad_()


def build(case):
    """(positional args, kwargs) of the call `case` describes: input, and for convolution weight
    and bias (each a (shape, layout, dtype name) or None)."""
    gen = torch.Generator().manual_seed(case["seed"])
    args = []
    for key in ("input", "weight", "bias"):
        if key in case:
            spec = case[key]
            args.append(None if spec is None else
                        _make(spec[0], spec[1], gen, getattr(torch, spec[2])))
    return tuple(args), dict(case["kwargs"])


def _spec(shape, layout, dtype="float64"):
    return (tuple(shape), layout, dtype)


@st.composite
def int_pair(draw, lo, hi, one=True):
    """(value as written, the pair it means): an int, a 1-tuple, a 2-tuple or a 2-list."""
    a, b = draw(ints(lo, hi)), draw(ints(lo, hi))
    form = draw(st.sampled_from(["int", "tuple", "list"] + (["one"] if one else [])))
    return {"int": (a, (a, a)), "one": ((a,), (a, a)), "tuple": ((a, b), (a, b)),
            "list": ([a, b], (a, b))}[form]


@st.composite
def batch(draw, C, H, W):
    """The input's shape: unbatched (C, H, W), an empty batch, or a batch of 1 or 2."""
    n = draw(st.sampled_from([None, 0, 1, 2]))
    return (C, H, W) if n is None else (n, C, H, W)


def _written(draw, pair):
    """A pair as one of the ways torch takes it: a 2-list or 2-tuple, or when both are the same
    an int or a 1-tuple."""
    a, b = pair
    forms = [[a, b], (a, b)] + ([a, (a,)] if a == b else [])
    return draw(st.sampled_from(forms))


@st.composite
def conv2d_case(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    C, K = g * draw(ints(1, 3)), g * draw(ints(1, 3))
    R, S, H, W = draw(ints(1, 4)), draw(ints(1, 4)), draw(ints(1, 9)), draw(ints(1, 9))
    dilation_v, dilation = draw(int_pair(1, 3))
    if draw(st.booleans()):  # "same" (stride 1, however written) or "valid"
        padding_v = draw(st.sampled_from(["same", "valid"]))
        stride_v = draw(st.sampled_from([1, (1,), (1, 1), [1, 1]]))
        pad = (0, 0)
        if padding_v == "valid":
            stride_v, _ = draw(int_pair(1, 3))
    else:
        padding_v, pad = draw(int_pair(0, 3))
        stride_v, _ = draw(int_pair(1, 3))
    if padding_v != "same":
        assume(H + 2 * pad[0] >= dilation[0] * (R - 1) + 1)
        assume(W + 2 * pad[1] >= dilation[1] * (S - 1) + 1)
    return dict(name="conv2d", seed=draw(ints(0, 2**16)),
                input=_spec(draw(batch(C, H, W)), draw(st.sampled_from(LAYOUTS))),
                weight=_spec((K, C // g, R, S), draw(st.sampled_from(LAYOUTS))),
                bias=_spec((K,), "contiguous") if draw(st.booleans()) else None,
                kwargs=dict(stride=stride_v, padding=padding_v, dilation=dilation_v, groups=g))


@st.composite
def conv_transpose2d_case(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    C, k = g * draw(ints(1, 3)), draw(ints(1, 3))
    R, S, H, W = draw(ints(1, 4)), draw(ints(1, 4)), draw(ints(1, 6)), draw(ints(1, 6))
    stride_v, stride = draw(int_pair(1, 3))
    dilation_v, dilation = draw(int_pair(1, 3))
    padding_v, pad = draw(int_pair(0, 3))
    # below the stride or (the case the grad-input op cannot size) only below the dilation
    op = tuple(draw(ints(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    for i, (n, r) in enumerate(((H, R), (W, S))):
        assume((n - 1) * stride[i] - 2 * pad[i] + dilation[i] * (r - 1) + op[i] + 1 >= 1)
    return dict(name="conv_transpose2d", seed=draw(ints(0, 2**16)),
                input=_spec(draw(batch(C, H, W)), draw(st.sampled_from(LAYOUTS))),
                weight=_spec((C, k, R, S), draw(st.sampled_from(LAYOUTS))),
                bias=_spec((k * g,), "contiguous") if draw(st.booleans()) else None,
                kwargs=dict(stride=stride_v, padding=padding_v, output_padding=_written(draw, op),
                            groups=g, dilation=dilation_v))


@st.composite
def pool_stride(draw):
    """Pooling's stride as written: omitted, None, () or [] (all: the kernel size), or given."""
    form = draw(st.sampled_from(["omitted", None, (), [], "given", "given"]))
    return draw(int_pair(1, 3))[0] if form == "given" else form


@st.composite
def _pool_common(draw, name, dilated):
    kernel_v, k = draw(int_pair(1, 4))
    dilation_v, d = draw(int_pair(1, 3)) if dilated else (None, (1, 1))
    # torch: padding at most half the kernel (undilated: the tighter of its two rules)
    eff = [(k[i] - 1) * d[i] + 1 for i in range(2)]
    pad = tuple(draw(ints(0, k[i] // 2)) for i in range(2))
    # mostly inputs at least one window big; smaller ones torch takes only with ceil_mode (the
    # window hangs past the input's end) or rejects ("output too small": an error case)
    C = draw(ints(1, 3))
    H, W = (draw(ints(max(1, eff[i] - 2 * pad[i] - draw(ints(0, 2))), eff[i] + 6))
            for i in range(2))
    kwargs = dict(kernel_size=kernel_v, padding=_written(draw, pad),
                  ceil_mode=draw(st.booleans()))
    stride = draw(pool_stride())
    if stride != "omitted":
        kwargs["stride"] = stride
    if dilated:
        kwargs["dilation"] = dilation_v
    return dict(name=name, seed=draw(ints(0, 2**16)),
                input=_spec(draw(batch(C, H, W)), draw(st.sampled_from(LAYOUTS))),
                kwargs=kwargs)


@st.composite
def max_pool2d_case(draw):
    case = draw(_pool_common("max_pool2d", dilated=True))
    case["kwargs"]["return_indices"] = draw(st.booleans())
    return case


@st.composite
def avg_pool2d_case(draw):
    case = draw(_pool_common("avg_pool2d", dilated=False))
    case["kwargs"]["count_include_pad"] = draw(st.booleans())
    case["kwargs"]["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, -2]))
    return case


@st.composite
def adaptive_avg_pool2d_case(draw):
    C, H, W = draw(ints(1, 3)), draw(ints(1, 10)), draw(ints(1, 10))
    a, b = draw(ints(0, 12)), draw(ints(0, 12))
    size = draw(st.sampled_from([a, (a, b), [a, b], (None, b), (a, None), (None, None)]))
    return dict(name="adaptive_avg_pool2d", seed=draw(ints(0, 2**16)),
                input=_spec(draw(batch(C, H, W)), draw(st.sampled_from(LAYOUTS))),
                kwargs=dict(output_size=size))


CASES = {"conv2d": conv2d_case, "conv_transpose2d": conv_transpose2d_case,
         "max_pool2d": max_pool2d_case, "avg_pool2d": avg_pool2d_case,
         "adaptive_avg_pool2d": adaptive_avg_pool2d_case}

# ---------------------------------------------------------------------------------------------
# Valid calls
# ---------------------------------------------------------------------------------------------


def _as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v) * (2 // len(v))


def _window_in_padding(x, kwargs, out):
    """Whether a max-pool window has every tap in the padding (possible with dilation)."""
    k = _as_pair(kwargs["kernel_size"])
    s = kwargs.get("stride")
    s = k if s in (None, (), []) else _as_pair(s)
    p, d = _as_pair(kwargs["padding"]), _as_pair(kwargs["dilation"])
    for i in range(2):
        n = x.shape[-2 + i]
        for w in range(out.shape[-2 + i]):
            if all(not 0 <= w * s[i] - p[i] + j * d[i] < n for j in range(k[i])):
                return True
    return False


def _runs(case):
    """(torch's Run, cnnkern's Run); examples torch rejects (the strategies' bounds are looser
    than torch's rules in places, e.g. a ceil_mode output size) are not valid calls: skipped.
    So are max-pool windows entirely in the padding: torch's index there points outside the
    plane and its backward writes through it, past the tensor's end (a heap corruption that
    takes the process down); cnnkern passes no gradient: test_parity_edges.py has them."""
    args, kwargs = build(case)
    ref_fn = FUNCTIONS[case["name"]][0]
    try:
        out = ref_fn(*args, **kwargs)
    except RuntimeError:
        assume(False)
    if case["name"] == "max_pool2d":
        out = out[0] if isinstance(out, tuple) else out
        assume(not _window_in_padding(args[0], kwargs, out))
    return run_function(case["name"], args, kwargs, case["seed"])


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_valid_calls_match_torch(name):
    @given(case=CASES[name]())
    def check(case):
        assert_same_values(*_runs(case), name)

    check()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_valid_calls_memory_format_matches_torch(name):
    @given(case=CASES[name]())
    def check(case):
        ref, got = _runs(case)
        quirk = mean_path_quirk(name, case["kwargs"].get("output_size"), case["input"][0])
        assert_same_memory_format(ref, got, name, ignore=quirk)

    check()


# ---------------------------------------------------------------------------------------------
# Invalid calls: a valid case with one argument broken
# ---------------------------------------------------------------------------------------------
# Each breaker takes (case, draw), breaks one thing in the (copied) case and returns the
# argument names a message may name for it (more than one where the rule ties two together).

def _set(key, *values):
    """Breaks kwargs[key]: one of `values` (a bad value, type or length)."""
    def brk(case, draw):
        case["kwargs"][key] = draw(st.sampled_from(values))
        return [key]
    return brk


def _resize(which, dim=None, delta=None, rank=None, names=None):
    """Breaks a tensor's shape: size `dim` + delta, or another rank."""
    def brk(case, draw):
        shape, layout, dtype = case[which]
        shape = list(shape)
        if rank is not None:
            r = draw(st.sampled_from(rank))
            shape = (shape + [2] * 5)[:r] if r > len(shape) else shape[len(shape) - r:]
        else:
            d = dim if dim >= 0 else len(shape) + dim
            shape[d] = max(0, shape[d] + delta) if delta != "zero" else 0
        case[which] = (tuple(shape), layout, dtype)
        return names or [which]
    return brk


def _retype(which, dtype):
    """Breaks a tensor's dtype."""
    def brk(case, draw):
        shape, layout, _ = case[which]
        case[which] = (shape, layout, dtype)
        return [which]
    return brk


def _need_bias(brk):
    """brk, on a call that has a bias (a valid one, out_channels long, where it had none)."""
    def with_bias(case, draw):
        if case.get("bias") is None:
            w, groups = case["weight"][0], case["kwargs"]["groups"]
            out_channels = w[1] * groups if case["name"] == "conv_transpose2d" else w[0]
            case["bias"] = _spec((out_channels,), "contiguous")
        return brk(case, draw)
    return with_bias


def _without_bias(brk):
    """brk (of the weight's rank) on a call without bias, whose size is relative to the weight:
    one broken argument. (With a bias of the old weight's size, cnnkern.conv2d's op checks the
    bias first and blames it; torch blames the weight.)"""
    def no_bias(case, draw):
        case["bias"] = None
        return brk(case, draw)
    return no_bias


def _numeric_padding(brk):
    """brk, on a call with padding 0 instead of "same"/"valid" (the input grown to fit the
    dilated kernel): torch skips its bias dtype check with string padding and accepts."""
    def numeric(case, draw):
        kw = case["kwargs"]
        if isinstance(kw["padding"], str):
            kw["padding"] = 0
            d = kw["dilation"]
            d = [d, d] if isinstance(d, int) else list(d) * (2 // len(d))
            shape, layout, dtype = case["input"]
            R, S = case["weight"][0][2:]
            shape = shape[:-2] + (max(shape[-2], d[0] * (R - 1) + 1),
                                  max(shape[-1], d[1] * (S - 1) + 1))
            case["input"] = (shape, layout, dtype)
        return brk(case, draw)
    return numeric


def _groups_not_dividing(case, draw):
    C = case["weight"][0][0] if case["name"] == "conv_transpose2d" else case["input"][0][-3]
    case["kwargs"]["groups"] = draw(st.sampled_from([g for g in range(2, C + 3) if C % g]))
    return ["groups"]


def _pool_output_too_small(case, draw):
    """The kernel wider than the padded input (no padding: then nothing fits)."""
    kw = case["kwargs"]
    shape = list(case["input"][0])
    kw["padding"] = 0
    kw["ceil_mode"] = False  # with it, a window may hang past the input's end
    kw["kernel_size"] = (shape[-2] + 1, draw(ints(1, shape[-1])))
    kw.pop("stride", None)
    kw.pop("dilation", None)
    return ["input", "kernel_size"]


def _not_a_mean(brk):
    """brk (a broken input) with an adaptive output size other than 1 x 1: torch computes that
    one as input.mean((-2, -1)) without its checks, so it takes an empty plane (giving NaN)
    or a 2-D input; cnnkern rejects those whatever the output size."""
    def other_size(case, draw):
        names = brk(case, draw)
        case["kwargs"]["output_size"] = draw(st.sampled_from([2, (2, 3)]))
        return names
    return other_size


CONV_BREAKERS = [
    _set("stride", 0, -1, (1, 0), 1.5, (1, 2.0), (1, 1, 1), (), True),
    _set("dilation", 0, (2, -1), 2.0, (1, 1, 1)),
    _set("groups", 0, -2, 1.0, True),
    _groups_not_dividing,
    _without_bias(_resize("weight", rank=[2, 3, 5])),
    _resize("input", rank=[1, 2, 5]),
    _resize("input", dim=-3, delta=1, names=["input", "weight"]),  # channels != the weight's
    _retype("weight", "float32"),
    _need_bias(_resize("bias", dim=0, delta=1)),
    _need_bias(_resize("bias", rank=[2])),
]
BREAKERS = {
    "conv2d": CONV_BREAKERS + [
        _set("padding", -1, (0, -2), "full", 1.5, (1, 1, 1)),
        _need_bias(_numeric_padding(_retype("bias", "float32"))),
        _resize("input", dim=-2, delta="zero"),
    ],
    "conv_transpose2d": CONV_BREAKERS + [
        _set("padding", -1, (0, -2), "same", 1.5, (1, 1, 1)),
        _set("padding", 50),  # the output would be smaller than nothing
        _set("output_padding", -1, (0, -1), 1.5, (1, 1, 1), ()),
        _set("output_padding", 3),  # with stride and dilation of at most 3: never below both
        _resize("input", dim=-1, delta="zero"),
    ],
    "max_pool2d": [
        _set("kernel_size", 0, (2, 0), -1, 2.0, (2, 2, 2), (), True),
        _set("stride", 0, (1, -1), 1.5, (1, 1, 1)),
        _set("padding", -1, (0, -1), 3, 1.5, (1, 1, 1)),  # 3: more than half of any kernel <= 4
        _set("dilation", 0, (1, -1), 1.5, (1, 1, 1)),
        _set("ceil_mode", 1, None, "yes"),
        _resize("input", rank=[1, 2, 5]),
        _resize("input", dim=-3, delta="zero"),
        _pool_output_too_small,
    ],
    "avg_pool2d": [
        _set("kernel_size", 0, (2, 0), -1, 2.0, (2, 2, 2), (), True),
        _set("stride", 0, (1, -1), 1.5, (1, 1, 1)),
        _set("padding", -1, (0, -1), 3, 1.5, (1, 1, 1)),
        _set("ceil_mode", 1, None),
        _set("count_include_pad", 0, None),
        _set("divisor_override", 0, 1.5, True),
        _resize("input", rank=[1, 2, 5]),
        _resize("input", dim=-1, delta="zero"),
        _pool_output_too_small,
    ],
    "adaptive_avg_pool2d": [
        _set("output_size", -1, (2, -1), (3,), (1, 2, 3), (), 2.0, "2"),
        _not_a_mean(_resize("input", rank=[1, 2, 5])),
        _not_a_mean(_resize("input", dim=-2, delta="zero")),
    ],
}


def _accepted(case):
    args, kwargs = build(case)
    try:
        FUNCTIONS[case["name"]][0](*args, **kwargs)
    except RuntimeError:
        return False
    return True


@st.composite
def invalid_case(draw, name):
    """A call torch accepts with one argument broken, and the names the message may use. With
    a batch: on an empty one torch skips most checks (it takes dilation=0 or output_padding=3
    there); cnnkern checks the arguments whatever the batch."""
    case = draw(CASES[name]())
    shape, layout, dtype = case["input"]
    if len(shape) == 4 and shape[0] == 0:
        case["input"] = ((1,) + shape[1:], layout, dtype)
    assume(_accepted(case))  # the strategies' bounds are looser than torch's rules in places
    case = copy.deepcopy(case)
    names = draw(st.sampled_from(BREAKERS[name]))(case, draw)
    return case, names


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_invalid_calls_are_rejected_naming_the_argument(name):
    ref_fn, ck_fn = FUNCTIONS[name]

    @given(broken=invalid_case(name))
    def check(broken):
        case, names = broken
        args, kwargs = build(case)
        assert_rejected_like_torch(name, lambda: ref_fn(*args, **kwargs),
                                   lambda: ck_fn(*args, **kwargs), names, str(case))

    check()
