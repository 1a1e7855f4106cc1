"""Bad inputs raise RuntimeError/ValueError whose message names the argument and the value, both
eagerly and under torch.compile, on every backend: the CPU, a GPU ("cuda") and the CUDA emulator
("cuda_emu"; the `dev` fixture, tests/conftest.py).

Under torch.compile the fake kernels trace the call. They run the C++ op's own checks (the
convolutions through the sizes-only introspection op, pooling through the op itself on an
empty batch: cnnkern/_registrations), so the public functions' cases also run in "fake" mode:
under FakeTensorMode alone (what torch.export and shape propagation use), which must refuse
them too, with the same message. (The raw backward ops' fakes check only sizes.)

Each case makes its tensors on the backend's device. The emulator takes the eager calls only: it
is a TorchDispatchMode, under which torch.compile does not trace (a compiled call would end in
the same C++ op the eager one runs there anyway, behind fake kernels that are the same for every
backend). A case the Python wrapper refuses before any op runs judges nothing there and is
skipped (the same code refused it on the CPU).
"""

import re

import pytest
import torch

from torch._subclasses.fake_tensor import FakeTensorMode

import cnnkern
from conftest import COMPILABLE_DEVICES, CPU, DEVICES, GPU_ONLY, cross, per_device

OPS = torch.ops.cnnkern
MODES = ["eager", "compiled"]
ALL_MODES = MODES + ["fake"]


def params(cases, modes=MODES):
    """(dev, mode, make, fragments) for the cases: every mode on the CPU and a GPU, eager in the
    emulator."""
    cases = [pytest.param(m, f, id=i) for i, m, f in cases]
    return per_device(cpu=cross(modes, cases), gpu=cross(modes, cases),
                      emu=cross(["eager"], cases))


