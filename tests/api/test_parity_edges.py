"""Named edge cases of argument parity that OpInfo samples and random draws reach rarely or
never, each a call torch accepts (compared in value, gradient and layout) or rejects (cnnkern
must reject it naming the function and the argument); the rule: test_parity_common.py.

- conv_transpose2d with an output_padding that only the dilation allows (no conv maps that
  output size back to the input's, so the grad-input op cannot size it), with groups, and
  with padding (the rows padding crops off an uncropped result are not zeros);
- pooling's stride (), [] and None (all: the kernel size);
- padding="same" with even kernels and dilation (an odd total pads one more at the end);
- ceil_mode windows: the last one dropped when it would start in the right padding, kept
  when it starts inside the input and hangs past its end;
- unbatched inputs, empty batches, channels_last tensors, and views (every other column,
  transposed) for every function;
- conv_transpose2d's invalid calls (its OpInfo has no error inputs);
- max-pool windows entirely in the padding (torch's backward writes through an index
  outside the plane; cnnkern's passes no gradient).
"""

from __future__ import annotations

import pytest
import torch

from test_parity_common import (FUNCTIONS, Run, assert_rejected_like_torch, assert_same_memory_format,
                                assert_same_values, mean_path_quirk, run,
                                run_function)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

CL = torch.channels_last


def t(*shape, layout="contiguous", seed=0):
    """A float64 tensor requiring grad: contiguous, channels_last, or a view (every other
    column: "strided"; the last two dimensions swapped: "transposed")."""
    gen = torch.Generator().manual_seed(seed + 17 * len(shape))
    if layout == "strided":
        return torch.randn(*shape[:-1], 2 * shape[-1], generator=gen,
                           dtype=torch.float64).requires_grad_()[..., ::2]
    if layout == "transposed":
        return torch.randn(*shape[:-2], shape[-1], shape[-2], generator=gen,
                           dtype=torch.float64).requires_grad_().transpose(-1, -2)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    return x.requires_grad_()


def case(id, name, make, **kwargs):
    """A valid call: make() -> positional args; kwargs as given."""
    return pytest.param(name, make, kwargs, id=f"{name}-{id}")


CONV = lambda x, w, b=True: lambda: (x(), w(), t(w().shape[0]) if b else None)  # noqa: E731


def TCONV(x, w, groups=1, b=True):  # noqa: N802 (as CONV: the transposed weight's bias size)
    return lambda: (x(), w(), t(w().shape[1] * groups) if b else None)


def POOL(x):  # noqa: N802
    return lambda: (x(),)


