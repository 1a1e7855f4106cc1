"""The `cnnkern` command's subcommands, run in-process."""

import json

import pytest

from cnnkern.cli import main


def test_summary_prints_lenet5_counts(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    # LeNet-5: 61,706 parameters, of which 236 biases
    assert "total: 61,470 weights" in out
    assert "direct" in out and "features.0" in out


def test_check_reports_agreement(capsys):
    assert main(["check", "lenet5", "--algos", "direct", "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "lenet5 | algo direct | eval" in out and "top-1 agreement 100%" in out


def test_bench_writes_json(tmp_path, capsys):
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
