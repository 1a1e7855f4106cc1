"""cnnkern.backends.allow_tf32: default off, setter/getter/property, the per-thread context
manager, and how the flag reaches the ops: read at the call, passed as the ops' `allow_tf32`
argument, the forward's value handed to its backward, recorded (and guarded) by
torch.compile without graph breaks. What TF32 does to the numbers is GPU-only
(tests/ops/test_cuda_gemm.py) and emulated on the CPU (tests/internals/test_implicit_gemm_cpu.py);
here the CPU algorithms must give bitwise the same results with the flag on."""

import threading

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import cnnkern
from conftest import OpRecorder

OPS = ("cnnkern::conv2d", "cnnkern::conv2d_relu", "cnnkern::conv2d_backward_input",
       "cnnkern::conv2d_backward_weight")


@pytest.fixture(autouse=True)
def restore_flag():
    old = cnnkern.backends.get_allow_tf32()
    yield
    cnnkern.backends.set_allow_tf32(old)


def _flags(rec, name):
    """allow_tf32 of each recorded call of op `name` (the dispatcher drops a default False)."""
    return [bool(args[8]) if len(args) > 8 else False for args in rec.args_of(name)]


def test_default_off_and_independent_of_torch():
    assert cnnkern.backends.get_allow_tf32() is False
    assert cnnkern.backends.allow_tf32 is False
    old = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        assert cnnkern.backends.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32 = old


def test_setter_getter_property():
    cnnkern.backends.allow_tf32 = True
    assert cnnkern.backends.get_allow_tf32() is True
    cnnkern.backends.set_allow_tf32(False)
    assert cnnkern.backends.allow_tf32 is False
    with pytest.raises(TypeError, match="must be a bool; got 1"):
        cnnkern.backends.allow_tf32 = 1
    with pytest.raises(TypeError, match="must be a bool; got 'yes'"):
        cnnkern.backends.tf32("yes")


def test_context_manager_nests_and_restores():
    with cnnkern.backends.tf32():
        assert cnnkern.backends.allow_tf32 is True
        with cnnkern.backends.tf32(False):
            assert cnnkern.backends.allow_tf32 is False
        assert cnnkern.backends.allow_tf32 is True
    assert cnnkern.backends.allow_tf32 is False
    with pytest.raises(ZeroDivisionError):
        with cnnkern.backends.tf32():
            1 / 0
    assert cnnkern.backends.allow_tf32 is False
    cnnkern.backends.set_allow_tf32(True)  # a block overrides the process-wide value
    with cnnkern.backends.tf32(False):
        assert cnnkern.backends.allow_tf32 is False
    assert cnnkern.backends.allow_tf32 is True


def test_context_manager_is_per_thread():
    inside, release, seen = threading.Event(), threading.Event(), {}

    def holder():
        with cnnkern.backends.tf32():
            inside.set()
            release.wait(10)
            seen["holder"] = cnnkern.backends.get_allow_tf32()

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(10)
    seen["main"] = cnnkern.backends.get_allow_tf32()  # while the other thread is in its block
    release.set()
    t.join(10)
    assert seen == {"holder": True, "main": False}
    cnnkern.backends.set_allow_tf32(True)  # the process-wide value reaches other threads

    def reader():
        seen["reader"] = cnnkern.backends.get_allow_tf32()

    t = threading.Thread(target=reader)
    t.start()
    t.join(10)
    assert seen["reader"] is True


def test_flag_reaches_every_conv_entry_point():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    wt = torch.randn(3, 4, 3, 3)
    for flag in (False, True):
        with cnnkern.backends.tf32(flag), OpRecorder() as rec:
            cnnkern.conv2d(x, w, padding=1)
            cnnkern.conv_transpose2d(x.detach(), wt, padding=1)
            cnnkern.nn.Conv2d(3, 4, 3)(x)
            block = cnnkern.nn.ConvBNReLU2d(3, 4, 3, padding=1).eval()
            with torch.no_grad():
                block(x)
            cnnkern.nn.ConvBNReLU2d(3, 4, 3, padding=1).train()(x)
        assert _flags(rec, "cnnkern::conv2d") == [flag] * 3
        assert _flags(rec, "cnnkern::conv2d_relu") == [flag]
        assert _flags(rec, "cnnkern::conv2d_backward_input") == [flag]