VALID = [
    # conv_transpose2d: output_padding allowed by the dilation (and not the stride)
    case("op-by-dilation", "conv_transpose2d",
         TCONV(lambda: t(2, 3, 5, 4), lambda: t(3, 2, 3, 3)), stride=1, dilation=2,
         output_padding=1),
    case("op-by-dilation-groups", "conv_transpose2d",
         TCONV(lambda: t(2, 4, 5, 4), lambda: t(4, 3, 3, 2), groups=2), stride=1, dilation=2,
         output_padding=1, groups=2),
    case("op-by-dilation-padding", "conv_transpose2d",
         TCONV(lambda: t(1, 2, 4, 5), lambda: t(2, 3, 3, 3)), stride=(1, 2), dilation=(3, 1),
         padding=(2, 1), output_padding=(2, 1)),
    case("op-past-padding", "conv_transpose2d",  # output_padding > padding: zeros at the end
         TCONV(lambda: t(1, 2, 3, 3), lambda: t(2, 2, 2, 2)), stride=2, dilation=3, padding=1,
         output_padding=2),
    case("op-by-dilation-unbatched", "conv_transpose2d",
         TCONV(lambda: t(3, 5, 4), lambda: t(3, 2, 3, 3), b=False), stride=1, dilation=2,
         output_padding=(1, 0)),
    # pooling: stride (), [] and None are the kernel size
    *[case(f"stride-{s!r}", n, POOL(lambda: t(2, 3, 7, 6)), kernel_size=(3, 2), stride=s)
      for n in ("max_pool2d", "avg_pool2d") for s in ((), [], None)],
    # padding="same": even kernels, dilation, odd totals
    *[case(f"same-{k}-dil{d}", "conv2d", CONV(lambda: t(2, 2, 7, 6), lambda k=k: t(3, 2, *k)),
           padding="same", dilation=d)
      for k in ((2, 4), (4, 1), (2, 2)) for d in (1, (1, 2), (3, 1), 2)],
    case("same-unbatched-groups", "conv2d", CONV(lambda: t(4, 5, 6), lambda: t(4, 2, 2, 3)),
         padding="same", groups=2, dilation=(2, 1)),
    # ceil_mode: a last window that would start in the right padding is dropped (5 + 1 padding,
    # kernel 2, stride 2: 3 windows, not 4); one starting inside the input is kept though it
    # hangs past the end (kernel 3 on 4 with stride 2: 2 windows)
    *[case(f"ceil-start-in-padding-{n}", n, POOL(lambda: t(1, 2, 5, 5)), kernel_size=2,
           stride=2, padding=1, ceil_mode=True) for n in ("max_pool2d", "avg_pool2d")],
    *[case(f"ceil-hangs-past-end-{n}", n, POOL(lambda: t(1, 2, 4, 4)), kernel_size=3, stride=2,
           ceil_mode=True) for n in ("max_pool2d", "avg_pool2d")],
    case("ceil-count-exclude-pad", "avg_pool2d", POOL(lambda: t(2, 1, 6, 5)), kernel_size=3,
         stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    case("ceil-divisor", "avg_pool2d", POOL(lambda: t(2, 1, 6, 5)), kernel_size=(3, 2),
         stride=(2, 3), padding=(1, 0), ceil_mode=True, divisor_override=-3),
    case("ceil-dilated", "max_pool2d", POOL(lambda: t(1, 2, 7, 8)), kernel_size=3, stride=3,
         padding=1, dilation=2, ceil_mode=True, return_indices=True),
    case("ceil-smaller-than-kernel", "max_pool2d", POOL(lambda: t(1, 1, 2, 3)), kernel_size=3,
         stride=2, ceil_mode=True),
]

# every function: unbatched, empty batch, channels_last, and views of input (and weight)
_LAYOUT_CALLS = {
    "conv2d": (lambda x, wl: (x, t(4, 3, 3, 2, layout=wl), t(4)), dict(padding=1, stride=(2, 1))),
    "conv_transpose2d": (lambda x, wl: (x, t(3, 2, 3, 2, layout=wl), t(2)),
                         dict(stride=2, padding=1, output_padding=1)),
    "max_pool2d": (lambda x, wl: (x,), dict(kernel_size=3, stride=2, padding=1,
                                            return_indices=True)),
    "avg_pool2d": (lambda x, wl: (x,), dict(kernel_size=(3, 2), padding=1, ceil_mode=True)),
    "adaptive_avg_pool2d": (lambda x, wl: (x,), dict(output_size=(3, None))),
}
_INPUTS = {
    "unbatched": lambda: t(3, 7, 6),
    "unbatched-channels_last": lambda: t(3, 7, 6).detach().unsqueeze(0).contiguous(
        memory_format=CL).squeeze(0).requires_grad_(),
    "empty-batch": lambda: t(0, 3, 7, 6),
    "channels_last": lambda: t(2, 3, 7, 6, layout="channels_last"),
    "strided": lambda: t(2, 3, 7, 6, layout="strided"),
    "transposed": lambda: t(2, 3, 7, 6, layout="transposed"),
}
_WEIGHTS = ("contiguous", "channels_last", "transposed")
for _name, (_args, _kwargs) in _LAYOUT_CALLS.items():
    for _xid, _x in _INPUTS.items():
        for _wl in (_WEIGHTS if _name.startswith("conv") else ("contiguous",)):
            _id = _xid if _wl == "contiguous" else f"{_xid}-weight-{_wl}"
            VALID.append(case(_id, _name, lambda a=_args, x=_x, wl=_wl: a(x(), wl), **_kwargs))


@pytest.mark.parametrize("name,make,kwargs", VALID)
def test_edge_case_matches_torch(name, make, kwargs):
    ref, got = run_function(name, make(), kwargs)
    assert_same_values(ref, got, name)


@pytest.mark.parametrize("name,make,kwargs", [
    pytest.param(*p.values, id=p.id) for p in VALID])
def test_edge_case_memory_format_matches_torch(name, make, kwargs):
    args = make()
    ref, got = run_function(name, args, kwargs)
    assert_same_memory_format(ref, got, name,
                              ignore=mean_path_quirk(name, kwargs.get("output_size"),
                                                     args[0].shape))


def test_output_padding_by_dilation_has_torch_size_and_zeros_past_the_reach():
    """stride 1, dilation 2, kernel 3 on 4 rows: torch gives 4 + 4 + 1 = 9 rows; the last is
    reached by no input, so it is the bias alone."""
    x, w, b = t(1, 2, 4, 4), t(2, 3, 3, 3), t(3)
    y = FUNCTIONS["conv_transpose2d"][1](x, w, b, stride=1, dilation=2, output_padding=1)
    assert y.shape == (1, 3, 9, 9)
    torch.testing.assert_close(y[0, :, -1, :], b.detach().view(3, 1).expand(3, 9))


def _tx(*shape):
    return lambda: t(*shape)


# conv_transpose2d's invalid calls: (id, args, kwargs, argument names the message may use)
INVALID_TRANSPOSED = [
    ("op-not-below-stride-or-dilation", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)),
     dict(stride=2, dilation=2, output_padding=2), ["output_padding"]),
    ("op-negative", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(output_padding=-1),
     ["output_padding"]),
    ("output-too-small", (_tx(1, 2, 1, 1), _tx(2, 2, 2, 2)), dict(padding=1), ["padding"]),
    ("channels", (_tx(1, 3, 3, 3), _tx(2, 2, 3, 3)), {}, ["input", "weight"]),
    ("groups-not-dividing", (_tx(1, 3, 3, 3), _tx(3, 2, 3, 3)), dict(groups=2), ["groups"]),
    ("groups-zero", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(groups=0), ["groups"]),
    ("bias-size", (_tx(1, 2, 3, 3), _tx(2, 3, 3, 3), _tx(2)), {}, ["bias"]),
    ("weight-3d", (_tx(1, 2, 3, 3), _tx(2, 2, 3)), {}, ["weight"]),
    ("input-5d", (_tx(1, 1, 2, 3, 3), _tx(2, 2, 3, 3)), {}, ["input"]),
    ("empty-plane", (_tx(1, 2, 0, 3), _tx(2, 2, 3, 3)), {}, ["input"]),
    ("weight-empty", (_tx(1, 2, 3, 3), _tx(2, 0, 3, 3)), {}, ["weight"]),
    ("stride-zero", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(stride=0), ["stride"]),
    ("dilation-zero", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(dilation=0), ["dilation"]),
    ("padding-negative", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(padding=-1), ["padding"]),
    ("padding-string", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(padding="same"), ["padding"]),
    ("groups-float", (_tx(1, 2, 3, 3), _tx(2, 2, 3, 3)), dict(groups=1.0), ["groups"]),
    ("dtype", (_tx(1, 2, 3, 3), lambda: t(2, 2, 3, 3).float()), {}, ["weight"]),
]


