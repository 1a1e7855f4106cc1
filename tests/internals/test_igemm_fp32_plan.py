"""The patch gather of the CUDA fp32 implicit-GEMM forward (csrc/core/igemm_fp32_plan.h) on the
CPU, through torch.ops.cnnkern_testing.igemm32_patches: the input element each of the kernel's
4-byte copies reads, replayed with the kernel's own tap walk (one decode per thread, then only
carries), against torch's unfold of an index tensor. A wrong carry, dilation scale, padding
bound or channel tail moves some entry to another element or drops a zero fill."""

import pytest
import torch
import torch.nn.functional as F

from conftest import load_testing_ops

BK, BN = 8, 128


def reference(N, C, H, W, K, R, S, stride, pad, dil, groups, g):
    """[k][n] input element index (or -1) of group g's patch matrix, k padded to whole k-tiles."""
    cg = C // groups
    idx = torch.arange(N * C * H * W, dtype=torch.float64).view(N, C, H, W) + 1
    cols = F.unfold(idx[:, g * cg:(g + 1) * cg], (R, S), dilation=dil, padding=pad,
                    stride=stride)  # (N, cg*R*S, P*Q), 0 where padded
    kr = cols.shape[1]
    ref = cols.permute(1, 0, 2).reshape(kr, -1).long() - 1
    rows = -(-kr // BK) * BK
    return torch.cat([ref, torch.full((rows - kr, ref.shape[1]), -1, dtype=torch.long)])


CASES = [
    # (N, C, H, W, K, R, S, stride, pad, dil, groups)
    pytest.param(2, 16, 9, 9, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1, id="3x3_pad1_two_col_tiles"),
    pytest.param(1, 3, 11, 13, 4, 3, 3, (2, 2), (1, 1), (1, 1), 1, id="c3_stride2_tail"),
    pytest.param(2, 5, 10, 7, 4, 3, 2, (1, 2), (2, 0), (2, 3), 1, id="dilation_asym_c5"),
    pytest.param(3, 12, 4, 4, 6, 1, 1, (1, 1), (0, 0), (1, 1), 1, id="1x1_c12"),
    pytest.param(1, 8, 1, 1, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1, id="1x1_plane_pad1"),
    pytest.param(2, 12, 6, 5, 6, 3, 3, (1, 1), (1, 1), (1, 1), 3, id="groups3_c4_each"),
    pytest.param(1, 6, 8, 8, 6, 5, 5, (3, 3), (2, 2), (1, 1), 6, id="depthwise_5x5_s3"),
    pytest.param(2, 9, 12, 12, 3, 7, 7, (2, 2), (3, 3), (1, 1), 1, id="7x7_s2_c9"),
]


@pytest.mark.parametrize("N,C,H,W,K,R,S,stride,pad,dil,groups", CASES)
def test_tap_walk_reads_the_unfolded_patches(N, C, H, W, K, R, S, stride, pad, dil, groups):
    for g in range(groups):
        why, got = load_testing_ops().igemm32_patches(
            [N, C, H, W], [K, C // groups, R, S], list(stride), list(pad), list(dil), groups, g)
        assert why == ""
        ref = reference(N, C, H, W, K, R, S, stride, pad, dil, groups, g)
        got = torch.tensor(got, dtype=torch.long).view(ref.shape)
        bad = (got != ref).nonzero()
        assert bad.numel() == 0, f"group {g}: {bad.shape[0]} entries differ, first [k, n] {bad[0].tolist()}"


def test_offsets_past_32_bits_are_refused_with_the_reason():
    why, got = load_testing_ops().igemm32_patches([1, 4096, 1024, 1024], [8, 4096, 1, 1], [1, 1],
                                                  [0, 0], [1, 1], 1, 0)
    assert "C/groups*H*W < 2^31" in why and got == []


def test_bad_group_index_names_it():
    with pytest.raises(RuntimeError, match=r"g must be in \[0, groups = 2\); got 2"):
        load_testing_ops().igemm32_patches([1, 4, 3, 3], [2, 2, 1, 1], [1, 1], [0, 0], [1, 1], 2, 2)
