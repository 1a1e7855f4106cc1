"""The benchmark suite's pieces: layer sets, FLOP counts, JSON fields, plots, autotune."""

import dataclasses
import json

import pytest
import torch

import cnnkern
from cnnkern.bench import peaks, runner
from cnnkern.tools.cli import main


@pytest.mark.parametrize("name", runner.layer_sets())
def test_every_layer_set_loads_and_is_well_formed(name):
    data = runner.load_layers(name)
    assert data["description"]
    assert data.get("conv2d") or data.get("pool2d")
    for layer in data.get("conv2d", []):
        p = runner.conv_problem(layer, None)
        P, Q = runner.conv_output_hw(p)
        assert P >= 1 and Q >= 1 and p["C"] % p["groups"] == 0, layer["name"]


def test_layer_sets_the_issue_names_exist():
    sets = set(runner.layer_sets())
    assert {"vgg16", "resnet50", "alexnet", "googlenet", "deepbench_train",
            "deepbench_inference", "convnet_benchmarks", "pool", "default"} <= sets
    assert len(runner.load_layers("vgg16")["conv2d"]) == 13
    assert [l["R"] for l in runner.load_layers("convnet_benchmarks")["conv2d"]] == [11, 9, 9, 7, 3]


@pytest.mark.parametrize("layer,flops", [
    # VGG16 conv1_1: 2 * 64 * 3 * 3 * 3 * 224 * 224
    ({"N": 1, "C": 3, "H": 224, "W": 224, "K": 64, "R": 3, "S": 3, "stride": 1, "padding": 1},
     173_408_256),
    # AlexNet conv1 (224, pad 2 -> 55x55): 2 * 96 * 3 * 11 * 11 * 55 * 55
    ({"N": 1, "C": 3, "H": 224, "W": 224, "K": 96, "R": 11, "S": 11, "stride": 4, "padding": 2},
     210_830_400),
    # AlexNet conv2, 2 groups: 2 * 256 * 48 * 5 * 5 * 27 * 27
    ({"N": 1, "C": 96, "H": 27, "W": 27, "K": 256, "R": 5, "S": 5, "stride": 1, "padding": 2,
      "groups": 2}, 447_897_600),
    # DeepBench speech layer: 700x161, 20x5 filter, stride 2 -> 79 x 341 outputs, batch 4
    ({"N": 4, "C": 1, "H": 161, "W": 700, "K": 32, "R": 5, "S": 20, "stride": [2, 2],
      "padding": [0, 0]}, 2 * 4 * 32 * 1 * 5 * 20 * 79 * 341),
])
def test_flop_counts_match_hand_computed(layer, flops):
    assert runner.conv_flops(runner.conv_problem(layer, None)) == flops


