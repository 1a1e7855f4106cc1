"""Algorithm introspection: algorithms(), can_implement(), explain(), algo="auto"."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, assert_exact, int_tensor

KNOWN = {"direct", "im2col", "winograd", "winograd_f2"}


def test_cpu_algorithms_list():
    algos = cnnkern.algorithms("cpu")
    assert isinstance(algos, list) and all(isinstance(a, str) for a in algos)
    assert "direct" in algos
    assert set(algos) <= KNOWN, algos
    assert len(set(algos)) == len(algos)
    assert cnnkern.algorithms() == algos  # default device is the CPU


def test_cuda_flags_are_bools_and_consistent():
    built, available = cnnkern.cuda_built(), cnnkern.cuda_available()
    assert isinstance(built, bool) and isinstance(available, bool)
    assert available == (built and torch.cuda.is_available())


def test_cuda_algorithms_without_cuda_build_is_empty():
    if cnnkern.cuda_built():
        algos = cnnkern.algorithms("cuda")
        assert "direct" in algos and set(algos) <= KNOWN
    else:
        assert cnnkern.algorithms("cuda") == []


def test_unknown_device_rejected():
    with pytest.raises((RuntimeError, ValueError), match="tpu"):
        cnnkern.algorithms("tpu")


def _problem(N=2, C=3, H=8, W=8, K=4, R=3, S=3, dtype=torch.float32):
    return torch.randn(N, C, H, W, dtype=dtype), torch.randn(K, C, R, S, dtype=dtype)


@pytest.mark.parametrize("algo", ["direct", "auto"])
def test_can_implement_ok(algo):
    x, w = _problem()
    ok, reason = cnnkern.can_implement(x, w, algo=algo)
    assert ok is True and reason == ""
    ok, reason = cnnkern.can_implement(x, w, torch.randn(4), stride=2, padding=1, dilation=1,
                                       groups=1, algo=algo)
    assert ok is True and reason == ""


def test_can_implement_direct_handles_the_odd_cases():
    x = torch.randn(1, 6, 7, 9)
    w = torch.randn(6, 2, 5, 2)
    ok, reason = cnnkern.can_implement(x, w, stride=(2, 3), padding=(2, 1), dilation=(1, 2),
                                       groups=3, algo="direct")
    assert ok and reason == ""


@pytest.mark.parametrize("algo", ["im2col", "winograd", "winograd_f2"])
def test_can_implement_unbuilt_or_unsuitable(algo):
    x, w = _problem(R=5, S=5)
    ok, reason = cnnkern.can_implement(x, w, padding=2, algo=algo)
    if algo not in cnnkern.algorithms("cpu"):
        assert ok is False
        assert algo in reason, reason
        assert "direct" in reason, f"reason should list the available algorithms: {reason!r}"
    elif algo.startswith("winograd"):
        # Winograd is for 3x3, stride 1, dilation 1: a 5x5 kernel is refused with a reason.
        assert ok is False
        assert "3x3" in reason and "5x5" in reason, reason
    else:
        assert ok is True and reason == ""


def test_can_implement_winograd_rejects_stride_when_built():
    if "winograd" not in cnnkern.algorithms("cpu"):
        pytest.skip("winograd is not built for the CPU")
    x, w = _problem()
    ok, reason = cnnkern.can_implement(x, w, stride=2, padding=1, algo="winograd")
    assert ok is False and "stride" in reason


def test_can_implement_unknown_algo():
    x, w = _problem()
    try:
        ok, reason = cnnkern.can_implement(x, w, algo="fft_magic")
    except (RuntimeError, ValueError) as e:  # raising is acceptable too, if it names the value
        assert "fft_magic" in str(e)
    else:
        assert ok is False and "fft_magic" in reason


def test_explain_names_auto_choice_and_every_algorithm():
    x, w = _problem()
    explanation = cnnkern.explain(x, w, padding=1)
    assert isinstance(explanation, cnnkern.Explanation)
    text = str(explanation)
    assert text.startswith(f"runs: {cnnkern.select(x, w, padding=1)} ") and "auto" in text
    for algo in cnnkern.algorithms("cpu"):
        assert algo in text, f"{algo!r} missing from explain():\n{text}"
    if cnnkern.algorithms("cpu") == ["direct"]:
        assert "direct" in text
    # Unbuilt algorithms get a status line too (not built / cannot run).
    for algo in KNOWN - set(cnnkern.algorithms("cpu")):
        assert algo in text, f"{algo!r} missing from explain():\n{text}"


def test_explain_accepts_conv_arguments():
    x = torch.randn(1, 4, 9, 9)
    w = torch.randn(4, 1, 3, 3)
    e = cnnkern.explain(x, w, torch.randn(4), stride=2, padding=1, dilation=1, groups=4)
    assert "direct" in str(e)
    assert (e.stride, e.padding, e.dilation, e.groups) == ([2, 2], [1, 1], [1, 1], 4)
    assert e.runs() == {p: cnnkern.select(x, w, stride=2, padding=1, groups=4, pass_=p)
                        for p in ("fwd", "bwd_input", "bwd_weight")}


def test_auto_equals_direct():
    x = torch.randn(2, 5, 9, 7)
    w = torch.randn(6, 5, 3, 3)
    b = torch.randn(6)
    auto = cnnkern.conv2d(x, w, b, padding=1, algo="auto")
    direct = cnnkern.conv2d(x, w, b, padding=1, algo="direct")
    if cnnkern.algorithms("cpu") == ["direct"]:
        assert_exact(auto, direct)
    else:
        assert_close(auto, direct.double())
    assert_close(auto, F.conv2d(x.double(), w.double(), b.double(), padding=1))


def test_auto_equals_direct_backward():
    x = int_tensor(1, 3, 6, 6)
    w = int_tensor(4, 3, 3, 3)
    g = int_tensor(1, 4, 6, 6)
    grads = {}
    for algo in ("auto", "direct"):
        xl, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        cnnkern.conv2d(xl, wl, padding=1, algo=algo).backward(g)
        grads[algo] = (xl.grad, wl.grad)
    assert_exact(grads["auto"][0], grads["direct"][0])
    assert_exact(grads["auto"][1], grads["direct"][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_every_built_cpu_algorithm_matches_torch(dtype):
    x = torch.randn(2, 4, 10, 9, dtype=dtype)
    w = torch.randn(5, 4, 3, 3, dtype=dtype)
    b = torch.randn(5, dtype=dtype)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    for algo in cnnkern.algorithms("cpu"):
        ok, reason = cnnkern.can_implement(x, w, b, padding=1, algo=algo)
        assert ok, f"{algo}: {reason}"
        out = cnnkern.conv2d(x, w, b, padding=1, algo=algo)
        # Winograd's transforms lose a little more than direct summation.
        scale = 10.0 if algo.startswith("winograd") else 1.0
        assert_close(out, ref, scale=scale * max(1.0, float(ref.abs().max())))


# The CPU "auto" rule (csrc/cpu/conv2d_auto_rule.cpp), one case per shape class it documents.
AUTO_RULE_CASES = [
    # (input size, weight size, stride, padding, groups, dtype, pass, expected)
    ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, torch.float32, "fwd", "winograd_f2"),
    ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, torch.float32, "bwd_input", "winograd_f2"),
    ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, torch.float32, "bwd_weight", "winograd_f2"),
    ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, torch.float64, "fwd", "im2col"),
    ((1, 64, 56, 56), (64, 64, 3, 3), 2, 1, 1, torch.float32, "fwd", "im2col"),
    ((1, 256, 56, 56), (64, 256, 1, 1), 1, 0, 1, torch.float32, "fwd", "im2col"),
    ((1, 64, 56, 56), (64, 1, 3, 3), 1, 1, 64, torch.float32, "fwd", "direct"),
    ((1, 64, 56, 56), (64, 1, 3, 3), 1, 1, 64, torch.float32, "bwd_weight", "direct"),
    ((1, 128, 28, 28), (128, 4, 3, 3), 1, 1, 32, torch.float32, "fwd", "direct"),
    ((1, 3, 224, 224), (64, 3, 3, 3), 1, 1, 1, torch.float32, "fwd", "im2col"),
    ((1, 3, 224, 224), (64, 3, 3, 3), 1, 1, 1, torch.float32, "bwd_weight", "direct"),
    ((8, 3, 224, 224), (64, 3, 3, 3), 1, 1, 1, torch.float32, "bwd_weight", "im2col"),
    ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, torch.float32, "fwd", "direct"),  # LeNet-5 C3
]


@pytest.mark.skipif(set(cnnkern.algorithms("cpu")) != KNOWN, reason="needs every CPU algorithm")
@pytest.mark.parametrize("in_size,w_size,stride,padding,groups,dtype,pass_,expected",
                         AUTO_RULE_CASES)
def test_cpu_auto_rule_picks_the_documented_algorithm(in_size, w_size, stride, padding, groups,
                                                      dtype, pass_, expected):
    x, w = torch.empty(in_size, dtype=dtype), torch.empty(w_size, dtype=dtype)
    got = cnnkern.select(x, w, stride=stride, padding=padding, groups=groups, pass_=pass_)
    assert got == expected


def test_select_rejects_an_unknown_pass():
    x, w = _problem()
    with pytest.raises(RuntimeError, match="pass must be 'fwd', 'bwd_input' or 'bwd_weight'.*'bwd'"):
        cnnkern.select(x, w, padding=1, pass_="bwd")


def test_auto_backward_runs_the_algorithm_select_names_for_each_pass():
    """conv1_1-like: auto runs im2col forward and direct grad-weight; results match torch."""
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert cnnkern.select(x, w, padding=1, pass_="bwd_weight") == "direct"
    y = cnnkern.conv2d(x, w, padding=1)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    ref = F.conv2d(x, w, padding=1)
    rx, rw = torch.autograd.grad(ref, (x, w), g)
    assert_close(y, ref)
    assert_close(gx, rx)
    assert_close(gw, rw)
