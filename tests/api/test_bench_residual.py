"""bench/resnet_residual_fusion.py: its "before" engine really keeps the ResNet blocks' torch
add + ReLU while convert fuses them, and a tiny run prints one row per model."""

import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import model_engines, resnet_residual_fusion  # noqa: E402

import cnnkern  # noqa: E402
from cnnkern._block_forward import ResidualBlockForward  # noqa: E402


def _fused_blocks(model):
    return sum(isinstance(vars(m).get("forward"), ResidualBlockForward) for m in model.modules())


def test_kept_engine_keeps_the_tail_and_convert_fuses_it():
    base = model_engines.build_model("resnet18")
    before = cnnkern.convert(base, fuse_residual=False)
    after = cnnkern.convert(base)
    assert _fused_blocks(before) == 0 and _fused_blocks(after) == 8
    assert _fused_blocks(base) == 0   # convert copies; the torch model is untouched
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for m in (base, before, after):
        m.train()
        outs.append(m(x))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs[2], outs[0], rtol=1e-4, atol=1e-4)


def test_tiny_run_prints_one_row_per_model(capsys):
    assert resnet_residual_fusion.main(["--models", "resnet18", "--batch", "2", "--size", "32",
                                        "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("resnet18")]
    assert len(row) == 1
    cells = row[0].split()
    assert len(cells) == 6 and all(float(c) > 0 for c in cells[1:4])
    assert cells[4].endswith("x") and cells[5].endswith("x")


def test_tail_bench_prints_one_row_per_shape(capsys):
    from bench import residual_tail

    assert residual_tail.main(["--rounds", "1", "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("(")]
    assert len(rows) == len(residual_tail.SHAPES)
    for row in rows:
        cells = row.rsplit(None, 3)
        assert float(cells[1]) > 0 and float(cells[2]) > 0 and cells[3].endswith("x")


def test_tail_bench_kept_and_fused_compute_the_same():
    from bench import residual_tail

    grads = []
    for name in ("kept", "fused"):
        inputs = residual_tail.tail_inputs((2, 4, 5, 5))
        residual_tail.tails(*inputs)[name]()
        grads.append([t.grad for t in inputs[:4]])
    for a, b in zip(*grads):
        assert a is not None and torch.equal(a, b)
