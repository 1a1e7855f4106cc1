"""bench/models.py (`cnnkern models`, python -m bench.models): the whole-model benchmark.

The real command runs once on a tiny configuration (ResNet-18, batch 2, 32x32, one timed call
per engine); the layer-kind classification is judged on hand-built single-layer models, whose
kind is known, on both engines and in both phases; the optional engines' skip notes are
provoked by hiding their packages.
"""

import json
import math
import os
import sys
import time

import pytest
import torch
from torch import nn

import cnnkern

# Import the repository's bench package (cnnkern.bench in an installed build).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import layer_kinds, model_engines, models  # noqa: E402

TINY = ["--models", "resnet18", "--batch", "2", "--size", "32", "--min-time", "0",
        "--min-reps", "1", "--profile-reps", "1", "--no-compile", "--no-progress"]
CONV_KINDS = [k for k in layer_kinds.KINDS if k.startswith("conv")]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The real command on ResNet-18, ONNX Runtime present: (stdout, JSON)."""
    path = tmp_path_factory.mktemp("models") / "out.json"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert models.main(TINY + ["--json", str(path)]) == 0
    return buf.getvalue(), json.loads(path.read_text())


def test_command_table_and_json(tiny_run):
    text, data = tiny_run
    m = data["models"][0]
    assert m["model"] == "resnet18" and m["params"] == 11_689_512  # torchvision's count
    for phase in ("eval", "train"):
        ms = {e: v["median_ms"] for e, v in m[phase].items() if "median_ms" in v}
        assert m[f"{phase}_ratio"] == pytest.approx(ms["torch"] / ms["cnnkern"])
        # one model: its ratio is the geomean
        assert data["targets"][phase]["geomean"] == pytest.approx(m[f"{phase}_ratio"])
        assert data["targets"][phase]["met"] == (m[f"{phase}_ratio"] >= models.TARGETS[phase])
    # the same logits as torch (cnnkern, ONNX Runtime) and the same loss
    assert m["eval_logits_abs_max"] > 1e-2  # calibrated BN: the logits did not vanish
    assert m["eval"]["cnnkern"]["max_rel_err_vs_torch"] < 1e-4
    assert m["eval"]["onnxruntime"]["max_rel_err_vs_torch"] < 1e-4
    assert m["eval"]["onnxruntime"]["median_ms"] > 0
    # the first training step's loss against float64 (BN over 2 images amplifies rounding, so
    # torch's own float32 loss is ~2e-4 off): no further off than torch's, up to 3x
    x, labels = models.inputs(2, 32)
    ref = nn.functional.cross_entropy(
        model_engines.build_model("resnet18").double().train()(x.double()), labels).item()
    err = {e: abs(m["train"][e]["loss"] - ref) for e in ("torch", "cnnkern")}
    assert err["cnnkern"] <= 3 * err["torch"] + 1e-6 * abs(ref), err
    assert m["eval"]["torch.compile"]["note"] == "torch.compile: not run (--no-compile)"
    env = data["environment"]
    assert env["threads"] == 2 and env["cpu"] and env["torch"] == torch.__version__
    assert all(f.startswith(("avx", "amx")) or f in ("fma", "f16c") for f in env["cpu_flags"])
    # the table: the model's row, the kinds, the targets, the skipped engine's note
    assert "resnet18" in text and "where the time goes" in text
    assert f"{m['eval_ratio']:.2f}x" in text
    assert "target eval geomean >= 1.5x" in text and "target train geomean >= 1.3x" in text
    assert "¹ torch.compile: not run (--no-compile)" in text


def test_report_from_saved_json_prints_the_same_tables(tiny_run, tmp_path, capsys):
    text, data = tiny_run
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(data))
    assert models.main(["--report", str(path)]) == 0
    assert capsys.readouterr().out == text


def test_kinds_sum_to_the_profiled_total(tiny_run):
    _, data = tiny_run
    m = data["models"][0]
    for phase in ("eval", "train"):
        for engine in ("torch", "cnnkern"):
            kinds = m[f"{phase}_kinds"][engine]
            assert sum(kinds[k] for k in layer_kinds.KINDS) == pytest.approx(kinds["total"],
                                                                               rel=1e-3)
            # ResNet-18 has 3x3 s1 convs, strided convs (the stem, the downsampling 3x3 and
            # 1x1), BN, ReLU and pooling, and no stride-1 1x1, grouped or other-size conv
            for kind in ("conv 3x3", "conv strided", "BN / ReLU", "pooling", "other"):
                if not (engine == "cnnkern" and phase == "eval" and kind == "BN / ReLU"):
                    assert kinds[kind] > 0, (phase, engine, kind)
            for kind in ("conv 1x1", "conv depthwise/grouped", "conv other sizes"):
                assert kinds[kind] == 0, (phase, engine, kind)
    assert models.kinds_sum_ok(m)


@pytest.mark.parametrize("conv, kind", [
    (nn.Conv2d(8, 16, 1), "conv 1x1"),
    (nn.Conv2d(8, 16, 3, padding=1), "conv 3x3"),
    (nn.Conv2d(8, 16, 3, stride=2, padding=1), "conv strided"),
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), "conv depthwise/grouped"),
    (nn.Conv2d(8, 16, 5, padding=2), "conv other sizes"),
], ids=["1x1", "3x3", "strided", "depthwise", "5x5"])
@pytest.mark.parametrize("engine", ["torch", "cnnkern"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_hand_built_conv_lands_in_its_kind(conv, kind, engine, train):
    model = nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(), nn.MaxPool2d(2))
    if engine == "cnnkern":
        model = cnnkern.convert(model)
    model.train(train)
    x = torch.randn(2, 8, 12, 12)

    def step():
        if train:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    step()
    kinds = layer_kinds.profile_kinds(step)
    assert kinds[kind] > 0
    assert all(kinds[k] == 0 for k in CONV_KINDS if k != kind), kinds
    assert kinds["pooling"] > 0
    # cnnkern's eval folds BN into the conv and runs the ReLU in its epilogue
    assert (kinds["BN / ReLU"] > 0) == (engine == "torch" or train), kinds
    assert sum(kinds[k] for k in layer_kinds.KINDS) == pytest.approx(kinds["total"], rel=1e-3)


def test_calibrate_batch_norm_takes_one_pass_statistics():
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3)
    model = nn.Sequential(conv, bn).eval()
    x = torch.randn(5, 3, 8, 8)
    model_engines.calibrate_batch_norm(model, x)
    with torch.no_grad():
        z = conv(x).double()
    torch.testing.assert_close(bn.running_mean.double(), z.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    # BatchNorm keeps the unbiased variance
    torch.testing.assert_close(bn.running_var.double(), z.var((0, 2, 3), unbiased=True),
                               rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.3 and not model.training  # the settings it found are back


def test_profile_reps_keep_the_median_call():
    sleeps = iter([0.01, 0.08, 0.04])
    kinds = layer_kinds.profile_kinds(lambda: time.sleep(next(sleeps)), reps=3)
    assert 40 <= kinds["total"] < 80  # the 40 ms call, not the 10 or 80 ms one
    assert kinds["other"] == pytest.approx(kinds["total"])  # sleeping is nobody's layer
    with pytest.raises(ValueError, match="reps must be at least 1; got 0"):
        layer_kinds.profile_kinds(lambda: None, reps=0)


def test_conv_kind_rules():
    assert layer_kinds.conv_kind([64, 64, 3, 3], [1, 1], 1) == "conv 3x3"
    assert layer_kinds.conv_kind([64, 64, 1, 1], [1, 1], 1) == "conv 1x1"
    assert layer_kinds.conv_kind([64, 64, 1, 1], [2, 2], 1) == "conv strided"
    assert layer_kinds.conv_kind([64, 3, 7, 7], [2, 2], 1) == "conv strided"
    assert layer_kinds.conv_kind([64, 1, 3, 3], [2, 2], 64) == "conv depthwise/grouped"
    assert layer_kinds.conv_kind([64, 3, 1, 7], [1, 1], 1) == "conv other sizes"
    with pytest.raises(ValueError, match="aten::conv2d"):
        layer_kinds.op_kind("aten::conv2d", [[1, 3, 8, 8], [], []], [None] * 7)


def test_time_interleaved_takes_turns_until_both_limits():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.01))}
    times = models.time_interleaved(fns, min_time=0.05, min_reps=3)
    rounds = len(times["a"])
    assert calls == ["a", "b"] * rounds  # turns, one call each per round
    assert len(times["b"]) == rounds >= 3
    spent = sum(times["a"]) + sum(times["b"])
    assert spent >= 0.05
    assert spent - times["a"][-1] - times["b"][-1] < 0.05  # and not one round more than needed
    assert len(models.time_interleaved(fns, min_time=0, min_reps=3)["a"]) == 3


def test_targets_geomean_and_floor():
    ms = [{"model": "a", "eval_ratio": 2.0, "train_ratio": 1.2},
          {"model": "b", "eval_ratio": 0.5, "train_ratio": 1.5}]
    t = models.targets(ms)
    assert t["eval"]["geomean"] == pytest.approx(1.0) and not t["eval"]["met"]
    assert t["eval"]["below_floor"] == ["b"] and not t["eval"]["floor_met"]
    assert t["train"]["geomean"] == pytest.approx(math.sqrt(1.8)) and t["train"]["met"]
    assert t["train"]["floor_met"]
    lines = models.target_lines(t)
    assert "target eval geomean >= 1.5x: 1.00x, NOT met" in lines
    assert "target no model below 1.0x in eval: NOT met (b)" in lines
    assert "target train geomean >= 1.3x: 1.34x, met" in lines


def test_onnxruntime_absent_note_through_the_cli(monkeypatch, capsys):
    """`cnnkern models` with onnxruntime hidden: the run goes on, the note says what is missing."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    monkeypatch.setitem(sys.modules, "cnnkern.bench.models", models)  # this checkout's bench
    from cnnkern.tools import cli

    assert cli.main(["models"] + TINY + ["--no-train"]) == 0
    text = capsys.readouterr().out
    assert "ONNX Runtime: skipped, the onnxruntime package is not installed" in text
    assert "n/a²" in text  # the ORT cell points at the note (¹ is --no-compile's)