def test_bench_json_has_every_field_and_plots(tmp_path, capsys):
    layers = {"description": "tiny", "conv2d": [
        {"name": "tiny3x3", "N": 2, "C": 3, "H": 9, "W": 9, "K": 4, "R": 3, "S": 3, "stride": 1,
         "padding": 1},
        {"name": "tiny5x5s2", "N": 1, "C": 4, "H": 11, "W": 9, "K": 2, "R": 5, "S": 5,
         "stride": [2, 1], "padding": [2, 1]}],
        "pool2d": [{"name": "tinypool", "op": "max", "N": 1, "C": 2, "H": 8, "W": 8, "kernel": 2}]}
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(layers))
    out = tmp_path / "out.json"
    md = tmp_path / "out.md"
    plots = tmp_path / "plots"
    assert main(["--device", "cpu", "--layers", str(spec), "--min-time", "0.005", "--passes",
                 "all", "--layouts", "nchw,channels_last", "--algos", "direct,winograd",
                 "--json", str(out), "--markdown", str(md), "--plot", str(plots),
                 "--no-progress"]) == 0
    data = json.loads(out.read_text())
    fields = {f.name for f in dataclasses.fields(runner.Row)}
    assert all(set(r) == fields for r in data["rows"])
    assert {"date", "torch", "device", "threads"} <= set(data["environment"])
    assert data["peaks"]["float32"] > 0 and data["peaks"]["bandwidth"] > 0
    # measured on the CPU, and the JSON says how (bench/peaks.py)
    assert set(data["peak_sources"]) == set(data["peaks"]) == {
        "float32", "bandwidth", "bandwidth_cache"}
    assert "torch.mm" in data["peak_sources"]["float32"]
    assert "STREAM triad" in data["peak_sources"]["bandwidth"]
    conv = [r for r in data["rows"] if r["kind"] == "conv2d"]
    timed = [r for r in conv if r["ms"] is not None]
    assert {(r["pass_"], r["layout"]) for r in timed} == {
        (p, lo) for p in runner.PASSES for lo in runner.LAYOUTS}
    for r in timed:
        assert r["gflops"] > 0 and r["speedup"] > 0 and r["pct_peak"] > 0
        assert r["err_fp64"] < 1e-5 and r["ref_err_fp64"] < 1e-5 and r["max_err"] < 1e-5
        assert r["flops"] == runner.conv_flops(runner.conv_problem(
            next(l for l in layers["conv2d"] if l["name"] == r["layer"]), None))
    refused = [r for r in conv if r["algo"] == "winograd" and r["ms"] is None]
    assert refused and all(r["note"] for r in refused)  # listed, with the reason
    # auto (not asked for) is timed on every layer, pass and layout, with its pick
    auto = [r for r in timed if r["algo"] == "auto"]
    assert len(auto) == len(layers["conv2d"]) * len(runner.PASSES) * len(runner.LAYOUTS)
    assert all(r["picked"] in cnnkern.algorithms("cpu") for r in auto)
    # pooling's %peak is of a measured bandwidth: its GB/s over that peak
    for r in (r for r in data["rows"] if r["kind"] == "pool2d"):
        peak = data["peaks"][peaks.bandwidth_key(data["peaks"], r["bytes_moved"])]
        assert r["pct_peak"] == pytest.approx(100 * r["extra"]["GB/s"] * 1e9 / peak)
    assert md.read_text().startswith("| layer |")
    assert "| auto (" in md.read_text()
    assert {p.name for p in plots.iterdir()} == {"speedup_tiny.png", "roofline_tiny.png"}
    assert "tiny5x5s2" in capsys.readouterr().out


@pytest.fixture
def clean_cache():
    cnnkern.tuning.clear()
    yield
    cnnkern.tuning.clear()


def test_autotune_picks_the_fastest_stubbed_timing_deterministically(clean_cache, monkeypatch):
    x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
    built = ["direct", "im2col", "winograd"]
    monkeypatch.setattr("cnnkern.algo.algorithms", lambda device: built)
    monkeypatch.setattr("cnnkern.algo.can_implement", lambda *a, algo, **k: (True, ""))
    fake = {"direct": 3.0, "im2col": 1.0, "winograd": 1.0}  # a tie: the first listed wins
    calls = []

    def timer(fn):
        algo = fn.__defaults__[0]
        calls.append(algo)
        return fake[algo]

    choice = cnnkern.tuning.choose(x, w, None, [1, 1], [1, 1], [1, 1], 1, timer=timer)
    assert choice == "im2col" and calls == built
    # cached: no second round of timing
    assert cnnkern.tuning.choose(x, w, None, [1, 1], [1, 1], [1, 1], 1, timer=timer) == "im2col"
    assert calls == built


def test_autotune_context_manager_and_cache_round_trip(clean_cache, tmp_path):
    x, w = torch.randn(2, 3, 10, 10), torch.randn(5, 3, 3, 3)
    assert not cnnkern.tuning.enabled()
    with cnnkern.autotuning():
        assert cnnkern.tuning.enabled()
        y = cnnkern.conv2d(x, w, padding=1)
    assert not cnnkern.tuning.enabled()
    # the tuner may pick winograd (F(4x4)), ~10x direct's float32 error
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, padding=1), rtol=1e-4,
                               atol=1e-4)
    entries = cnnkern.tuning.cache()
    assert len(entries) == 1 and set(entries.values()) <= set(cnnkern.algorithms("cpu"))
    path = tmp_path / "tune.json"
    cnnkern.autotune_save(str(path))
    cnnkern.tuning.clear()
    assert cnnkern.autotune_load(str(path)) == 1 and cnnkern.tuning.cache() == entries
    key = json.loads(next(iter(entries)))
    assert key[1] == torch.__version__ and "threads" in key[0]  # re-tunes elsewhere


def test_autotune_cache_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something-else", "entries": {}}))
    with pytest.raises(ValueError, match="not a cnnkern autotune cache"):
        cnnkern.autotune_load(str(path))


