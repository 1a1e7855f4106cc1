"""The `cnnkern` command's subcommands, run in-process."""

import json

import pytest
import torch

import cnnkern
from cnnkern.tools.cli import main


def test_summary_prints_lenet5_counts(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    # LeNet-5: 61,706 parameters, of which 236 biases
    assert "total: 61,470 weights" in out
    assert "features.0" in out
    assert any(f"{a} (auto's pick)" in out for a in cnnkern.algorithms("cpu"))


def _row(text: str, first: str):
    """The cells of the table line that starts with `first`."""
    return next(line.split() for line in text.splitlines() if line.startswith(first + " "))


def test_check_reports_agreement(capsys):
    assert main(["check", "lenet5", "--algos", "direct", "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "lenet5 | algo direct | cpu" in out
    for mode in ("eval", "train"):
        cells = _row(out, mode)
        assert cells[3] == "100%"  # top-1 agreement with the torch twin
        assert float(cells[2]) < 1e-5  # output max rel error against it


def test_check_bench_times_an_algorithm_some_layers_cannot_run(capsys):
    """LeNet-5's 5x5 convs cannot run winograd: those layers run auto (as the check itself
    does) instead of the timing failing."""
    assert main(["check", "lenet5", "--algos", "winograd", "--no-layers", "--bench",
                 "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 convs ran auto instead" in out
    for run in ("forward", "train step"):
        line = next(l for l in out.splitlines() if l.startswith("winograd") and run in l)
        assert float(line.split()[-3]) > 0 and line.endswith("x")  # images/s, ratio


@pytest.fixture
def fixed_peaks(monkeypatch):
    """Peaks as numbers rather than a few seconds of STREAM and GEMM (test_bench_table.py
    tests the measurement)."""
    from cnnkern.bench import peaks

    monkeypatch.setattr(peaks, "measure", lambda device, dtypes: (
        {"float32": 100e9, "bandwidth": 10e9, "bandwidth_cache": 50e9},
        {"float32": "fixed", "bandwidth": "fixed", "bandwidth_cache": "fixed"}))


def test_bench_writes_json(tmp_path, capsys, fixed_peaks):
    layers = {"conv2d": [{"name": "tiny", "N": 2, "C": 3, "H": 9, "W": 9, "K": 4, "R": 3, "S": 3,
                          "stride": 1, "padding": 1}],
              "pool2d": [{"name": "tinypool", "op": "max", "N": 1, "C": 2, "H": 8, "W": 8,
                          "kernel": 2}]}
    spec = tmp_path / "layers.json"
    spec.write_text(json.dumps(layers))
    out_json = tmp_path / "out.json"
    assert main(["--device", "cpu", "--layers", str(spec), "--min-time", "0.01",
                 "--passes", "all", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "tinypool" in table
    data = json.loads(out_json.read_text())
    assert data["environment"]["torch"]
    conv_rows = [r for r in data["rows"] if r["kind"] == "conv2d" and r["ms"] is not None]
    assert {r["pass_"] for r in conv_rows} == {"fwd", "bwd_input", "bwd_weight"}
    assert all(r["max_err"] < 1e-5 and r["gflops"] > 0 for r in conv_rows)
    # one auto row per pass, naming what the registry picks for it
    auto = [r for r in conv_rows if r["algo"] == "auto"]
    x, w = torch.empty(2, 3, 9, 9), torch.empty(4, 3, 3, 3)
    assert {r["pass_"]: r["picked"] for r in auto} == {
        p: cnnkern.select(x, w, padding=1, pass_=p) for p in ("fwd", "bwd_input", "bwd_weight")}
    assert all(r["picked"] is None for r in conv_rows if r["algo"] != "auto")
    assert data["peaks"]["bandwidth"] == 10e9 and data["peak_sources"]["float32"] == "fixed"


def test_bench_tf32_allows_cnnkern_tf32_and_records_it(tmp_path, capsys, request, fixed_peaks):
    """--tf32 lets cuDNN and cnnkern use TF32 (like for like); the JSON records cnnkern's flag,
    the ops get it, and the flag is back to its old value after the run."""
    from conftest import OpRecorder

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    request.addfinalizer(lambda: (setattr(torch.backends.cudnn, "allow_tf32", old[0]),
                                  setattr(torch.backends.cuda.matmul, "allow_tf32", old[1])))
    layers = {"conv2d": [{"name": "tiny", "N": 1, "C": 2, "H": 6, "W": 6, "K": 3, "R": 3, "S": 3,
                          "stride": 1, "padding": 1}]}
    spec = tmp_path / "layers.json"
    spec.write_text(json.dumps(layers))
    for flag in (False, True):
        out_json = tmp_path / f"out{flag}.json"
        argv = ["--device", "cpu", "--layers", str(spec), "--min-time", "0.001", "--algos",
                "direct", "--passes", "all", "--json", str(out_json), "--no-progress"]
        with OpRecorder() as rec:
            assert main(argv + (["--tf32"] if flag else [])) == 0
        env = json.loads(out_json.read_text())["environment"]
        assert env["cnnkern_allow_tf32"] is flag
        conv_ops = {"cnnkern::conv2d", "cnnkern::conv2d_backward_input",
                    "cnnkern::conv2d_backward_weight"}
        calls = [args for name, args, _ in rec.calls if name in conv_ops]
        assert len(calls) >= 3 and all((len(a) > 8 and a[8]) == flag for a in calls)
        assert cnnkern.backends.get_allow_tf32() is False
    capsys.readouterr()


def test_bench_rejects_unknown_pass(capsys):
    assert main(["--passes", "sideways"]) == 2
    assert "unknown pass" in capsys.readouterr().err


def test_train_digits_writes_a_plot(tmp_path, capsys):
    png = tmp_path / "curve.png"
    assert main(["train-digits", "--epochs", "1", "--no-torch", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "held-out accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["summary", "nosuchmodel"], ["check"]])
def test_bad_arguments_exit_nonzero(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code != 0
