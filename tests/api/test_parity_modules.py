"""cnnkern.nn's modules against torch.nn's on PyTorch's own module test inputs: the ModuleInfos
of torch.testing._internal.common_modules.module_db for Conv2d, ConvTranspose2d, MaxPool2d,
AvgPool2d and AdaptiveAvgPool2d. Each sample builds the torch module and cnnkern's twin from the
same constructor arguments and state_dict (float64); the forward must give torch's output,
input and parameter gradients, and memory formats; the error inputs must be rejected naming
the function the module calls and the argument (the rule: test_parity_common.py).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as tnn

import cnnkern.nn as cnn
from test_parity_common import torch_internal
from test_parity_common import (Run, assert_rejected_like_torch, assert_same_memory_format,
                                assert_same_values, mean_path_quirk, run)

pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest "
                                         "(requirements.txt)")
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

# torch module -> (cnnkern's twin, the name of the cnnkern function it calls)
MODULES = {
    tnn.Conv2d: (cnn.Conv2d, "conv2d"),
    tnn.ConvTranspose2d: (cnn.ConvTranspose2d, "conv_transpose2d"),
    tnn.MaxPool2d: (cnn.MaxPool2d, "max_pool2d"),
    tnn.AvgPool2d: (cnn.AvgPool2d, "avg_pool2d"),
    tnn.AdaptiveAvgPool2d: (cnn.AdaptiveAvgPool2d, "adaptive_avg_pool2d"),
}
IDS = {cls: cls.__name__ for cls in MODULES}


@functools.lru_cache(maxsize=None)
def _module_info(cls):
    module_db = torch_internal("common_modules").module_db

    (info,) = [m for m in module_db if m.module_cls is cls]
    return info


def _twins(cls, constructor_input, memory_format=torch.contiguous_format):
    """(torch module, cnnkern module): the same constructor arguments, float64, cnnkern's
    loaded with torch's state_dict."""
    ref = cls(*constructor_input.args, **constructor_input.kwargs).to(torch.float64)
    ref = ref.to(memory_format=memory_format)
    ck = MODULES[cls][0](*constructor_input.args, **constructor_input.kwargs).to(torch.float64)
    ck.load_state_dict(ref.state_dict())
    return ref, ck.to(memory_format=memory_format)


def _run_module(module, x, seed=0) -> Run:
    return run(lambda: module(x), {"input": x, **dict(module.named_parameters())}, seed)


def _samples(cls):
    info = _module_info(cls)
    samples = info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                      requires_grad=True, training=True)
    assert samples, f"the ModuleInfo of {cls.__name__} gave no samples"
    return samples


def _each(cls, check):
    failures = []
    samples = _samples(cls)
    for s in samples:
        (x,) = s.forward_input.args
        desc = (f"{cls.__name__}(*{s.constructor_input.args}, **{s.constructor_input.kwargs})"
                f" on input {list(x.shape)} ({s.desc or 'no desc'})")
        try:
            check(s.constructor_input, x, desc)
        except Exception as e:  # noqa: BLE001 (every failing sample is reported)
            failures.append(f"{desc}\n    {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(samples)} samples:\n" + "\n".join(failures)


@pytest.mark.parametrize("cls", list(MODULES), ids=IDS.get)
def test_module_samples_match_torch(cls):
    def check(ctor, x, desc):
        ref, ck = _twins(cls, ctor)
        assert_same_values(_run_module(ref, x), _run_module(ck, x), desc)

    _each(cls, check)


def _channels_last_input(x):
    x4 = x if x.dim() == 4 else x.unsqueeze(0)
    x4 = x4.detach().to(memory_format=torch.channels_last)
    return (x4 if x.dim() == 4 else x4.squeeze(0)).requires_grad_(x.requires_grad)


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.__name__) for c in MODULES])
def test_module_memory_format_matches_torch(cls):
    """As torch's module tests do: the module (its 4-D parameters) and the input channels_last,
    each alone and both; values are judged too, as the layouts differ from the other test's."""
    def check(ctor, x, desc):
        for module_cl, input_cl in ((False, True), (True, False), (True, True)):
            fmt = torch.channels_last if module_cl else torch.contiguous_format
            ref, ck = _twins(cls, ctor, fmt)
            xi = _channels_last_input(x) if input_cl else x
            what = f"{desc}, module channels_last={module_cl}, input channels_last={input_cl}"
            want, got = _run_module(ref, xi), _run_module(ck, xi)
            assert_same_values(want, got, what)
            quirk = mean_path_quirk(MODULES[cls][1], getattr(ref, "output_size", None),
                                    x.shape)
            assert_same_memory_format(want, got, what, ignore=quirk)

    _each(cls, check)


# torch's error regex (a fragment) -> the argument the message must name
ERROR_ARGS = {
    "tensor expected for input": ["input"],
    "pad should be at most half": ["padding"],
}


def test_module_error_inputs_are_rejected_naming_the_argument():
    """Every error input of the five ModuleInfos (today only MaxPool2d's has any:
    test_parity_hypothesis.py and test_parity_edges.py give the functions invalid calls)."""
    failures, count = [], 0
    for cls in MODULES:
        info = _module_info(cls)
        if info.module_error_inputs_func is None:
            continue
        for e in info.module_error_inputs_func(info, device="cpu", dtype=torch.float64,
                                               requires_grad=True, training=True):
            count += 1
            mi = e.module_error_input
            ctor, (x,) = mi.constructor_input, mi.forward_input.args
            desc = f"{cls.__name__}(*{ctor.args}, **{ctor.kwargs}) on {list(x.shape)}"
            # Every error input of these modules is one the forward raises (the constructors
            # take any argument); a construction error would need the twins built in the check.
            assert e.error_on.name == "FORWARD_ERROR", f"{desc}: raised by {e.error_on.name}"
            names = [v for k, v in ERROR_ARGS.items() if k in e.error_regex]
            assert names, f"no entry in ERROR_ARGS for torch's error {e.error_regex!r}"
            ref, ck = _twins(cls, ctor)
            try:
                assert_rejected_like_torch(MODULES[cls][1], lambda: ref(x), lambda: ck(x),
                                           names[0], desc)
            except (AssertionError, pytest.fail.Exception) as ex:
                failures.append(str(ex))
    assert count, "no ModuleInfo has error inputs any more: this test judges nothing"
    assert not failures, "\n".join(failures)
