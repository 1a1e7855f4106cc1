"""The main job's output as a person reads it (bench/report.py, cnnkern/tools/console.py), the
peaks behind %peak (bench/peaks.py), the timing helper (bench/timing.py), and a small real
run of `python -m cnnkern` in a subprocess, as scripts/run.sh runs it into a log."""

import io
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from cnnkern.bench import peaks, plots, report, timing
from cnnkern.bench.runner import Row
from cnnkern.tools import console

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WINOGRAD_WHY = ("algo '{a}' cannot run this problem on CPU: {a} needs a 3x3 kernel with stride 1 "
                "and dilation 1; got 5x5 kernel, stride 1, dilation 1")


def _timed(layer, algo, speedup, pass_="fwd", **kw):
    return Row("conv2d", layer, "1x4x9x9 k4 5x5 s1 p2", pass_, algo, ms=1.0, gflops=2.0,
               pct_peak=10.0, ref_ms=speedup, speedup=speedup, max_err=1e-7,
               err_fp64=kw.pop("err", 1e-7), ref_err_fp64=kw.pop("ref_err", 1e-7), **kw)


def _refused(layer, algo, note):
    return Row("conv2d", layer, "1x4x9x9 k4 5x5 s1 p2", "fwd", algo, note=note)


def test_short_reason_drops_the_prefix_and_the_algorithm_only():
    assert report.short_reason(WINOGRAD_WHY.format(a="winograd_f2")) == (
        "needs a 3x3 kernel with stride 1 and dilation 1; got 5x5 kernel, stride 1, dilation 1")
    assert report.short_reason("no CPU kernels for this dtype") == "no CPU kernels for this dtype"


def test_refusals_are_tags_with_each_reason_once_under_the_table():
    rows = [_timed("a", "auto", 1.0, picked="direct"), _timed("a", "direct", 1.0),
            _refused("a", "winograd", WINOGRAD_WHY.format(a="winograd")),
            _refused("a", "winograd_f2", WINOGRAD_WHY.format(a="winograd_f2")),
            _refused("b", "winograd", "something else entirely")]
    text = report.format_report(rows, "torch", 1.0, width=120)
    lines = text.splitlines()
    assert [l.split()[-1] for l in lines if " winograd" in l and "n/a" in l] == [
        "n/a¹", "n/a¹", "n/a²"]
    assert lines.count("¹ winograd, winograd_f2: needs a 3x3 kernel with stride 1 and dilation 1;"
                       " got 5x5 kernel, stride 1, dilation 1") == 1
    assert lines.count("² winograd: something else entirely") == 1
    assert text.count("needs a 3x3") == 1  # never in a row
    assert any(l.split()[:3] == ["a", "fwd", "auto"] and "(direct)" in l for l in lines)


def test_summary_three_lines_worked_by_hand():
    rows = [_timed("a", "auto", 2.0, picked="im2col"), _timed("a", "im2col", 2.0),
            _timed("b", "auto", 0.5, picked="direct", err=3e-7, ref_err=2e-7),
            _timed("b", "direct", 0.4, err=3e-7), _timed("b", "im2col", 0.45),
            _timed("b", "winograd", 0.3, err=4e-6, ref_err=2e-7),
            Row("pool2d", "p", "1x2x8x8 max", "fwd", "max", ms=1.0, ref_ms=4.0, speedup=4.0)]
    lines = report.summary_lines(rows, "torch")
    # auto's geomean: sqrt(2 * 0.5) = 1; pooling's beside it, not mixed in
    assert lines == [
        "auto vs torch: geomean 1.00x over 2 conv layer-passes (pooling 4.00x over 1 layer; "
        ">1: cnnkern faster)",
        # auto's own row is not a rival: the fastest algorithm timed by name is
        "worst layer: b fwd 0.50x (auto ran direct; fastest algorithm here: im2col 0.45x)",
        "largest error vs fp64: 4.0e-06, winograd on b fwd (torch's own 2.0e-07); auto 3.0e-07"]
    assert report.format_report(rows, "torch", 1.0).splitlines()[-3:] == lines
    assert report.summary_lines(rows[-1:], "torch") == [
        "auto vs torch: no convolution timed (pooling 4.00x over 1 layer; >1: cnnkern faster)",
        "worst layer: p 4.00x", "largest error vs fp64: - (no convolution was timed)"]
    assert report.geomean([2.0, 8.0]) == pytest.approx(4.0)