def _call(mode, fn, args, kwargs):
    """fn(*args, **kwargs), eagerly, compiled (aot_eager, a fresh compile per case) or on fake
    copies of the tensors under FakeTensorMode."""
    if mode == "compiled":
        torch._dynamo.reset()
        op = fn
        fn = torch.compile(lambda *a, **k: op(*a, **k), backend="aot_eager")
    if mode == "fake":
        with FakeTensorMode(allow_non_fake_inputs=False) as fake:
            args = [fake.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            return fn(*args, **kwargs)
    return fn(*args, **kwargs)


def _raised(mode, make, dev):
    """make() -> (fn, args, kwargs), its tensors on dev's device; the error fn raised in `mode`,
    or None."""
    with torch.device(dev.device):
        fn, args, kwargs = make()
    try:
        _call(mode, fn, args, kwargs)
    except (RuntimeError, ValueError) as e:
        return e
    finally:
        if dev.emulated and not dev.emulation.routed:
            pytest.skip("refused before any op reached the emulated backend (as on the CPU)")
    return None


def _check(mode, make, fragments, dev):
    """fn, called in `mode` on dev, must raise RuntimeError/ValueError with every fragment."""
    error = _raised(mode, make, dev)
    assert error is not None, f"no error raised in {mode} mode on {dev.name}"
    msg = str(error)
    for frag in fragments:
        assert re.search(frag, msg), f"{frag!r} not found in the error message: {msg!r}"


def r(*s, **kw):
    return torch.randn(*s, **kw)


def conv(x, w, b=None, **kw):
    return cnnkern.conv2d, (x, w, b), kw


def raw_conv(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, algo="auto"):
    return OPS.conv2d.default, (x, w, b, list(stride), list(padding), list(dilation), groups, algo), {}


I = "(?i)"  # case-insensitive fragment prefix

# (id, make, fragments)
CONV_ERRORS = [
    ("input_rank_2", lambda: conv(r(5, 6), r(4, 1, 3, 3)), [I + "input", r"\b2\b|\[5, 6\]"]),
    ("input_rank_5", lambda: conv(r(2, 2, 3, 4, 6), r(4, 2, 3, 3)),
     [I + "input", r"\b5\b|\[2, 2, 3, 4, 6\]"]),
    ("weight_rank_3", lambda: conv(r(1, 2, 5, 5), r(4, 2, 2)), [I + "weight", r"\b3\b|\[4, 2, 2\]"]),
    ("weight_rank_5", lambda: conv(r(1, 2, 5, 5), r(4, 2, 1, 2, 2)),
     [I + "weight", r"\b5\b|\[4, 2, 1, 2, 2\]"]),
    ("channel_mismatch", lambda: conv(r(1, 5, 6, 6), r(4, 3, 2, 2)),
     [I + "channels", r"\b5\b", r"\b3\b"]),
    ("channel_mismatch_unbatched", lambda: conv(r(5, 6, 6), r(4, 3, 2, 2)),
     [I + "channels", r"\b5\b", r"\b3\b"]),
    ("grouped_channel_mismatch", lambda: conv(r(1, 6, 6, 6), r(4, 2, 2, 2), groups=2),
     [I + "channels", r"\b6\b"]),
    ("groups_not_dividing_channels", lambda: conv(r(1, 6, 5, 5), r(4, 2, 3, 3), groups=4),
     [I + "groups"]),
    ("groups_not_dividing_filters", lambda: conv(r(1, 4, 5, 5), r(3, 2, 3, 3), groups=2),
     [I + "groups"]),
    ("groups_zero", lambda: conv(r(1, 4, 5, 5), r(4, 4, 3, 3), groups=0), [I + "groups"]),
    ("groups_negative", lambda: conv(r(1, 4, 5, 5), r(4, 4, 3, 3), groups=-2), [I + "groups", "-2"]),
    ("stride_zero", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), stride=0), [I + "stride"]),
    ("stride_negative", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), stride=-1), [I + "stride", "-1"]),
    ("stride_tuple_zero", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), stride=(1, 0)), [I + "stride"]),
    ("padding_negative", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding=-1),
     [I + "padding", "-1"]),
    ("padding_tuple_negative", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding=(0, -2)),
     [I + "padding", "-2"]),
    ("padding_three_values", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding=(1, 2, 3)),
     [I + "padding"]),
    ("padding_unknown_string", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding="full"),
     ["full"]),
    ("padding_same_strided", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding="same", stride=2),
     [I + "same", I + "stride"]),
    ("dilation_zero", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), dilation=0), [I + "dilation"]),
    ("dilation_tuple_negative", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), dilation=(1, -1)),
     [I + "dilation", "-1"]),
    ("kernel_larger_than_input", lambda: conv(r(1, 1, 4, 4), r(1, 1, 5, 5)), [I + "kernel"]),
    ("kernel_larger_than_padded_input_w", lambda: conv(r(1, 1, 6, 3), r(1, 1, 3, 6), padding=(0, 1)),
     [I + "kernel"]),
    ("dilated_kernel_larger_than_input", lambda: conv(r(1, 1, 5, 5), r(1, 1, 3, 3), dilation=3),
     [I + "kernel"]),
    ("bias_wrong_size", lambda: conv(r(1, 2, 5, 5), r(4, 2, 3, 3), r(3)), [I + "bias"]),
    ("bias_wrong_rank", lambda: conv(r(1, 2, 5, 5), r(4, 2, 3, 3), r(4, 1)), [I + "bias"]),
    ("dtype_float_input_double_weight",
     lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3, dtype=torch.float64)), ["Float", "Double"]),
    ("dtype_double_input_float_weight",
     lambda: conv(r(1, 2, 5, 5, dtype=torch.float64), r(3, 2, 3, 3)), ["Float", "Double"]),
    ("dtype_double_bias", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), r(3, dtype=torch.float64)),
     ["Float", "Double"]),
    ("dtype_long", lambda: conv(torch.ones(1, 2, 5, 5, dtype=torch.long),
                                torch.ones(3, 2, 3, 3, dtype=torch.long)), ["Long"]),
    ("dtype_long_weight", lambda: conv(r(1, 2, 5, 5), torch.ones(3, 2, 3, 3, dtype=torch.long)),
     ["Long"]),
    ("device_weight_meta", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3, device="meta")),
     [I + "device"]),
    ("device_bias_meta", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), r(3, device="meta")),
     [I + "device"]),
    ("algo_unknown", lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), algo="fft_magic"),
     [I + "algo", "fft_magic"]),
]