def test_explain_names_the_reason_for_each_refused_algorithm():
    x, w = torch.randn(1, 4, 9, 9), torch.randn(4, 4, 5, 5)
    text = str(cnnkern.explain(x, w, stride=2))
    assert text.startswith("runs: ")
    for name in cnnkern.KNOWN_ALGORITHMS:
        line = next(l for l in text.splitlines() if l.strip().startswith(name + ":"))
        ok, why = cnnkern.can_implement(x, w, stride=2, algo=name)
        if name not in cnnkern.algorithms("cpu"):
            assert "not built" in line
        else:
            # The line gives the registry's reason; can_implement's adds "algo 'x' cannot
            # run ... on CPU:" before it.
            assert ("can run" in line) if ok else (line.split(": ", 1)[1] in why)


def test_autotune_switch_is_process_wide_and_blocks_are_per_thread(clean_cache):
    import threading

    try:
        cnnkern.autotune(True)
        assert cnnkern.tuning.enabled()
        seen = []
        with cnnkern.autotuning(False):
            assert not cnnkern.tuning.enabled()
            t = threading.Thread(target=lambda: seen.append(cnnkern.tuning.enabled()))
            t.start()
            t.join()
        assert seen == [True] and cnnkern.tuning.enabled()
    finally:
        cnnkern.autotune(False)
    assert not cnnkern.tuning.enabled()


def test_speedup_matrix_pivots_rows_and_names_every_miss():
    from cnnkern.bench import speedups
    rows = [
        {"layer": "a", "pass_": "fwd", "algo": "direct", "speedup": 0.4},
        {"layer": "a", "pass_": "fwd", "algo": "im2col", "speedup": 1.25},
        {"layer": "a", "pass_": "bwd_weight", "algo": "im2col", "speedup": 0.69},
        {"layer": "b", "pass_": "fwd", "algo": "direct", "speedup": None},  # could not run
    ]
    text = speedups.render({"rows": rows, "environment": {"threads": 2}},
                           speedups.parse_targets("direct=0.5, im2col=0.7"))
    assert "| layer | pass | direct | im2col |" in text
    assert "| a | fwd | 0.40* | 1.25 |" in text
    assert "| a | bwd_weight | - | 0.69* |" in text
    assert "| b |" not in text
    assert "Below target (2):" in text
    assert "- a fwd direct: 0.40x < 0.5x" in text and "- a bwd_weight im2col: 0.69x < 0.7x" in text
    with pytest.raises(ValueError, match="algo=ratio.*'direct'"):
        speedups.parse_targets("direct")


def test_fused_benchmark_runs_on_tiny_shapes(capsys):
    """bench/fused.py (python -m cnnkern.bench.fused --quick) end to end, so it cannot rot."""
    import os
    import sys
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    from bench import fused

    assert fused.main(["--quick", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "| 1 | float32 | quick 4x9 |" in text and "| 1 | float32 | quick 3x8 s2 |" in text
    rows = fused.run(["quick"], [1], batch=2, repeat=1, algo="auto")
    for r in rows:
        assert r["eval_max_abs_err"] < 1e-4
        assert r["eval_ratio"] > 0 and r["train_ratio"] > 0
        # fused saves z (+ per-channel stats); the unfused sequence z and the ReLU output
        assert 0 < r["saved_ours"] < r["saved_torch"]


# GPU only: CUDA-event timing and CUDA memory statistics (the emulator times nothing).
@pytest.mark.cuda
@pytest.mark.skipif(not cnnkern.cuda_available(), reason="needs a CUDA GPU and the CUDA build")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_benchmark_runs_on_the_gpu(dtype):
    """The CUDA side of bench/fused.py: CUDA-event timing, CUDA peak memory, both dtypes."""
    import os
    import sys
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    from bench import fused

    rows = fused.run(["quick"], [1], batch=2, repeat=1, algo="auto",
                     device=torch.device("cuda"), dtypes=[dtype])
    for r in rows:
        assert r["dtype"] == str(dtype).replace("torch.", "")
        assert r["eval_max_abs_err"] < (1e-4 if dtype == torch.float32 else 2e-2)
        assert r["eval_ratio"] > 0 and r["train_ratio"] > 0
        assert 0 < r["saved_ours"] < r["saved_torch"]
        assert r["peak_torch"] > 0 and r["peak_ours"] > 0