def test_peak_lines_say_how_each_peak_was_found():
    lines = report.peak_lines({"float32": 150e9, "bandwidth": 7.25e9},
                              {"float32": "measured: GEMM", "bandwidth": "measured: STREAM"})
    assert lines == ["peak float32: 150 GFLOP/s, measured: GEMM",
                     "peak memory bandwidth: 7.2 GB/s, measured: STREAM"]


def test_stream_computes_the_triad_and_counts_bytes_as_stream_does():
    results = []

    def timer(fn, repeats, min_time):
        results.append(fn().clone())
        return 0.5

    n = 1000
    triad, copy = peaks.stream(torch.device("cpu"), 4 * n, timer=timer)
    assert triad == 3 * 4 * n / 0.5 and copy == 2 * 4 * n / 0.5  # two arrays read, one written
    assert torch.equal(results[0], torch.full((n,), 1.0 + 3 * 2.0))  # a = b + 3*c
    assert torch.equal(results[1], torch.full((n,), 1.0))  # a = b


def test_cnnkern_gemm_candidate_is_the_same_gemm_as_torch_mm():
    outputs = []

    def timer(fn, repeats=3):
        outputs.append(fn())
        return 0.25

    rates = peaks.gemm_flops(torch.device("cpu"), torch.float64, n=48, timer=timer)
    assert rates == {"torch.mm": 2 * 48**3 / 0.25, "cnnkern im2col": 2 * 48**3 / 0.25}
    torch.testing.assert_close(outputs[1].reshape(48, 48), outputs[0])


def test_measure_takes_the_better_gemm_and_datasheet_on_known_gpus(monkeypatch):
    monkeypatch.setattr(peaks, "gemm_flops", lambda device, dtype: {"torch.mm": 90e9,
                                                                    "cnnkern im2col": 120e9})
    monkeypatch.setattr(peaks, "stream", lambda device, nbytes, min_time: (
        (6e9, 5e9) if nbytes > peaks.CACHE_ARRAY_BYTES else (40e9, 30e9)))
    values, sources = peaks.measure(torch.device("cpu"), [torch.float32, torch.float16])
    assert values == {"float32": 120e9, "bandwidth": 6e9, "bandwidth_cache": 40e9}
    assert "torch.mm (90.0) and cnnkern im2col (120.0)" in sources["float32"]
    assert "STREAM triad" in sources["bandwidth"] and "copy 5.0 GB/s" in sources["bandwidth"]
    assert all(s.startswith("measured") for s in sources.values())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB")
    values, sources = peaks.measure(torch.device("cuda"), [torch.float32])
    assert values == peaks.GPU_PEAKS["H100"]
    assert all("datasheet" in s for s in sources.values())


def test_pooling_is_held_to_the_cache_bandwidth_when_it_fits():
    p = {"bandwidth": 5e9, "bandwidth_cache": 40e9}
    assert peaks.bandwidth_key(p, 3 * peaks.CACHE_ARRAY_BYTES) == "bandwidth_cache"
    assert peaks.bandwidth_key(p, 3 * peaks.CACHE_ARRAY_BYTES + 1) == "bandwidth"
    assert peaks.bandwidth_key({"bandwidth": 5e9}, 10) == "bandwidth"  # datasheet: one figure


def test_roofs_are_min_of_compute_and_bandwidth_times_intensity():
    lines = plots.roof_lines({"float32": 100e9, "bandwidth": 10e9, "bandwidth_cache": 50e9},
                             {"float32": "measured: ..."}, {"float32"}, 1.0, 100.0)
    assert lines == [("roof float32, memory (measured)", [1.0, 10.0, 100.0], [10.0, 100.0, 100.0],
                      "-"),
                     ("roof float32, cache (measured)", [1.0, 2.0, 100.0], [50.0, 100.0, 100.0],
                      "--")]


