"""The tile and split-K schedule of the CUDA fp32 implicit-GEMM forward
(csrc/core/igemm_fp32_schedule.h) on the CPU, through torch.ops.cnnkern_testing.igemm32_schedule:
the 64 x 128 tile exactly when K/groups <= 64, and the k-tiles split only when the grid leaves
SMs idle (busy share blocks / (SMs x ceil(blocks / SMs)) under 90%), into the fewest slices
that reach 90% (else the busiest), each keeping 8 k-tiles or more, none empty. Every expected
figure is worked out by hand in the comments."""

import pytest

from conftest import load_testing_ops

FIELDS = ("bm", "tiles_m", "tiles_n", "groups", "k_tiles", "splits", "per", "ws")


def schedule(N, C, H, W, K, R, S, stride=1, pad=0, groups=1, sms=132):
    got, reason = load_testing_ops().igemm32_schedule(
        [N, C, H, W], [K, C // groups, R, S], [stride, stride], [pad, pad], [1, 1], groups, sms)
    return dict(zip(FIELDS, got)), reason


def test_vgg16_conv3_2_fills_the_gpu_unsplit():
    # K = 256: two 128-row tiles; N*P*Q = 32*56*56 = 100352: 784 column tiles; 1568 blocks on
    # 132 SMs: 12 rounds, 1568 / 1584 = 99% busy. 256*9 = 2304 = 288 k-tiles.
    s, reason = schedule(32, 256, 56, 56, 256, 3, 3, pad=1)
    assert s == dict(bm=128, tiles_m=2, tiles_n=784, groups=1, k_tiles=288, splits=1, per=288,
                     ws=0)
    assert reason == "128x128 tile"


def test_resnet50_14x14_splits_four_ways():
    # 2 x 49 = 98 blocks: 74% busy; 2 slices: 196 blocks, 2 rounds, still 74%; 3: 294, 74%;
    # 4: 392 blocks in 3 rounds = 99%. 288 k-tiles: 72 a slice. Workspace: 4 output-shaped
    # slices of 32*256*14*14 = 1605632 floats.
    s, reason = schedule(32, 256, 14, 14, 256, 3, 3, pad=1)
    assert s == dict(bm=128, tiles_m=2, tiles_n=49, groups=1, k_tiles=288, splits=4, per=72,
                     ws=4 * 1605632)
    assert "split-K" in reason


def test_resnet50_1x1_narrow_output_takes_the_64_row_tile():
    # K = 64: one 64-row tile (128 rows would leave half idle); 784 blocks, 6 rounds = 99%.
    # C = 256, 1x1: 32 k-tiles.
    s, reason = schedule(32, 256, 56, 56, 64, 1, 1)
    assert s == dict(bm=64, tiles_m=1, tiles_n=784, groups=1, k_tiles=32, splits=1, per=32,
                     ws=0)
    assert reason.startswith("64x128 tile")


def test_resnet50_3x3_s2_splits_in_two():
    # K = 128: one tile; N*P*Q = 32*28*28 = 25088: 196 column tiles; 196 blocks = 2 rounds,
    # 74% busy; 2 slices: 392 in 3 rounds = 99%. 128*9 = 1152 = 144 k-tiles, 72 a slice.
    s, _ = schedule(32, 128, 56, 56, 128, 3, 3, stride=2, pad=1)
    assert s == dict(bm=128, tiles_m=1, tiles_n=196, groups=1, k_tiles=144, splits=2, per=72,
                     ws=2 * 32 * 128 * 28 * 28)


@pytest.mark.parametrize("K,bm", [(64, 64), (65, 128), (1, 64), (128, 128), (129, 128)])
def test_tile_rows_follow_output_channels_per_group(K, bm):
    s, _ = schedule(1, 8, 16, 16, K, 1, 1, sms=1)
    assert s["bm"] == bm and s["tiles_m"] == -(-K // bm)


def test_groups_count_per_group_channels_and_multiply_the_grid():
    # K = 256 in 4 groups: 64 per group, the narrow tile; 2*8*8 = 128 pixels: one column tile;
    # 4 blocks. C/groups = 16, 3x3: 144 = 18 k-tiles, at most 18 // 8 = 2 slices: 8 blocks.
    s, _ = schedule(2, 64, 8, 8, 256, 3, 3, pad=1, groups=4)
    assert s == dict(bm=64, tiles_m=1, tiles_n=1, groups=4, k_tiles=18, splits=2, per=9,
                     ws=2 * 2 * 256 * 64)


def test_split_leaves_no_slice_empty():
    # One block (8x8 = 64 pixels, K = 16) on 132 SMs: never 90% busy, so the busiest split:
    # 100*9 = 900 = 113 k-tiles allow 14 slices of 8+; 14 slices of ceil(113/14) = 9 would
    # leave the 14th empty (13 x 9 = 117 >= 113): 13 slices, the last of 113 - 108 = 5.
    s, reason = schedule(1, 100, 8, 8, 16, 3, 3, pad=1)
    assert (s["splits"], s["per"], s["k_tiles"]) == (13, 9, 113)
    assert "split-K" in reason


def test_at_most_sixteen_slices():
    # One block, 512*9 = 4608 = 576 k-tiles: 72 slices would be allowed by length, 16 by cap.
    s, _ = schedule(1, 512, 4, 4, 8, 3, 3, pad=1)
    assert (s["splits"], s["per"]) == (16, 36)


def test_too_short_a_reduction_is_not_split():
    # C = 8, 3x3: 72 = 9 k-tiles, one slice of 8+ only; one block on 132 SMs stays unsplit.
    s, reason = schedule(1, 8, 8, 8, 16, 3, 3, pad=1)
    assert (s["splits"], s["per"], s["ws"]) == (1, 9, 0)
    assert "too few k-tiles to split" in reason


def test_one_sm_never_splits():
    s, _ = schedule(32, 256, 14, 14, 256, 3, 3, pad=1, sms=1)
    assert s["splits"] == 1 and s["ws"] == 0


def test_bad_sm_count_names_it():
    with pytest.raises(RuntimeError, match=r"sm_count must be in \[1, 65535\]; got 0"):
        schedule(1, 8, 8, 8, 16, 3, 3, sms=0)
