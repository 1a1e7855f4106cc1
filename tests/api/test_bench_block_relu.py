"""bench/block_relu_fusion.py: its "before" engine really keeps GoogLeNet's F.relu calls
while convert fuses them, and a tiny run prints one row per model."""

import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import block_relu_fusion, model_engines  # noqa: E402

import cnnkern  # noqa: E402
from cnnkern._block_forward import FusedBlockForward  # noqa: E402


def _fused_blocks(model):
    return sum(isinstance(vars(m).get("forward"), FusedBlockForward) for m in model.modules())


def test_kept_engine_keeps_the_relu_calls_and_convert_fuses_them():
    base = model_engines.build_model("googlenet")
    before = block_relu_fusion.relu_call_kept(base)
    after = cnnkern.convert(base)
    assert _fused_blocks(before) == 0 and _fused_blocks(after) == 57  # every BasicConv2d
    assert _fused_blocks(base) == 0   # convert copies; the torch model is untouched
    x = torch.randn(1, 3, 64, 64)
    for m in (base, before, after):
        m.eval()
    with torch.no_grad():
        torch.testing.assert_close(after(x), base(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(before(x), base(x), rtol=1e-4, atol=1e-4)


def test_tiny_run_prints_one_row_per_model(capsys):
    assert block_relu_fusion.main(["--models", "googlenet", "--batch", "2", "--size", "32",
                                   "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("googlenet")]
    assert len(row) == 1
    cells = row[0].split()
    assert len(cells) == 6 and all(float(c) > 0 for c in cells[1:4])
    assert cells[4].endswith("x") and cells[5].endswith("x")
