"""The autotuner times the passes it pins: a call's algorithm also runs the backward passes
autograd runs for it, so those are timed (and keyed) with the forward."""

import json

import pytest
import torch

import cnnkern
from conftest import OpRecorder

# The three ops take `algo` as their eighth argument.
FWD, BWD_IN, BWD_W = "cnnkern::conv2d", "cnnkern::conv2d_backward_input", \
    "cnnkern::conv2d_backward_weight"


@pytest.fixture
def clean_cache():
    cnnkern.tuning.clear()
    yield
    cnnkern.tuning.clear()


def _timed_ops(x, w, grad=True):
    """{algorithm: the ops its timing ran}, by a timer that runs each candidate once."""
    seen = {}

    def timer(fn):
        with OpRecorder() as rec:
            fn()
        seen[fn.__defaults__[0]] = [(n, a[7]) for n, a, _ in rec.calls
                                    if n.startswith("cnnkern::")]
        return 1.0

    with torch.set_grad_enabled(grad):
        cnnkern.tuning.choose(x, w, None, [1, 1], [1, 1], [1, 1], 1, timer=timer)
    return seen


@pytest.mark.parametrize("x_grad, w_grad, grad, passes", [
    (True, True, True, [FWD, BWD_IN, BWD_W]),
    (False, True, True, [FWD, BWD_W]),           # a network's first layer
    (True, False, True, [FWD, BWD_IN]),
    (True, True, False, [FWD]),                  # under torch.no_grad(): inference
    (False, False, True, [FWD]),
])
def test_times_the_passes_the_choice_is_pinned_to(clean_cache, x_grad, w_grad, grad, passes):
    x = torch.randn(1, 3, 8, 8, requires_grad=x_grad)
    w = torch.randn(4, 3, 3, 3, requires_grad=w_grad)
    seen = _timed_ops(x, w, grad)
    assert set(seen) == set(cnnkern.algorithms("cpu"))  # a 3x3 problem: every one can run it
    for algo, ops in seen.items():
        assert ops == [(p, algo) for p in passes], (algo, ops)


def test_the_key_names_the_passes_timed(clean_cache):
    x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3, requires_grad=True)
    with torch.no_grad():
        inference = cnnkern.tuning.cache_key(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    training = cnnkern.tuning.cache_key(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    assert json.loads(inference)[-1] == "fwd" and json.loads(training)[-1] == "fwd+bwd_weight"


def test_a_training_step_runs_the_tuned_algorithm_in_every_pass(clean_cache):
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    with cnnkern.autotuning(), OpRecorder() as rec:
        cnnkern.conv2d(x, w, padding=1).sum().backward()
    (chosen,) = cnnkern.tuning.cache().values()
    ran = [a[7] for n, a, _ in rec.calls if n in (FWD, BWD_IN, BWD_W)]
    assert ran[-3:] == [chosen] * 3  # after the timing runs: the step's own three passes


def test_meta_tensors_are_not_timed(clean_cache):
    x, w = torch.empty(1, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
    with cnnkern.autotuning():
        assert cnnkern.conv2d(x, w).shape == (1, 4, 6, 6)
    assert cnnkern.tuning.cache() == {}