@pytest.mark.parametrize("dev, mode, make, fragments", params(CONV_ERRORS, ALL_MODES),
                         indirect=["dev"])
def test_conv2d_errors(make, fragments, mode, dev):
    _check(mode, make, fragments, dev)


def _unbuilt_cpu_algos():
    built = cnnkern.algorithms("cpu")
    return [a for a in ("im2col", "winograd", "winograd_f2") if a not in built]


# CPU only: a CUDA build has every algorithm (tests/ops/test_conv2d.py::test_algorithms_and_auto).
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("algo", ["im2col", "winograd", "winograd_f2"])
@pytest.mark.parametrize("dev", [CPU], indirect=True)
def test_conv2d_unbuilt_algo_names_it_and_lists_available(algo, mode, dev):
    if algo not in _unbuilt_cpu_algos():
        pytest.skip(f"{algo} is built for the CPU")
    available = cnnkern.algorithms("cpu")
    _check(mode, lambda: conv(r(1, 2, 5, 5), r(3, 2, 3, 3), algo=algo),
           [I + "algo", re.escape(algo)] + [re.escape(a) for a in available], dev)


# Raw ops: the same checks on the registered op itself.
RAW_CONV_ERRORS = [
    ("input_rank_3", lambda: raw_conv(r(2, 5, 5), r(3, 2, 3, 3)), [I + "input"]),
    ("weight_rank_3", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3)), [I + "weight"]),
    ("channel_mismatch", lambda: raw_conv(r(1, 5, 6, 6), r(4, 3, 2, 2)),
     [I + "channels", r"\b5\b", r"\b3\b"]),
    ("groups_not_dividing_filters", lambda: raw_conv(r(1, 4, 5, 5), r(3, 2, 3, 3), groups=2),
     [I + "groups"]),
    ("groups_zero", lambda: raw_conv(r(1, 4, 5, 5), r(4, 4, 3, 3), groups=0), [I + "groups"]),
    ("stride_zero", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3), stride=(0, 1)), [I + "stride"]),
    ("padding_negative", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3), padding=(-1, 0)),
     [I + "padding", "-1"]),
    ("dilation_zero", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3), dilation=(1, 0)),
     [I + "dilation"]),
    ("kernel_larger_than_input", lambda: raw_conv(r(1, 1, 4, 4), r(1, 1, 5, 5)), [I + "kernel"]),
    ("bias_wrong_size", lambda: raw_conv(r(1, 2, 5, 5), r(4, 2, 3, 3), r(5)), [I + "bias"]),
    ("dtype_mix", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3, dtype=torch.float64)),
     ["Float", "Double"]),
    ("dtype_long", lambda: raw_conv(torch.ones(1, 2, 5, 5, dtype=torch.long),
                                    torch.ones(3, 2, 3, 3, dtype=torch.long)), ["Long"]),
    ("device_mix", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3, device="meta")), [I + "device"]),
    ("algo_unknown", lambda: raw_conv(r(1, 2, 5, 5), r(3, 2, 3, 3), algo="fft_magic"),
     [I + "algo", "fft_magic"]),
    ("backward_input_grad_output_shape",
     lambda: (OPS.conv2d_backward_input.default,
              (r(1, 3, 4, 4), r(3, 2, 3, 3), [1, 2, 5, 5], [1, 1], [0, 0], [1, 1], 1, "auto"), {}),
     [I + "grad_output"]),
    ("backward_weight_grad_output_shape",
     lambda: (OPS.conv2d_backward_weight.default,
              (r(1, 3, 4, 4), r(1, 2, 5, 5), [3, 2, 3, 3], [1, 1], [0, 0], [1, 1], 1, "auto"), {}),
     [I + "grad_output"]),
    ("backward_input_stride_zero",
     lambda: (OPS.conv2d_backward_input.default,
              (r(1, 3, 3, 3), r(3, 2, 3, 3), [1, 2, 5, 5], [0, 1], [0, 0], [1, 1], 1, "auto"), {}),
     [I + "stride"]),
]


