"""The plan of the CUDA tensor-core implicit-GEMM forward (csrc/core/igemm_tc_plan.h), on the CPU:
which problems it takes, and the tile and split-K it picks for a GPU of a given SM count,
checked against figures worked out by hand (the H100's 132 SMs unless said)."""

import pytest

from conftest import load_testing_ops

H100_SMS = 132


def plan(n, c, h, w, k, r, s, stride=1, pad=0, dil=1, groups=1, sms=H100_SMS):
    why, p, reason = load_testing_ops().igemm_tc_plan(
        [n, c, h, w], [k, c // groups, r, s], [stride] * 2, [pad] * 2, [dil] * 2, groups, sms)
    keys = ("large", "bm", "bn", "tiles_m", "tiles_n", "k_tiles", "splits", "k_per_split", "ws")
    return why, dict(zip(keys, p)), reason


def test_vgg16_conv3_2_takes_the_large_tile():
    # M = 32*56*56 = 100352 -> 784 m tiles x 2 n tiles = 1568 blocks >= 132; K = 9*256 = 72 x 32.
    why, p, reason = plan(32, 256, 56, 56, 256, 3, 3, pad=1)
    assert why == ""
    assert p == dict(large=1, bm=128, bn=128, tiles_m=784, tiles_n=2, k_tiles=72, splits=1,
                     k_per_split=72, ws=0)
    assert reason.startswith("128x128 tile")


def test_resnet50_14x14_takes_the_small_tile():
    # M = 32*14*14 = 6272: 49 x 2 = 98 big tiles < 132; 98 x 4 = 392 small ones >= 132.
    why, p, reason = plan(32, 256, 14, 14, 256, 3, 3, pad=1)
    assert why == "" and p["large"] == 0 and (p["bm"], p["bn"]) == (64, 64)
    assert (p["tiles_m"], p["tiles_n"], p["splits"]) == (98, 4, 1)
    assert reason.startswith("64x64 tile: ")


def test_resnet50_7x7_batch1_splits_k():
    # M = 49: 1 x 8 small tiles; wants ceil(132 / 8) = 17 slices, capped at 16 (and at
    # 144 k-tiles / 4 = 36): 9 k-tiles each, 16 slices; workspace 16 * 49 * 512 floats.
    why, p, reason = plan(1, 512, 7, 7, 512, 3, 3, pad=1)
    assert why == ""
    assert (p["tiles_m"], p["tiles_n"], p["k_tiles"]) == (1, 8, 144)
    assert (p["splits"], p["k_per_split"], p["ws"]) == (16, 9, 16 * 49 * 512)
    assert "split-K" in reason


def test_split_leaves_no_empty_slice():
    # 9 k-tiles (C=32, 3x3) allow 9 // 4 = 2 slices: 5 + 4 k-tiles.
    _, p, _ = plan(1, 32, 4, 4, 8, 3, 3, pad=1)
    assert (p["k_tiles"], p["splits"], p["k_per_split"]) == (9, 2, 5)
    # 18 k-tiles (C=64, 3x3) allow 4 slices: ceil(18 / 4) = 5 each -> 5, 5, 5, 3.
    _, p, _ = plan(1, 64, 6, 7, 20, 3, 3, pad=1)
    assert (p["k_tiles"], p["splits"], p["k_per_split"]) == (18, 4, 5)


def test_too_few_k_tiles_to_split():
    _, p, reason = plan(1, 8, 5, 5, 8, 1, 1)
    assert (p["k_tiles"], p["splits"], p["ws"]) == (1, 1, 0)
    assert "too few k-tiles" in reason


def test_one_sm_always_takes_the_large_tile():
    _, p, _ = plan(1, 8, 5, 5, 8, 1, 1, sms=1)
    assert p["large"] == 1 and p["splits"] == 1


@pytest.mark.parametrize("args,expected", [
    (dict(n=1, c=16, h=6, w=6, k=16, r=3, s=3, groups=2), "groups == 1"),
    (dict(n=1, c=12, h=6, w=6, k=16, r=3, s=3), "C % 8 == 0"),
    (dict(n=1, c=4, h=6, w=6, k=16, r=3, s=3), "C % 8 == 0"),
    # H*W*C = 2^31: past the kernel's 32-bit in-image offsets.
    (dict(n=1, c=8, h=2 ** 14, w=2 ** 14, k=8, r=1, s=1), "below 2^31"),
])
def test_why_not(args, expected):
    why, _, _ = plan(**args)
    assert expected in why, why


def test_sm_count_must_be_positive():
    with pytest.raises(RuntimeError, match="sm_count must be >= 1; got 0"):
        plan(1, 8, 5, 5, 8, 1, 1, sms=0)
