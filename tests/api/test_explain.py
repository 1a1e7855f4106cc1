"""cnnkern.explain(): per pass, what runs and what decided it (the C++ auto rule's own clause,
"requested", or the autotuner's timings), each algorithm's workspace estimate against what it
allocates, and measure=True's times and errors."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import cnnkern
from cnnkern.explanation import Explanation
from conftest import CUDA_DEVICES, GPU_ONLY

PASSES = ("fwd", "bwd_input", "bwd_weight")


def _problem(N, C, H, K, R, groups=1, dtype=torch.float32, device="cpu"):
    return (torch.randn(N, C, H, H, dtype=dtype, device=device),
            torch.randn(K, C // groups, R, R, dtype=dtype, device=device))


def _pass(e, name):
    return next(p for p in e.passes if p.name == name)


def _status(p, name):
    return next(a for a in p.algorithms if a.name == name)


# --- what decided: the CPU rule's clause, as the rule states it ---------------------------

def _needs(*algos):
    missing = [a for a in algos if a not in cnnkern.algorithms("cpu")]
    return pytest.mark.skipif(bool(missing), reason=f"{missing} not built for the CPU")


@_needs("winograd_f2", "im2col", "direct")
def test_wide_3x3_float32_is_the_winograd_f2_clause_in_every_pass():
    # 256 input channels on a 14x14 plane: "wide" and not a small plane, so every pass.
    x, w = _problem(1, 256, 14, 16, 3)
    e = cnnkern.explain(x, w, padding=1)
    for p in e.passes:
        assert (p.runs, p.decided_by) == ("winograd_f2", "auto"), p
        # The clause names its case, this problem's own numbers and the measurement.
        assert p.reason.startswith("3x3 stride-1 dilation-1 float32 with at least 16"), p.reason
        assert "C/groups 256, K/groups 16, output 14x14" in p.reason
        assert "Measured: " in p.reason
    assert str(e).startswith("runs: winograd_f2 (picked by auto) on cpu")


@_needs("winograd_f2", "im2col", "direct")
def test_3x3_grad_weight_runs_im2col_unless_the_layer_is_wide_or_the_plane_large():
    # 32 -> 48 channels at 28x28: Winograd forward and grad-input, im2col grad-weight.
    x, w = _problem(1, 32, 28, 48, 3)
    e = cnnkern.explain(x, w, padding=1)
    assert e.runs() == {"fwd": "winograd_f2", "bwd_input": "winograd_f2", "bwd_weight": "im2col"}
    bwd_w = _pass(e, "bwd_weight")
    assert "grad-weight: output plane under 196 positions, or fewer than 256" in bwd_w.reason
    assert "Measured: im2col 1.1-1.5x faster than winograd_f2" in bwd_w.reason
    # A 56x56 plane with at most 2 filters per input channel: Winograd grad-weight too; with
    # 3 per channel (googlenet's conv3, 64 -> 192), im2col.
    assert cnnkern.select(*_problem(1, 32, 56, 64, 3), padding=1, pass_="bwd_weight") == \
        "winograd_f2"
    assert cnnkern.select(*_problem(1, 32, 56, 96, 3), padding=1, pass_="bwd_weight") == "im2col"
    # At most one filter per input channel (resnet18's 128x28x28, 512x7x7) and at least 8
    # images: Winograd on any plane, however small; 33 filters from 32 channels, or a batch of
    # 7, tip it back to im2col.
    for size, channels in ((28, 128), (7, 512), (5, 32)):
        x, w = _problem(8, channels, size, channels, 3)
        bwd_w = _pass(cnnkern.explain(x, w, padding=1), "bwd_weight")
        assert bwd_w.runs == "winograd_f2", (size, channels)
        assert "at most 1 filter per input channel, any plane, at least 8 images" in bwd_w.reason
        assert "batch 8" in bwd_w.reason
    assert cnnkern.select(*_problem(8, 32, 5, 33, 3), padding=1, pass_="bwd_weight") == "im2col"
    assert cnnkern.select(*_problem(7, 128, 28, 128, 3), padding=1, pass_="bwd_weight") == \
        "im2col"
    # 128+ channels into at most twice as many filters on a plane of at most 14x14 (googlenet
    # inception4c-5b), at least 2 images or a 14x14 plane: Winograd; 112 -> 224 at 14x14
    # (inception4b), 128 -> 256 at 15x15 and 160 -> 320 at 7x7 in batch 1: im2col.
    assert cnnkern.select(*_problem(2, 160, 7, 320, 3), padding=1, pass_="bwd_weight") == \
        "winograd_f2"
    assert cnnkern.select(*_problem(1, 128, 14, 256, 3), padding=1, pass_="bwd_weight") == \
        "winograd_f2"
    assert cnnkern.select(*_problem(1, 160, 7, 320, 3), padding=1, pass_="bwd_weight") == \
        "im2col"
    assert cnnkern.select(*_problem(2, 112, 14, 224, 3), padding=1, pass_="bwd_weight") == "im2col"
    assert cnnkern.select(*_problem(2, 128, 15, 256, 3), padding=1, pass_="bwd_weight") == "im2col"


@_needs("winograd_f2", "im2col")
def test_3x3_grad_input_on_a_small_plane_runs_im2col_unless_wide():
    # The forward runs Winograd on every plane (googlenet inception5a/5b at 7x7).
    x, w = _problem(1, 32, 12, 48, 3)
    e = cnnkern.explain(x, w, padding=1)
    assert _pass(e, "fwd").runs == "winograd_f2"
    bwd_in = _pass(e, "bwd_input")
    assert bwd_in.runs == "im2col"
    assert "output plane under 784 positions and fewer than 256 input channels" in bwd_in.reason
    assert "output 12x12" in bwd_in.reason
    # 512 channels at 7x7 (resnet50 layer4.1.conv2): Winograd all the same.
    x, w = _problem(1, 512, 7, 16, 3)
    assert cnnkern.select(x, w, padding=1, pass_="fwd") == "winograd_f2"
    assert cnnkern.select(x, w, padding=1, pass_="bwd_input") == "winograd_f2"


@_needs("direct", "im2col")
def test_5x5_with_few_channels_runs_direct_forward_and_by_filter_count_backward():
    # googlenet's 5x5 branches: 16 -> 32 direct in every pass, 24 -> 64 direct forward only,
    # 32 -> 96 im2col.
    x, w = _problem(1, 16, 14, 32, 5)
    assert cnnkern.explain(x, w, padding=2).runs() == dict.fromkeys(PASSES, "direct")
    x, w = _problem(1, 24, 14, 64, 5)
    e = cnnkern.explain(x, w, padding=2)
    assert e.runs() == {"fwd": "direct", "bwd_input": "im2col", "bwd_weight": "im2col"}
    assert _pass(e, "fwd").reason.startswith(
        "a 5x5 kernel with 8 to 32 input channels and at most 64 filters per group in this "
        "pass (C/groups 24, K/groups 64)")
    x, w = _problem(1, 32, 14, 96, 5)
    assert cnnkern.explain(x, w, padding=2).runs() == dict.fromkeys(PASSES, "im2col")


@_needs("direct", "im2col")
def test_wide_layer_into_a_tiny_plane_runs_direct_forward_below_batch_8():
    # resnet50 layer4.0.conv2: 512 channels, 3x3 stride 2, 14x14 -> 7x7.
    x, w = _problem(1, 512, 14, 8, 3)
    e = cnnkern.explain(x, w, stride=2, padding=1)
    assert e.runs() == {"fwd": "direct", "bwd_input": "im2col", "bwd_weight": "im2col"}
    reason = _pass(e, "fwd").reason
    assert "output plane of at most 49 positions, fewer than 8 images" in reason
    assert "output 7x7, batch 1" in reason
    x7 = torch.randn(7, 512, 14, 14)
    assert cnnkern.select(x7, w, stride=2, padding=1, pass_="fwd") == "direct"
    # from 8 images im2col runs several per GEMM and is the faster one
    x8 = torch.randn(8, 512, 14, 14)
    e = cnnkern.explain(x8, w, stride=2, padding=1)
    assert e.runs() == dict.fromkeys(PASSES, "im2col")
    assert _pass(e, "fwd").reason.startswith("everything else")
    # 256 channels into the same plane (resnet18 layer4.0.conv1, 256 -> 512): im2col.
    x, w = _problem(1, 256, 14, 8, 3)
    assert cnnkern.select(x, w, stride=2, padding=1, pass_="fwd") == "im2col"
    # 1x1 layers stay on im2col however small the plane.
    x, w = _problem(1, 512, 7, 8, 1)
    assert cnnkern.select(x, w, pass_="fwd") == "im2col"


@_needs("direct", "im2col")
def test_depthwise_is_the_narrow_grouped_clause():
    x, w = _problem(2, 16, 12, 16, 3, groups=16)
    e = cnnkern.explain(x, w, padding=1, groups=16)
    for p in e.passes:
        assert p.runs == "direct", p
        assert p.reason.startswith("grouped (depthwise or narrow) with fewer than 8 input "
                                   "channels per group"), p.reason
        assert "C/groups 1, K/groups 1, groups 16" in p.reason
    # Ungrouped, but only 4 filters: the clause for few filters.
    x, w = _problem(1, 32, 12, 4, 3)
    fwd = _pass(cnnkern.explain(x, w, padding=1), "fwd")
    assert fwd.runs == "direct"
    assert fwd.reason.startswith("fewer than 8 filters per group (C/groups 32, K/groups 4")


@_needs("im2col")
def test_1x1_is_the_im2col_clause():
    x, w = _problem(2, 32, 10, 64, 1)
    e = cnnkern.explain(x, w)
    for p in e.passes:
        assert p.runs == "im2col", p
        assert p.reason.startswith("everything else: not 3x3 stride-1 dilation-1 (a 1x1 kernel"), \
            p.reason


@_needs("im2col")
def test_float64_3x3_says_winograd_is_float32_only():
    x, w = _problem(1, 32, 10, 32, 3, dtype=torch.float64)
    fwd = _pass(cnnkern.explain(x, w, padding=1), "fwd")
    assert fwd.runs == "im2col"
    assert "3x3 stride-1 in Double" in fwd.reason and "float32 only" in fwd.reason


@_needs("direct", "im2col")
def test_a_three_channel_layer_differs_per_pass_and_says_why():
    # VGG's first layer at batch 1, 32x32: im2col forward, direct grad-weight (its own clause).
    x, w = _problem(1, 3, 32, 64, 3)
    e = cnnkern.explain(x, w, padding=1)
    assert e.runs() == {p: cnnkern.select(x, w, padding=1, pass_=p) for p in PASSES}
    bwd_w = _pass(e, "bwd_weight")
    assert (e.runs()["fwd"], bwd_w.runs) == ("im2col", "direct")
    assert bwd_w.reason.startswith("grad-weight of a layer with fewer than 8 input channels")
    assert "N*P*Q = 1024" in bwd_w.reason
    assert str(e).startswith("runs: im2col for fwd, im2col for bwd_input, direct for bwd_weight")
    # At stride 4 (alexnet's 11x11 conv1) the grad-weight runs im2col.
    x, w = _problem(1, 3, 63, 64, 11)
    bwd_w = _pass(cnnkern.explain(x, w, stride=4, padding=2), "bwd_weight")
    assert bwd_w.runs == "im2col" and bwd_w.reason.startswith("everything else")


def test_auto_runs_the_first_algorithm_in_its_order_that_can_run():
    # A 5x5 float32 problem: whatever the rule prefers, what runs is the first runnable in the
    # order explain lists, and it is what select() (the ops' own resolution) says.
    x, w = _problem(1, 8, 9, 8, 5)
    for p in cnnkern.explain(x, w, stride=2).passes:
        runnable = [a.name for a in p.algorithms if a.can_run]
        assert p.runs == runnable[0] == cnnkern.select(x, w, stride=2, pass_=p.name)
        for a in p.algorithms:
            if a.built:  # the registry's own reason, which can_implement prefixes
                ok, why = cnnkern.can_implement(x, w, stride=2, algo=a.name)
                assert ok == a.can_run and a.why_not in why


def test_requested_and_refused():
    x, w = _problem(1, 4, 9, 4, 5)
    e = cnnkern.explain(x, w, algo="direct")
    assert all((p.runs, p.decided_by) == ("direct", "requested") for p in e.passes)
    assert "algo='direct' was requested" in e.passes[0].reason
    if "winograd" in cnnkern.algorithms("cpu"):
        e = cnnkern.explain(x, w, algo="winograd")
        assert all(p.runs is None for p in e.passes)
        assert "3x3" in e.passes[0].reason and "5x5" in e.passes[0].reason
        assert str(e).startswith("cannot run: ")


def test_bad_arguments_name_the_function_argument_and_value():
    x, w = _problem(1, 4, 9, 4, 3)
    with pytest.raises(TypeError, match=r"cnnkern.explain: algo must be a string; got 3"):
        cnnkern.explain(x, w, algo=3)
    with pytest.raises(TypeError, match=r"cnnkern.explain: measure must be True or False; got 'y"):
        cnnkern.explain(x, w, measure="yes")
    with pytest.raises(ValueError, match=r"cnnkern.explain: padding must be .* got 'full'"):
        cnnkern.explain(x, w, padding="full")


# --- the autotuner ------------------------------------------------------------------------

@pytest.fixture
def clean_tuner():
    cnnkern.tuning.clear()
    yield
    cnnkern.tuning.clear()
    cnnkern.autotune(False)


def test_the_autotuners_recorded_timings_decide_when_it_is_on(clean_tuner, tmp_path):
    x, w = _problem(1, 4, 9, 6, 3)
    algos = cnnkern.algorithms("cpu")
    # A stub timer: the last algorithm is the fastest, and these are the times recorded.
    planted = {a: 1e-3 * (1 + i) for i, a in enumerate(reversed(algos))}
    with torch.no_grad():  # keyed (and explained) as a forward only
        cnnkern.tuning.choose(x, w, None, [1, 1], [1, 1], [1, 1], 1,
                              timer=lambda fn: planted[fn.__defaults__[0]])
        before = cnnkern.explain(x, w, padding=1)
        with cnnkern.autotuning():
            e = cnnkern.explain(x, w, padding=1)
    assert before.passes[0].decided_by == "auto"  # the tuner is off: the rule decides
    fwd = e.passes[0]
    assert (fwd.runs, fwd.decided_by, fwd.tuner_times) == (algos[-1], "autotuner", planted)
    assert fwd.reason.startswith(f"fastest of the fwd timings it recorded for this key: "
                                 f"{algos[-1]} 1.000 ms, ")
    # The passes the tuner did not time (no autograd recorded) stay the rule's.
    assert [p.decided_by for p in e.passes[1:]] == ["auto", "auto"]

    cnnkern.autotune_save(str(tmp_path / "t.json"))
    cnnkern.tuning.clear()
    cnnkern.autotune_load(str(tmp_path / "t.json"))
    with torch.no_grad(), cnnkern.autotuning():
        fwd = cnnkern.explain(x, w, padding=1).passes[0]
    assert (fwd.runs, fwd.tuner_times) == (algos[-1], None)
    assert "loaded from a file" in fwd.reason


def test_an_untimed_key_says_the_next_call_will_time_it(clean_tuner):
    x, w = _problem(1, 4, 9, 6, 3)
    with cnnkern.autotuning():
        fwd = cnnkern.explain(x, w, padding=1).passes[0]
    assert fwd.decided_by == "auto" and "has not timed this key" in fwd.reason
    assert cnnkern.tuning.cache() == {}  # explaining times nothing


# --- numbers: measure=True, and the text and dict of an unmeasured one ------------------------

def test_unmeasured_fields_are_none_and_the_text_says_so():
    x, w = _problem(1, 8, 10, 8, 3)
    e = cnnkern.explain(x, w, padding=1)
    assert not e.measured
    for p in e.passes:
        for a in p.algorithms:
            assert a.time_s is None and a.error is None
    text = str(e)
    runnable = sum(a.can_run for p in e.passes for a in p.algorithms)
    assert text.count("not measured (measure=True)") == runnable > 0


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 1e-4), (torch.float64, 1e-12)])
def test_measure_times_every_runnable_algorithm_and_its_error(dtype, bound):
    x, w = _problem(2, 16, 12, 16, 3, dtype=dtype)
    e = cnnkern.explain(x, w, torch.randn(16, dtype=dtype), padding=1, measure=True)
    assert e.measured
    for p in e.passes:
        for a in p.algorithms:
            if not a.can_run:
                assert a.time_s is None and a.error is None
                continue
            assert a.time_s > 0, (p.name, a)
            # F(4x4) Winograd is the least accurate, and still well inside float32's budget.
            assert 0 <= a.error < bound, (p.name, a.name, a.error)
            assert f"{a.name}: can run; " in str(e)
    assert "not measured" not in str(e)


def test_to_dict_round_trips_through_json():
    x, w = _problem(1, 8, 10, 8, 3)
    e = cnnkern.explain(x, w, torch.randn(8), padding="same", measure=True)
    d = e.to_dict()
    again = json.loads(json.dumps(d))
    assert again == d
    assert Explanation.from_dict(again) == e
    assert again["passes"][0]["name"] == "fwd" and again["input_size"] == [1, 8, 10, 10]


# --- workspace: the registered estimate against what the algorithm allocates ---------------

def _ws(x, w, algo, pass_, **conv):
    a = _status(_pass(cnnkern.explain(x, w, **conv), pass_), algo)
    assert a.can_run, a
    return a.workspace_per_call, a.workspace_per_thread


@_needs("direct")
def test_direct_workspace_by_hand():
    # Forward: the input planes padded to 7x7 (2 x 49 floats) and the kernels' over-read
    # slack of 256 past the last tap's offset (tap (2, 2): 2 * 7 + 2 = 16): 370 floats.
    x, w = _problem(1, 2, 5, 3, 3)
    assert _ws(x, w, "direct", "fwd", padding=1) == (370 * 4, 0)
    # grad-input: grad_output (3 planes of 5x5) padded by the flipped kernel's reach (2) to
    # 7x7 = 147 floats, slack 2 * 7 + 2 + 256 = 272, and the 54 filter values reordered.
    assert _ws(x, w, "direct", "bwd_input", padding=1) == ((147 + 272 + 54) * 4, 0)


@_needs("im2col")
def test_im2col_workspace_by_hand():
    # grad-weight: one column tile of C*R*S = 36 rows by all 100 output positions, per thread
    # (1 thread: the problem is below the parallel threshold); a 1x1 unpadded problem has none.
    x, w = _problem(1, 4, 10, 8, 3)
    assert _ws(x, w, "im2col", "bwd_weight", padding=1) == (0, 36 * 100 * 4)
    x, w = _problem(1, 4, 10, 8, 1)
    assert _ws(x, w, "im2col", "bwd_weight") == (0, 0)


def test_cannot_run_has_no_workspace():
    x, w = _problem(1, 4, 9, 4, 5)
    for p in cnnkern.explain(x, w).passes:
        for a in p.algorithms:
            if not a.can_run:
                assert a.workspace_per_call is None and a.workspace_per_thread is None


# Peak resident memory of one call in a fresh interpreter at 1 thread, beyond its output: the
# buffers it allocates and touches (large ones are mapped fresh: MALLOC_MMAP_THRESHOLD_).
_PEAK = textwrap.dedent("""
    import json, re, sys, torch
    torch.set_num_threads(1)
    import cnnkern

    def status(key):
        return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

    algo, pass_, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    N, C, H, K, R = shape
    ops = torch.ops.cnnkern

    def run(N, C, H, K):
        x, w = torch.randn(N, C, H, H), torch.randn(K, C, R, R)
        go = torch.randn(N, K, H, H)
        args = ([1, 1], [R // 2] * 2, [1, 1], 1, algo)
        call = {"fwd": lambda: ops.conv2d(x, w, None, *args),
                "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), *args),
                "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), *args)}
        return x, w, call[pass_]

    run(1, 4, 6, 4)[2]()  # the code paged in, on a problem too small to matter
    x, w, call = run(N, C, H, K)
    a = next(a for p in cnnkern.explain(x, w, padding=R // 2).passes if p.name == pass_
             for a in p.algorithms if a.name == algo)
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    out = call()
    peak = (status("VmHWM") - before) * 1024 - out.numel() * out.element_size()
    print(json.dumps([peak, a.workspace_per_call, a.workspace_per_thread]))
""")

_CLEAR_REFS_OK = os.access("/proc/self/clear_refs", os.W_OK)


@pytest.mark.skipif(not _CLEAR_REFS_OK, reason="needs /proc/self/clear_refs (Linux) to reset "
                                              "the peak-RSS mark")
@pytest.mark.parametrize("algo, pass_, shape", [
    ("direct", "fwd", [8, 64, 56, 64, 3]),             # the input repacked, 6.9 MB
    ("direct", "bwd_weight", [8, 64, 56, 64, 3]),      # input, grad_output repacked, 13 MB
    ("im2col", "bwd_input", [1, 512, 14, 512, 3]),     # packed weights + a column tile, 13 MB
    ("winograd", "fwd", [8, 512, 14, 512, 3]),         # filter-streaming: 128 tiles, 11 MB
    ("winograd", "bwd_weight", [8, 512, 14, 512, 3]),  # filter-streaming, 20 MB
    ("winograd_f2", "fwd", [8, 256, 28, 256, 3]),      # blocked: packed filters + a block
    ("winograd_f2", "bwd_weight", [8, 256, 28, 256, 3]),  # blocked: dU + one block, 11 MB
], ids=lambda v: v if isinstance(v, str) else "x".join(map(str, v)))
def test_workspace_estimate_matches_the_peak_memory_of_a_call(algo, pass_, shape):
    if algo not in cnnkern.algorithms("cpu"):
        pytest.skip(f"{algo} is not built for the CPU")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PEAK, algo, pass_, json.dumps(shape)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    peak, per_call, per_thread = json.loads(out.stdout.splitlines()[-1])
    estimate = per_call + per_thread  # one thread
    # Upper bounds, so the peak stays below them but for what they do not count (the GEMM's
    # packing panels, 2 MB at most); and not loose ones: 90% of them at least is touched. (On
    # the AVX-512 CI machine every case came within 2% of its estimate, im2col's grad-weight
    # 0.4 MB above it: its GEMM panels.)
    assert 0.9 * estimate <= peak <= estimate + (2 << 20), (peak, per_call, per_thread)


# --- the CUDA backend: its priorities, and workspaces it allocates from torch's allocator ----

@pytest.mark.parametrize("dev", CUDA_DEVICES, indirect=True)
def test_cuda_auto_is_decided_by_priorities(dev):
    x, w = _problem(1, 8, 10, 8, 3, device=dev.device)
    for p in cnnkern.explain(x, w, padding=1).passes:
        head = "no auto rule on CUDA: the highest auto_priority that can run ("
        assert p.reason.startswith(head), p.reason
        listed = re.findall(r"(\w+) (-?\d+)", p.reason[len(head):p.reason.index(")")])
        priorities = [int(v) for _, v in listed]
        assert priorities == sorted(priorities, reverse=True) and len(listed) > 0
        assert [a.name for a in p.algorithms if a.built] == [n for n, _ in listed]
        assert p.runs == next(a.name for a in p.algorithms if a.can_run)
        direct = _status(p, "direct")
        assert (direct.workspace_per_call, direct.workspace_per_thread) == (0, 0)


@pytest.mark.parametrize("dev", GPU_ONLY, indirect=True)
@pytest.mark.parametrize("algo, pass_", [("winograd", "fwd"), ("winograd_f2", "bwd_input"),
                                         ("im2col", "bwd_weight")])
def test_cuda_workspace_estimate_is_what_the_call_allocates(dev, algo, pass_):
    x, w = _problem(4, 64, 28, 64, 3, device="cuda")
    go = torch.randn(4, 64, 28, 28, device="cuda")
    a = _status(_pass(cnnkern.explain(x, w, padding=1), pass_), algo)
    ops, args = torch.ops.cnnkern, ([1, 1], [1, 1], [1, 1], 1, algo)
    call = {"fwd": lambda: ops.conv2d(x, w, None, *args),
            "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), *args),
            "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), *args)}[pass_]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = call()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before - out.numel() * out.element_size()
    # The caching allocator rounds each block up to 512 bytes.
    assert a.workspace_per_call <= extra <= a.workspace_per_call + 1024, (extra, a)
