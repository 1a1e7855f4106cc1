"""bench/accuracy.py (python -m cnnkern.bench.accuracy): the numbers it reports and its tables."""

import os
import sys

import pytest
import torch

import cnnkern

# Import the repository's bench package (cnnkern.bench in an installed build).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import accuracy  # noqa: E402

LAYERS = {"conv2d": [
    dict(name="a3x3", N=1, C=8, H=9, W=7, K=6, R=3, S=3, stride=1, padding=1),
    dict(name="b5x5", N=1, C=4, H=20, W=20, K=3, R=5, S=5, stride=2, padding=2),
]}


def test_rel_errors_definition():
    ref = torch.tensor([1.0, -4.0, 2.0], dtype=torch.float64)
    out = torch.tensor([1.5, -4.0, 1.0])
    mx, mean = accuracy.rel_errors(out, ref)
    assert mx == pytest.approx(1.0 / 4.0)
    assert mean == pytest.approx((0.5 + 0.0 + 1.0) / 3 / 4.0)


def test_measure_every_algorithm_and_pass():
    algos = cnnkern.algorithms("cpu")
    rows = accuracy.measure(LAYERS, algos, accuracy.PASSES, crop=0)
    assert [(r["layer"], r["pass_"]) for r in rows] == [
        (name, p) for name in ("a3x3", "b5x5") for p in accuracy.PASSES]
    for r in rows:
        assert set(r["errors"]) == set(algos) | {accuracy.REFERENCE}
        for algo, v in r["errors"].items():
            if algo.startswith("winograd") and r["layer"] == "b5x5":
                assert isinstance(v, str) and "3x3" in v  # refused, with the reason
                continue
            mx, mean = v
            assert 0 <= mean <= mx < 1e-4, (r["layer"], r["pass_"], algo, v)
            assert mx > 0  # float32 rounding shows on standard-normal data


def test_crop_limits_the_spatial_size():
    rows = accuracy.measure(LAYERS, ["direct"], ["fwd"], crop=8)
    assert rows[0]["shape"] == "8->6 8x7 3x3" and rows[1]["shape"] == "4->3 8x8 5x5"


def test_markdown_table():
    rows = accuracy.measure(LAYERS, ["direct", "winograd"], ["fwd"], crop=0)
    text = accuracy.format_rows(rows, ["direct", "winograd", accuracy.REFERENCE], markdown=True)
    lines = text.splitlines()
    assert lines[0] == "| layer | shape | direct | winograd | torch |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[3].startswith("| b5x5 |") and "| n/a |" in lines[3]
    assert lines[-1].startswith("| **worst** |")
    assert len(lines) == 2 + len(rows) + 1


def test_main_prints_the_definitions(capsys, tmp_path):
    path = tmp_path / "layers.json"
    import json
    path.write_text(json.dumps({"conv2d": LAYERS["conv2d"][:1]}))
    assert accuracy.main(["--layers", str(path), "--algos", "direct"]) == 0
    out = capsys.readouterr().out
    assert "max|out32 - ref64| / max|ref64|" in out and "a3x3" in out and "torch" in out


def test_text_table_gives_refusals_as_numbered_footnotes():
    rows = accuracy.measure(LAYERS, ["direct", "winograd"], ["fwd"], crop=0)
    text = accuracy.format_rows(rows, ["direct", "winograd", accuracy.REFERENCE], markdown=False)
    lines = text.splitlines()
    b5 = next(l for l in lines if l.startswith("b5x5 "))
    assert b5.split()[-4] == "n/a¹"  # winograd's cell; torch's "max / mean" follows
    ok, why = cnnkern.can_implement(torch.empty(1, 4, 20, 20), torch.empty(3, 4, 5, 5),
                                    stride=2, padding=2, algo="winograd")
    assert not ok and lines[-1] == "¹ winograd: " + why.split(": ", 1)[1][len("winograd "):]
    # the errors on screen: the Markdown's numbers, exponent without its leading zero
    direct = rows[0]["errors"]["direct"]
    assert f"{direct[0]:.1e}".replace("e-0", "e-") in lines[2]