def test_median_seconds_of_a_known_sleep():
    t = timing.median_seconds(lambda: time.sleep(0.002), 0.03)
    assert 0.002 <= t < 0.02
    calls = []
    assert timing.best_seconds(lambda: calls.append(1), 4) >= 0 and len(calls) == 5  # + warm-up
    start = time.perf_counter()
    timing.best_seconds(lambda: None, 1, min_time=0.05)
    assert time.perf_counter() - start >= 0.05


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one():
    log = io.StringIO()
    with console.Progress(2, file=log) as bar:
        bar.step("a")
        bar.step("b")
    assert [l.rsplit(" (", 1)[0] for l in log.getvalue().splitlines()] == ["[1/2] a", "[2/2] b"]
    assert "\r" not in log.getvalue()
    silent = io.StringIO()
    with console.Progress(2, file=silent, enabled=False) as bar:
        bar.step("a")
    assert silent.getvalue() == ""
    with console.Progress(1, file=_Terminal()) as bar:
        assert bar._bar is not None  # rich's live bar
        bar.step("a")
    assert bar._bar is None


def test_tables_fit_the_width_and_read_no_markup():
    t = console.table(["name", "value"], right=["value"], wrap=["name"])
    console.add_row(t, ["[bold]x[/bold] " + "long words " * 20, "1.5"])
    text = console.render(t, width=60)
    assert max(len(l) for l in text.splitlines()) <= 60
    assert "[bold]x[/bold]" in text
    assert console.output_width(io.StringIO()) == 120


def test_echo_spells_superscripts_in_ascii_where_the_log_cannot_encode_them():
    raw = io.BytesIO()
    log = io.TextIOWrapper(raw, encoding="ascii")
    console.echo("n/a¹² ─", log)
    assert raw.getvalue() == b"n/a^1^2 -\n"


def test_small_real_run_reads_well_in_a_log(tmp_path):
    """`python -m cnnkern` into pipes, as scripts/run.sh into a log: no CUDA-runtime warning
    at import, no carriage-return progress frames, nothing wider than 120 columns, refusals
    as footnotes, the peaks with their method, and the three summary lines at the end."""
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"conv2d": [
        {"name": "tiny5x5", "N": 1, "C": 4, "H": 9, "W": 9, "K": 4, "R": 5, "S": 5, "stride": 1,
         "padding": 2}],
        "pool2d": [{"name": "tinypool", "op": "max", "N": 1, "C": 2, "H": 8, "W": 8,
                    "kernel": 2}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkern", "--device", "cpu", "--layers", str(spec),
         "--min-time", "0.001", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "No CUDA runtime" not in proc.stderr and "Warning" not in proc.stderr
    assert "\r" not in proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[0].startswith("[1/2] tiny5x5 (")
    lines = proc.stdout.splitlines()
    assert max(len(l) for l in lines + proc.stderr.splitlines()) <= 120
    assert sum(l.startswith("¹ winograd, winograd_f2: needs a 3x3 kernel") for l in lines) == 1
    assert sum("n/a¹" in l for l in lines) == 2
    assert any(l.startswith("peak memory bandwidth: ") and "STREAM triad" in l for l in lines)
    auto = next(l for l in lines if l.startswith("tiny5x5 "))
    assert "auto (" in auto
    speedup = auto.split()[8]
    assert lines[-3].startswith("auto vs torch: geomean ")
    assert lines[-2].startswith("worst layer: ")
    assert lines[-1].startswith("largest error vs fp64: ")
    # one conv layer-pass: the geomean is its auto row's speedup; pooling's beside it
    pool = next(l for l in lines if l.startswith("tinypool ")).split()[-2]
    assert lines[-3].split()[4] == speedup and speedup.endswith("x")
    assert f"(pooling {pool} over 1 layer" in lines[-3]