@pytest.mark.parametrize("dev, mode, make, fragments", params(RAW_CONV_ERRORS, ALL_MODES),
                         indirect=["dev"])
def test_raw_conv2d_errors(make, fragments, mode, dev):
    _check(mode, make, fragments, dev)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


def mp(x, *a, **kw):
    return cnnkern.max_pool2d, (x, *a), kw


def ap(x, *a, **kw):
    return cnnkern.avg_pool2d, (x, *a), kw


def aap(x, output_size):
    return cnnkern.adaptive_avg_pool2d, (x, output_size), {}


POOL_ERRORS = [
    ("max_kernel_zero", lambda: mp(r(1, 1, 4, 4), 0), [I + "kernel_size"]),
    ("max_kernel_negative", lambda: mp(r(1, 1, 4, 4), (2, -1)), [I + "kernel_size", "-1"]),
    ("max_stride_zero", lambda: mp(r(1, 1, 4, 4), 2, 0), [I + "stride"]),
    ("max_stride_negative", lambda: mp(r(1, 1, 4, 4), 2, (1, -2)), [I + "stride", "-2"]),
    ("max_padding_over_half_kernel", lambda: mp(r(1, 1, 6, 6), 2, 1, 2), [I + "pad"]),
    ("max_padding_negative", lambda: mp(r(1, 1, 6, 6), 2, 1, -1), [I + "pad", "-1"]),
    ("max_dilation_zero", lambda: mp(r(1, 1, 6, 6), 2, 1, 0, 0), [I + "dilation"]),
    ("max_output_too_small", lambda: mp(r(1, 1, 2, 2), 3), [I + "output"]),
    ("max_dilated_output_too_small", lambda: mp(r(1, 1, 4, 4), 2, dilation=4), [I + "output"]),
    ("max_input_rank_2", lambda: mp(r(4, 4), 2), [I + "input"]),
    ("max_input_rank_5", lambda: mp(r(1, 1, 1, 4, 4), 2), [I + "input"]),
    ("avg_kernel_zero", lambda: ap(r(1, 1, 4, 4), 0), [I + "kernel_size"]),
    ("avg_kernel_negative", lambda: ap(r(1, 1, 4, 4), (-1, 2)), [I + "kernel_size", "-1"]),
    ("avg_stride_zero", lambda: ap(r(1, 1, 4, 4), 2, (0, 1)), [I + "stride"]),
    ("avg_padding_over_half_kernel", lambda: ap(r(1, 1, 6, 6), 3, 1, 2), [I + "pad"]),
    ("avg_padding_negative", lambda: ap(r(1, 1, 6, 6), 3, 1, (0, -1)), [I + "pad", "-1"]),
    ("avg_output_too_small", lambda: ap(r(1, 1, 2, 3), 3), [I + "output"]),
    ("avg_divisor_zero", lambda: ap(r(1, 1, 4, 4), 2, divisor_override=0), [I + "divisor"]),
    ("avg_input_rank_5", lambda: ap(r(1, 1, 1, 4, 4), 2), [I + "input"]),
    ("adaptive_output_negative", lambda: aap(r(1, 1, 4, 4), (-1, 2)), [I + "output", "-1"]),
    ("adaptive_input_rank_2", lambda: aap(r(4, 4), 2), [I + "input"]),
]


@pytest.mark.parametrize("dev, mode, make, fragments", params(POOL_ERRORS, ALL_MODES),
                         indirect=["dev"])