def test_backward_uses_the_forwards_flag():
    """Set at the forward, changed before backward: the backward ops get the forward's value
    (so they run as the forward did, on whatever thread autograd uses)."""
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    for flag in (True, False):
        with cnnkern.backends.tf32(flag):
            y = cnnkern.conv2d(x, w, padding=1)
            yt = cnnkern.conv_transpose2d(y, w, padding=1)  # conv2d_backward_input's autograd
        with cnnkern.backends.tf32(not flag), OpRecorder() as rec:
            yt.sum().backward()
        for name in OPS[1:]:
            if name != "cnnkern::conv2d_relu":
                assert _flags(rec, name) and set(_flags(rec, name)) == {flag}, name
        assert _flags(rec, "cnnkern::conv2d") == [flag]  # conv_transpose2d's grad


def test_cpu_results_do_not_change_with_the_flag():
    """The CPU algorithms have no TF32 path: bitwise the same with the flag on."""
    x = torch.randn(2, 8, 9, 9)
    w = torch.randn(6, 8, 3, 3)
    g = torch.randn(2, 6, 9, 9)
    for algo in cnnkern.algorithms("cpu"):
        outs = []
        for flag in (False, True):
            xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
            with cnnkern.backends.tf32(flag):
                y = cnnkern.conv2d(xr, wr, padding=1, algo=algo)
            y.backward(g)
            outs.append((y.detach(), xr.grad, wr.grad))
        for a, b in zip(*outs):
            assert torch.equal(a, b), algo


class _Capture:
    def __init__(self):
        self.calls = []

    def backend(self):
        def record(gm, _):
            for n in gm.graph.nodes:
                if n.op == "call_function" and str(n.target).startswith("cnnkern."):
                    args = list(n.args)
                    self.calls.append((str(n.target).split(".")[1],
                                       bool(args[8]) if len(args) > 8 else
                                       bool(n.kwargs.get("allow_tf32", False))))
            return make_boxed_func(gm.forward)
        return aot_autograd(fw_compiler=record, bw_compiler=record)


def test_compile_records_and_guards_the_flag():
    """fullgraph=True (no graph break); the flag's value is an argument of the ops in the
    forward and backward graphs; flipping it recompiles rather than reusing a stale graph."""
    torch._dynamo.reset()
    cap = _Capture()
    model = cnnkern.nn.Conv2d(3, 4, 3, padding=1)
    compiled = torch.compile(model, backend=cap.backend(), fullgraph=True)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    compiled_for = []
    try:
        for flag in (False, True, False):
            cap.calls.clear()
            with cnnkern.backends.tf32(flag):
                out = compiled(x)
            out.sum().backward()
            compiled_for.append(bool(cap.calls))
            if cap.calls:  # (re)compiled for this flag: every cnnkern op carries it
                assert {f for _, f in cap.calls} == {flag}, cap.calls
                assert {n for n, _ in cap.calls} == {"conv2d", "conv2d_backward_input",
                                                     "conv2d_backward_weight"}, cap.calls
            with cnnkern.backends.tf32(flag):
                assert torch.equal(out, model(x))
    finally:
        torch._dynamo.reset()
    # False and True each compiled once; the second False reused the first graph
    assert compiled_for == [True, True, False]


def test_tuning_cache_keys_the_flag():
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3)
    off = cnnkern.tuning.cache_key(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    with cnnkern.backends.tf32():
        on = cnnkern.tuning.cache_key(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    assert off != on and '"exact"' in off and '"tf32"' in on