def test_onnx_absent_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    e = model_engines.onnxruntime_eval(nn.Conv2d(1, 1, 1), torch.randn(1, 1, 4, 4), 1)
    assert e.fn is None
    assert e.note == ("ONNX Runtime: skipped, the onnx package is not installed "
                      "(torch.onnx.export needs it: pip install onnx)")


def test_onnxruntime_present_matches_torch():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = torch.randn(2, 3, 6, 6)
    e = model_engines.onnxruntime_eval(model, x, 1)
    assert e.note == "" and e.info["onnxruntime"]
    with torch.no_grad():
        torch.testing.assert_close(e.fn(), model(x), rtol=1e-5, atol=1e-5)


def test_compile_failure_and_time_limit_notes(monkeypatch):
    x = torch.randn(1, 1, 4, 4)

    def broken(model):
        raise RuntimeError("no C++ compiler\nsecond line")
    monkeypatch.setattr(torch, "compile", broken)
    e = model_engines.compiled_eval(nn.Conv2d(1, 1, 1), x, 60)
    assert e.fn is None and e.note == "torch.compile failed: RuntimeError: no C++ compiler"

    class Slow(nn.Module):  # a "compiler" whose first call takes 5 s
        def forward(self, inp):
            time.sleep(5)
    monkeypatch.setattr(torch, "compile", lambda model: Slow())
    start = time.perf_counter()
    e = model_engines.compiled_eval(nn.Conv2d(1, 1, 1), x, 0.2)
    assert time.perf_counter() - start < 2
    assert e.fn is None and "compiling took over 0.2 s" in e.note


@pytest.mark.parametrize("argv, message", [
    (["--models", "resnet18,lenet"], "--models: unknown model 'lenet'"),
    (["--batch", "0"], "--batch must be at least 1; got 0"),
    (["--min-time", "-1"], "--min-time must be >= 0; got -1.0"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    assert models.main(argv) == 2
    assert message in capsys.readouterr().err