def test_pool_errors(make, fragments, mode, dev):
    _check(mode, make, fragments, dev)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_pool_spec_messages_say_padding_not_just_pad(dev):
    # The spec names the argument in full: "padding", "kernel_size", "output".
    for make, frag in (
        (lambda: mp(r(1, 1, 6, 6), 2, 1, 2), "padding"),
        (lambda: ap(r(1, 1, 6, 6), 3, 1, 2), "padding"),
    ):
        _check("eager", make, [I + frag], dev)


RAW_POOL_ERRORS = [
    ("max_kernel_zero",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 1, 4, 4), [0, 2], [1, 1], [0, 0], [1, 1], False), {}),
     [I + "kernel_size"]),
    ("max_stride_zero",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 1, 4, 4), [2, 2], [1, 0], [0, 0], [1, 1], False), {}),
     [I + "stride"]),
    ("max_padding_over_half",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 1, 6, 6), [2, 2], [1, 1], [2, 0], [1, 1], False), {}),
     [I + "pad"]),
    ("max_dilation_zero",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 1, 6, 6), [2, 2], [1, 1], [0, 0], [0, 1], False), {}),
     [I + "dilation"]),
    ("max_output_too_small",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 1, 2, 2), [3, 3], [1, 1], [0, 0], [1, 1], False), {}),
     [I + "output"]),
    ("max_input_rank_3",
     lambda: (OPS.max_pool2d_with_indices.default, (r(1, 4, 4), [2, 2], [2, 2], [0, 0], [1, 1], False), {}),
     [I + "input"]),
    # The values-only op (no indices) runs the same checks, with the same messages.
    ("max_values_only_kernel_zero",
     lambda: (OPS.max_pool2d.default, (r(1, 1, 4, 4), [0, 2], [1, 1], [0, 0], [1, 1], False), {}),
     [I + "kernel_size"]),
    ("max_values_only_padding_over_half",
     lambda: (OPS.max_pool2d.default, (r(1, 1, 6, 6), [2, 2], [1, 1], [2, 0], [1, 1], False), {}),
     [I + "pad"]),
    ("max_values_only_input_rank_3",
     lambda: (OPS.max_pool2d.default, (r(1, 4, 4), [2, 2], [2, 2], [0, 0], [1, 1], False), {}),
     [I + "input"]),
    ("avg_kernel_zero",
     lambda: (OPS.avg_pool2d.default, (r(1, 1, 4, 4), [2, 0], [1, 1], [0, 0], False, True, None), {}),
     [I + "kernel_size"]),
    ("avg_padding_over_half",
     lambda: (OPS.avg_pool2d.default, (r(1, 1, 6, 6), [3, 3], [1, 1], [0, 2], False, True, None), {}),
     [I + "pad"]),
    ("avg_output_too_small",
     lambda: (OPS.avg_pool2d.default, (r(1, 1, 2, 2), [3, 3], [1, 1], [0, 0], False, True, None), {}),
     [I + "output"]),
    ("avg_divisor_zero",
     lambda: (OPS.avg_pool2d.default, (r(1, 1, 4, 4), [2, 2], [2, 2], [0, 0], False, True, 0), {}),
     [I + "divisor"]),
    ("adaptive_output_negative",
     lambda: (OPS.adaptive_avg_pool2d.default, (r(1, 1, 4, 4), [2, -3]), {}),
     [I + "output", "-3"]),
    ("max_backward_grad_output_shape",
     lambda: (OPS.max_pool2d_backward.default,
              (r(1, 1, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.long), [1, 1, 4, 4], [2, 2], [2, 2],
               [0, 0], [1, 1], False), {}),
     [I + "grad_output"]),
    ("avg_backward_grad_output_shape",
     lambda: (OPS.avg_pool2d_backward.default,
              (r(1, 1, 3, 3), [1, 1, 4, 4], [2, 2], [2, 2], [0, 0], False, True, None), {}),
     [I + "grad_output"]),
]


@pytest.mark.parametrize("dev, mode, make, fragments", params(RAW_POOL_ERRORS), indirect=["dev"])
def test_raw_pool_errors(make, fragments, mode, dev):
    _check(mode, make, fragments, dev)


