"""bench/relu6_fusion.py: the before / after comparison of the fused ReLU6 runs, and its
"before" engine really leaves the ReLU6 modules unfused while convert fuses them."""

import os
import sys

from torch import nn

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import layer_kinds, model_engines, relu6_fusion  # noqa: E402

import cnnkern  # noqa: E402


def _count(model, kind):
    return sum(type(m) is kind for m in model.modules())


def test_unfused_engine_keeps_relu6_and_convert_fuses_it():
    base = model_engines.build_model("mobilenet_v2")
    relu6 = _count(base, nn.ReLU6)
    assert relu6 == 35  # stem, head, 17 depthwise and 16 expand convs (the first block has none)
    before = relu6_fusion.unfused_relu6(base)
    after = cnnkern.convert(base)
    assert _count(before, nn.ReLU6) == relu6
    assert _count(after, nn.ReLU6) == 0
    assert _count(base, nn.ReLU6) == relu6  # convert copies; the torch model is untouched


def test_tiny_run_prints_one_row_per_model(capsys):
    assert relu6_fusion.main(["--models", "mobilenet_v2", "--batch", "2", "--size", "32",
                              "--min-time", "0", "--min-reps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("mobilenet_v2")]
    assert len(row) == 1
    cells = row[0].split()
    assert len(cells) == 6 and all(float(c) > 0 for c in cells[1:4])
    assert cells[4].endswith("x") and cells[5].endswith("x")


def test_eval_clamp_of_a_fused_relu6_counts_as_bn_relu():
    # In eval the fused ReLU6's upper clamp is an aten::clamp_max_ pass after the conv; the
    # whole-model breakdown must put it with BN / ReLU (where torch's hardtanh_ goes), not "other".
    assert layer_kinds.op_kind("aten::clamp_max_", [[8, 96, 56, 56], []], [None, 6.0]) == "BN / ReLU"
    assert layer_kinds.op_kind("aten::hardtanh_", [[8, 96, 56, 56], [], []], [None, 0.0, 6.0]) \
        == "BN / ReLU"