@pytest.mark.parametrize("args,kwargs,names",
                         [pytest.param(a, k, n, id=i) for i, a, k, n in INVALID_TRANSPOSED])
def test_conv_transpose2d_invalid_call_is_rejected_naming_the_argument(args, kwargs, names):
    ref_fn, ck_fn = FUNCTIONS["conv_transpose2d"]
    tensors = [make() for make in args]
    assert_rejected_like_torch("conv_transpose2d", lambda: ref_fn(*tensors, **kwargs),
                               lambda: ck_fn(*tensors, **kwargs), names)


def test_conv_transpose2d_algo_the_kernels_cannot_run_names_conv_transpose2d():
    """A refusal only the op can make (winograd needs a 3x3 stride-1 kernel) is worded for
    the function called, not for the conv whose grad-input runs it."""
    with pytest.raises(RuntimeError, match=r"^cnnkern\.conv_transpose2d: .*winograd"):
        FUNCTIONS["conv_transpose2d"][1](t(1, 2, 4, 4), t(2, 2, 5, 5), algo="winograd")


# Max pooling with dilation can have a window whose every tap is padding: (1, 2, 1, 7) input,
# kernel 2, dilation 2, padding (1, 0): rows -1 and 1 of a 1-row plane. Its value is -inf and
# its index (as torch's) points at row 1, outside the plane. torch's backward scatters through
# that index, into the next plane and past the tensor's end (a heap corruption: it is not run
# here); cnnkern passes no gradient.
_IN_PADDING = dict(kernel_size=2, padding=(1, 0), dilation=2, return_indices=True)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_max_pool2d_window_in_padding_matches_torch_forward_and_passes_no_gradient(layout):
    x = t(1, 2, 1, 7, layout=layout)
    with torch.no_grad():
        ref = Run(FUNCTIONS["max_pool2d"][0](x, **_IN_PADDING))
    got = run(lambda: FUNCTIONS["max_pool2d"][1](x, **_IN_PADDING), {"input": x})
    assert_same_values(ref, Run(got.outputs), "max_pool2d")
    assert torch.isinf(got.outputs[0]).all() and (got.outputs[1] >= 7).all()
    assert got.grads["input"].abs().max() == 0
