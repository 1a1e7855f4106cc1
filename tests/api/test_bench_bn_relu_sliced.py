"""bench/bn_relu_sliced_grad.py: it finds GoogLeNet's channel-slice grad_outs (the last layer
of each inception branch, fed by torch.cat's backward) with their strides, and a tiny run
prints the before / after sums."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
from bench import bn_relu_sliced_grad  # noqa: E402


def test_googlenet_branch_ends_get_channel_slices():
    calls = bn_relu_sliced_grad.sliced_calls("googlenet", 2, 64)
    # 9 inception modules x 4 branches, each ending in a fused conv + BN + ReLU.
    assert len(calls) == 36
    for dy, z, _ in calls:
        assert dy.shape == z.shape and not dy.is_contiguous()
        assert dy.stride(0) > dy.shape[1] * dy.shape[2] * dy.shape[3]
        assert dy.stride()[1:] == z.stride()[1:]


def test_tiny_run_prints_the_sums(capsys):
    assert bn_relu_sliced_grad.main(["--batch", "2", "--size", "64", "--rounds", "1",
                                     "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "36 bn_relu_backward calls with a channel-slice grad_out" in out
    assert "sum of medians: copied first (before)" in out