# ---------------------------------------------------------------------------------------------
# The same numbers eagerly and under torch.compile
# ---------------------------------------------------------------------------------------------


def _message(mode, make, dev):
    error = _raised(mode, make, dev)
    if error is None:
        raise AssertionError(f"no error raised in {mode} mode on {dev.name}")
    return str(error)


@pytest.mark.parametrize("make", [
    pytest.param(m, id=i) for i, m, _ in RAW_CONV_ERRORS + RAW_POOL_ERRORS
    if i not in ("device_mix",)  # FakeTensor's own device propagation may answer first
])
@pytest.mark.parametrize("dev", COMPILABLE_DEVICES, indirect=True)
def test_fake_and_eager_messages_name_the_same_numbers(make, dev):
    """Compiled, the fake kernel (where no output size exists) or the C++ op answers: every
    number quoted eagerly is quoted there too."""
    eager, fake = _message("eager", make, dev), _message("compiled", make, dev)
    # Numbers the messages quote (sizes, values), not digits inside dtype names (float32...).
    numbers = lambda s: set(re.findall(r"-?\d+", re.sub(r"(?i)\b[a-z]+(8|16|32|64)\b", "", s)))  # noqa: E731
    missing = numbers(eager) - numbers(fake)
    assert not missing, f"eager: {eager!r}\nfake:  {fake!r}"


# ---------------------------------------------------------------------------------------------
# The backend's own rules (algorithms, dtypes, the CUDA glue's checks), eagerly
# ---------------------------------------------------------------------------------------------

BACKEND_ERRORS = [
    ("winograd_5x5", lambda: conv(r(1, 3, 8, 8), r(4, 3, 5, 5), padding=2, algo="winograd"),
     ["winograd", "3x3", "5x5"]),
    ("winograd_stride2", lambda: conv(r(1, 3, 8, 8), r(4, 3, 3, 3), stride=2, algo="winograd_f2"),
     ["winograd_f2", "stride 1", "stride 2"]),
    ("unknown_algo", lambda: conv(r(1, 3, 8, 8), r(4, 3, 3, 3), algo="fft"), ["fft", "direct"]),
    ("channels", lambda: conv(r(1, 5, 8, 8), r(4, 3, 3, 3)), ["channels", "5", "3"]),
    ("bias_size", lambda: conv(r(1, 3, 8, 8), r(4, 3, 3, 3), r(5), algo="im2col"),
     ["bias", "4", "5"]),
    ("int_dtype", lambda: conv(torch.ones(1, 3, 8, 8, dtype=torch.int32),
                               torch.ones(4, 3, 3, 3, dtype=torch.int32)), [I + "int"]),
    ("mixed_dtypes", lambda: conv(r(1, 3, 8, 8), r(4, 3, 3, 3, dtype=torch.float64)),
     [I + "dtype|float"]),
    ("pool_padding", lambda: mp(r(1, 2, 4, 4), 3, padding=2), [I + "pad", "2"]),
]


@pytest.mark.parametrize("make, fragments", [pytest.param(m, f, id=i) for i, m, f in BACKEND_ERRORS])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_backend_errors_name_the_argument(make, fragments, dev):
    """The backend's own checks (op bodies, algorithm rules, CUDA glue) reject bad calls with a
    message naming the argument and the value, never a crash or a wrong answer."""
    _check("eager", make, fragments, dev)


@pytest.mark.parametrize("dev", GPU_ONLY, indirect=True)  # two devices
@pytest.mark.parametrize("which", ["weight", "input", "bias"])
def test_device_mismatch_error(which, dev):
    x = torch.randn(1, 2, 5, 5, device=dev.device)
    w = torch.randn(3, 2, 3, 3, device=dev.device)
    b = torch.randn(3, device=dev.device)
    if which == "weight":
        w = w.cpu()
    elif which == "input":
        x = x.cpu()
    else:
        b = b.cpu()
    with pytest.raises((RuntimeError, ValueError), match="(?i)device"):
        cnnkern.conv2d(x, w, b)
