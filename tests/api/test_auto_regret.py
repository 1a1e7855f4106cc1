"""`cnnkern auto-regret` (bench/auto_regret.py): auto's time against the fastest algorithm."""

import json
import math
import os
import time

import pytest
import torch

from cnnkern.bench import auto_regret
from cnnkern.tools.cli import main

TINY = {"description": "tiny", "conv2d": [
    {"name": "tiny3x3", "N": 2, "C": 16, "H": 10, "W": 10, "K": 16, "R": 3, "S": 3, "stride": 1,
     "padding": 1},
    {"name": "tiny5x5s2", "N": 1, "C": 4, "H": 11, "W": 9, "K": 8, "R": 5, "S": 5,
     "stride": [2, 1], "padding": [2, 1]}]}


def test_summarise_computes_regret_against_the_fastest_eligible_algorithm():
    ms = {"direct": 10.0, "im2col": 5.0, "winograd": 2.0, "auto": 10.5}
    r = auto_regret.summarise("s", "l", "shape", "fwd", "direct", ms)
    assert r.best == "im2col"            # winograd is faster but not auto's to pick
    assert r.regret == pytest.approx(2.1)
    assert r.pick_regret == pytest.approx(2.0)
    assert r.best_any == "winograd"
    assert r.regret_any == pytest.approx(5.25)
    assert r.regret_min == r.regret  # no fastest rounds given: the medians stand for them
    r = auto_regret.summarise("s", "l", "shape", "fwd", "direct", ms,
                              {"direct": 4.0, "im2col": 4.5, "winograd": 1.0, "auto": 4.4})
    assert r.regret_min == pytest.approx(1.1)  # against direct, fastest on its best round


def test_summary_counts_layers_within_the_target_per_pass():
    rs = [auto_regret.summarise("s", f"l{i}", "", p, "im2col",
                                {"im2col": t, "direct": 1.0, "auto": t})
          for i, (p, t) in enumerate([("fwd", 1.0), ("fwd", 1.3), ("bwd_input", 0.9)])]
    s = auto_regret.summary(rs)
    assert (s["within"], s["of"]) == (2, 3)
    assert s["by_pass"] == {"fwd": {"within": 1, "of": 2}, "bwd_input": {"within": 1, "of": 1}}
    assert s["worst"][0]["layer"] == "l1" and s["worst"][0]["regret"] == pytest.approx(1.3)
    assert s["within_min"] == 2
    assert s["geomean_regret"] == pytest.approx((1.0 * 1.3 * 1.0) ** (1 / 3))


def test_spread_keeps_first_and_last():
    items = list(range(10))
    assert auto_regret.spread(items, 3) == [0, 4, 9]  # round(4.5) is 4: banker's rounding
    assert auto_regret.spread(items, 1) == [0]
    assert auto_regret.spread(items, None) == items
    assert auto_regret.spread(items, 20) == items


def test_interleaved_times_are_per_call_per_round_and_rotate_the_order(monkeypatch):
    # A fake clock: each block's seconds come from a script per function, so the figures are
    # known exactly.
    script = {"a": [0.001, 0.002, 0.002, 0.050, 0.002], "b": [0.004, 0.008, 0.500, 0.008, 0.008]}
    order, calls_seen = [], []

    def fake_block(fn, calls, clock):
        assert clock is auto_regret.time.process_time  # Settings.clock="cpu"
        name = fn()
        order.append(name)
        calls_seen.append(calls)
        return script[name].pop(0) * calls

    monkeypatch.setattr(auto_regret, "_block", fake_block)
    settings = auto_regret.Settings(rounds=4, block_s=0.004, clock="cpu")
    times = auto_regret.interleaved_times({"a": lambda: "a", "b": lambda: "b"}, settings)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-ups, rounds
    # the warm-up sizes each block to >= 4 ms: 4 calls of a (1 ms), 1 of b (4 ms)
    assert calls_seen == [1, 1] + [4 if n == "a" else 1 for n in order[2:]]
    assert times == {"a": pytest.approx([0.002, 0.002, 0.050, 0.002]),
                     "b": pytest.approx([0.008, 0.500, 0.008, 0.008])}


def test_candidates_are_what_the_registry_can_run():
    p3 = auto_regret.runner.conv_problem(TINY["conv2d"][0], None)
    p5 = auto_regret.runner.conv_problem(TINY["conv2d"][1], None)
    for pass_ in ("fwd", "bwd_input", "bwd_weight"):
        assert {"direct", "im2col", "winograd", "winograd_f2"} <= set(
            auto_regret.candidates(p3, pass_))
        c5 = auto_regret.candidates(p5, pass_)
        assert "winograd" not in c5 and "winograd_f2" not in c5 and "im2col" in c5
        assert auto_regret.picked(p5, pass_) in c5


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()  # the command sets its own (--threads)
    yield
    torch.set_num_threads(threads)


def test_cli_writes_text_and_json_with_one_row_per_layer_and_pass(tmp_path, capsys,
                                                                  keep_threads):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    out_json, out_txt = tmp_path / "r.json", tmp_path / "r.txt"
    assert main(["auto-regret", "--sets", str(spec), "--quick", "--threads", "1", "--clock", "cpu",
                 "--json", str(out_json), "--txt", str(out_txt)]) == 0
    data = json.loads(out_json.read_text())
    rows = data["results"]
    assert [(r["layer"], r["pass_"]) for r in rows] == [
        (layer["name"], p) for layer in TINY["conv2d"]
        for p in ("fwd", "bwd_input", "bwd_weight")]
    for r in rows:
        assert r["set"] == "tiny"
        algos = {a: t for a, t in r["ms"].items() if a != "auto"}
        assert "auto" in r["ms"] and r["picked"] in algos
        eligible = {a: t for a, t in algos.items() if a != "winograd"}
        assert r["best"] == min(eligible, key=eligible.get)
        assert r["regret"] == pytest.approx(r["ms"]["auto"] / eligible[r["best"]])
        fastest = min(t for a, t in r["ms_min"].items() if a not in ("auto", "winograd"))
        assert r["regret_min"] == pytest.approx(r["ms_min"]["auto"] / fastest)
        assert all(r["ms_min"][a] <= r["ms"][a] for a in r["ms"])
        assert all(t > 0 and math.isfinite(t) for t in r["ms"].values())
    assert set(rows[3]["ms"]) == {"direct", "im2col", "auto"}  # 5x5 stride 2: no Winograd
    s = data["summary"]
    assert s["of"] == 6 and s["within"] == sum(r["regret"] <= 1.10 for r in rows)
    assert data["settings"]["rounds"] == 3 and data["settings"]["clock"] == "cpu"
    assert data["environment"]["threads"] == 1
    text = out_txt.read_text()
    assert data["environment"]["isa"] in text and f"within 1.10: {s['within']}/6" in text
    spinning = os.environ.get("OMP_WAIT_POLICY", "").lower() != "passive"
    assert ("warning: --clock cpu without OMP_WAIT_POLICY=PASSIVE" in text) == spinning
    assert "tiny5x5s2" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--passes", "sideways"], "unknown pass 'sideways'"),
    (["--threads", "0"], "--threads must be at least 1; got 0"),
    (["--rounds", "0"], "--rounds must be at least 1; got 0"),
    (["--clock", "sundial"], "invalid choice: 'sundial'"),
])
def test_bad_arguments_name_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["auto-regret"] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
