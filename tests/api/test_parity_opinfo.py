"""cnnkern's functions against torch on PyTorch's own test inputs: the OpInfos of
torch.testing._internal.common_methods_invocations.op_db for F.conv2d, F.conv_transpose2d,
F.max_pool2d, F.avg_pool2d and F.adaptive_avg_pool2d. Their sample inputs (float64, with
gradients) must give torch's outputs, gradients and memory formats; their error inputs must
be rejected naming the function and the argument (the rule: test_parity_common.py).

A test per function loops over its samples and reports every failing one, so that collecting
this file does not import op_db (~5 s); the import happens once, when the first test runs.
"""

from __future__ import annotations

import functools
import random

import pytest
import torch

from test_parity_common import torch_internal
from test_parity_common import (FUNCTIONS, assert_rejected_like_torch, assert_same_memory_format,
                                assert_same_values, run_function)

# PyTorch's test utilities import expecttest (a test requirement of torch's own, not of
# torch): without it there is nothing to run here.
pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest "
                                         "(requirements.txt)")

# torch's own warning about padding="same" with an even kernel (it pads a copy, as cnnkern does)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

# max_pool2d's OpInfo crosses its arguments into 1,440 samples; a fixed random subset keeps
# the file well under the CI budget while covering every argument (indices seeded, not every
# k-th, which could pin an inner argument of the cross product).
MAX_SAMPLES = 40


@functools.lru_cache(maxsize=None)
def _opinfo(name):
    op_db = torch_internal("common_methods_invocations").op_db

    (info,) = [o for o in op_db if o.name == f"nn.functional.{name}" and not o.variant_test_name]
    return info


@functools.lru_cache(maxsize=None)
def _samples(name):
    """[(index, sample)] of name's OpInfo, subsampled (MAX_SAMPLES)."""
    samples = list(_opinfo(name).sample_inputs("cpu", torch.float64, requires_grad=True))
    keep = range(len(samples))
    if len(samples) > MAX_SAMPLES:
        keep = sorted(random.Random(0).sample(keep, MAX_SAMPLES))
    return [(i, samples[i]) for i in keep]


def _describe(i, s):
    shapes = [list(a.shape) if isinstance(a, torch.Tensor) else a for a in s.args]
    return f"sample {i}: input {list(s.input.shape)}, args {shapes}, kwargs {s.kwargs}"


def _channels_last(t):
    return t.detach().to(memory_format=torch.channels_last).requires_grad_(t.requires_grad)


@functools.lru_cache(maxsize=None)
def _runs(name, i, layout):
    """(torch's Run, cnnkern's Run) of sample i, its 4-D tensors (input, weight) as given or
    made channels_last; kept, so that the value and the memory-format tests run it once."""
    s = dict(_samples(name))[i]  # (cached: the samples are made once)
    args = (s.input, *s.args)
    if layout == "channels_last":
        args = tuple(_channels_last(a) if isinstance(a, torch.Tensor) and a.dim() == 4 else a
                     for a in args)
    return run_function(name, args, s.kwargs)


def _each(name, check):
    """check(i, sample) on every sample; fails listing all that failed."""
    samples = _samples(name)
    assert samples, f"the OpInfo of {name} gave no samples"
    failures = []
    for i, s in samples:
        try:
            check(i, s)
        except Exception as e:  # noqa: BLE001 (every failing sample is reported)
            failures.append(f"{_describe(i, s)}\n    {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(samples)} samples:\n" + "\n".join(failures)


LAYOUTS = ("as given", "channels_last")


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_samples_match_torch(name):
    """Each sample as given, then with its 4-D tensors (input, and weight) channels_last."""
    def check(i, s):
        for layout in LAYOUTS:
            assert_same_values(*_runs(name, i, layout), layout)

    _each(name, check)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_samples_memory_format_matches_torch(name):
    def check(i, s):
        for layout in LAYOUTS:
            assert_same_memory_format(*_runs(name, i, layout), layout)

    _each(name, check)


# torch's error regex (a fragment of it) -> the argument a message must name. Where a case
# breaks two rules, either name will do: the pooling cases with input [0, 1, 49] (zero
# channels, which torch rejects on its own too) and a negative or too-large padding.
ERROR_ARGS = {
    "Input dimension should be at least 3": ["input"],
    "output_size must be 2": ["output_size"],
    "elements of output_size must be greater than or equal to 0": ["output_size"],
    "should be the same": ["bias"],  # the bias's dtype differs from the input's
    "non-positive stride": ["stride"],
    "negative padding": ["padding"],
    "dilation should be greater than zero": ["dilation"],
    "Expected 3-dimensional input for 3-dimensional weight": ["weight"],
    "expected weight to be at least": ["groups"],
    "non-positive groups": ["groups"],
    "pad must be non-negative": ["padding", "input"],
    "pad should be at most half": ["padding", "input"],
    "divisor must be not zero": ["divisor_override"],
    "tensor with optional 0 dim batch size": ["input"],
    "Output size is too small": ["input", "kernel_size"],
}


def _error_args(regex):
    names = [v for k, v in ERROR_ARGS.items() if k in regex]
    assert names, f"no entry in ERROR_ARGS for torch's error {regex!r}: add which argument it is"
    return names[0]


@pytest.mark.parametrize("name", [n for n in FUNCTIONS if n != "conv_transpose2d"])
def test_error_inputs_are_rejected_naming_the_argument(name):
    """(conv_transpose2d's OpInfo has no error inputs: test_parity_hypothesis.py and
    test_parity_edges.py give it invalid calls.)"""
    ref_fn, ck_fn = FUNCTIONS[name]
    errors = list(_opinfo(name).error_inputs("cpu"))
    assert errors
    failures = []
    for i, e in enumerate(errors):
        s = e.sample_input
        args = (s.input, *s.args)
        desc = f"error input {i} ({e.error_regex!r})"
        try:
            assert_rejected_like_torch(name, lambda: ref_fn(*args, **s.kwargs),
                                       lambda: ck_fn(*args, **s.kwargs),
                                       _error_args(e.error_regex), desc)
        except (AssertionError, pytest.fail.Exception) as ex:
            failures.append(str(ex))
    assert not failures, "\n".join(failures)
