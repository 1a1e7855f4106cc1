"""Curated problem shapes for the conv and pooling tests (CUTLASS conv2d_problems.h style).

Plain data: each entry has a readable id and the full problem. Use ``conv_params()`` /
``pool_params()`` to get ``pytest.param`` lists with those ids, or iterate ``CONV_CASES`` /
``POOL_CASES`` directly (benchmarks, other test files).

Naming follows CUTLASS / cnnkern's problem struct: input N x C x H x W, filter K x (C/groups) x
R x S. Shapes stay small so that the whole matrix runs in seconds on a 2-core CPU.
"""

from dataclasses import dataclass

import pytest


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_out_size(in_, k, pad, stride, dil):
    """torch's formula: floor((in + 2p - d(k-1) - 1)/s) + 1."""
    return (in_ + 2 * pad - dil * (k - 1) - 1) // stride + 1


@dataclass(frozen=True)
class ConvCase:
    id: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: object = 1  # int or (sh, sw)
    padding: object = 0  # int or (ph, pw)
    dilation: object = 1  # int or (dh, dw)
    groups: int = 1

    @property
    def input_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def weight_shape(self):
        return (self.K, self.C // self.groups, self.R, self.S)

    @property
    def output_shape(self):
        (sh, sw), (ph, pw), (dh, dw) = _pair(self.stride), _pair(self.padding), _pair(self.dilation)
        return (
            self.N,
            self.K,
            conv_out_size(self.H, self.R, ph, sh, dh),
            conv_out_size(self.W, self.S, pw, sw, dw),
        )

    def kwargs(self):
        """Keyword arguments for F.conv2d / cnnkern.conv2d (besides input, weight, bias)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


# fmt: off
CONV_CASES = [
    #        id                          N   C   H   W   K   R   S  stride   padding  dilation groups
    ConvCase("3x3_pad1",                 2,  3,  8,  8,  4,  3,  3, 1,       1,       1,       1),
    ConvCase("3x3_valid_odd_hw",         2,  3,  7,  9,  5,  3,  3, 1,       0,       1,       1),
    ConvCase("c5_k7_not_tile_multiple",  1,  5,  6,  5,  7,  3,  3, 1,       1,       1,       1),
    ConvCase("c13_k6_odd",               2, 13,  5,  7,  6,  3,  3, 1,       1,       1,       1),
    ConvCase("c1_single_channel",        3,  1,  9,  7,  2,  3,  3, 1,       1,       1,       1),
    ConvCase("stride2",                  2,  4,  9,  9,  6,  3,  3, 2,       1,       1,       1),
    ConvCase("stride2_even_hw",          1,  3, 10,  8,  5,  3,  3, 2,       1,       1,       1),
    ConvCase("stride3",                  1,  3, 10, 11,  4,  3,  3, 3,       1,       1,       1),
    ConvCase("asym_stride_1x2",          1,  3,  9, 10,  4,  3,  3, (1, 2),  1,       1,       1),
    ConvCase("asym_stride_3x1",          2,  2,  11, 6,  3,  3,  3, (3, 1),  (1, 0),  1,       1),
    ConvCase("asym_padding_2x1",         2,  2,  7,  8,  3,  3,  3, 1,       (2, 1),  1,       1),
    ConvCase("asym_padding_0x2",         1,  3,  6,  5,  2,  3,  3, 1,       (0, 2),  1,       1),
    ConvCase("rect_kernel_2x5",          1,  3,  8,  9,  4,  2,  5, 1,       (0, 2),  1,       1),
    ConvCase("rect_kernel_5x1",          2,  2,  9,  6,  3,  5,  1, 1,       (2, 0),  1,       1),
    ConvCase("5x5_pad2",                 2,  3,  9,  9,  4,  5,  5, 1,       2,       1,       1),
    ConvCase("dilation2",                1,  3,  9,  9,  4,  3,  3, 1,       2,       2,       1),
    ConvCase("dilation2_stride2",        1,  2, 11, 10,  3,  3,  3, 2,       1,       2,       1),
    ConvCase("asym_dilation_1x2",        1,  2, 10,  9,  3,  3,  3, 1,       (1, 2),  (1, 2),  1),
    ConvCase("groups2",                  2,  4,  7,  7,  6,  3,  3, 1,       1,       1,       2),
    ConvCase("groups3_stride2",          1,  6,  8,  8,  9,  3,  3, 2,       1,       1,       3),
    ConvCase("groups2_c10_k4",           1, 10,  6,  5,  4,  3,  3, 1,       0,       1,       2),
    ConvCase("depthwise",                2,  4,  8,  8,  4,  3,  3, 1,       1,       1,       4),
    ConvCase("depthwise_stride2_odd",    1,  5,  9,  7,  5,  3,  3, 2,       1,       1,       5),
    ConvCase("depthwise_multiplier2",    1,  3,  7,  7,  6,  3,  3, 1,       1,       1,       3),
    ConvCase("1x1",                      2,  8,  5,  5, 16,  1,  1, 1,       0,       1,       1),
    ConvCase("1x1_stride2_odd",          1,  6,  7,  7,  4,  1,  1, 2,       0,       1,       1),
    ConvCase("1x1_pad1",                 1,  3,  4,  4,  2,  1,  1, 1,       1,       1,       1),
    ConvCase("2x2_stride2_patchify",     2,  3,  8,  8,  5,  2,  2, 2,       0,       1,       1),
    ConvCase("7x7_stride2_pad3",         1,  3, 17, 17,  8,  7,  7, 2,       3,       1,       1),
    ConvCase("11x11_stride4_pad2",       1,  3, 35, 35,  4, 11, 11, 4,       2,       1,       1),
    ConvCase("kernel_gt_input_padded",   1,  2,  3,  3,  3,  5,  5, 1,       2,       1,       1),
    ConvCase("kernel_gt_input_asym",     2,  2,  2,  4,  3,  5,  3, 1,       (2, 1),  1,       1),
    ConvCase("output_1x1",               1,  4,  5,  5,  3,  5,  5, 1,       0,       1,       1),
    ConvCase("row_input_1xW",            2,  3,  1,  9,  4,  1,  3, 1,       0,       1,       1),
    ConvCase("batch1",                   1,  3,  6,  6,  4,  3,  3, 1,       1,       1,       1),
    ConvCase("batch5",                   5,  2,  4,  5,  3,  3,  3, 1,       1,       1,       1),
    ConvCase("empty_batch",              0,  3,  6,  6,  4,  3,  3, 1,       1,       1,       1),
    ConvCase("everything_mixed",         2,  6, 11, 10,  4,  3,  2, (2, 3),  (1, 2),  (2, 1),  2),
]
# fmt: on


@dataclass(frozen=True)
class PoolCase:
    id: str
    N: int
    C: int
    H: int
    W: int
    kernel_size: object
    stride: object = None  # None: defaults to kernel_size (torch's rule)
    padding: object = 0
    dilation: object = 1  # max pooling only; avg-pool cases have dilation 1
    ceil_mode: bool = False

    @property
    def input_shape(self):
        return (self.N, self.C, self.H, self.W)

    def max_kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)

    def avg_kwargs(self):
        assert _pair(self.dilation) == (1, 1), f"{self.id}: avg pooling has no dilation"
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode)


# fmt: off
POOL_CASES = [
    #        id                                 N  C   H   W  kernel   stride  padding  dil     ceil
    PoolCase("k2s2",                            2, 3,  8,  8, 2,       2,      0,       1,      False),
    PoolCase("k2_stride_default",               2, 2,  6,  8, 2,       None,   0,       1,      False),
    PoolCase("k2s2_odd_hw",                     2, 3,  7,  9, 2,       2,      0,       1,      False),
    PoolCase("k2s2_odd_hw_ceil",                2, 3,  7,  9, 2,       2,      0,       1,      True),
    PoolCase("k3s2p1",                          1, 2,  9,  9, 3,       2,      1,       1,      False),
    PoolCase("k3s2p1_even_ceil",                1, 2,  8,  8, 3,       2,      1,       1,      True),
    PoolCase("k3s1p1_same_size",                2, 2,  5,  6, 3,       1,      1,       1,      False),
    PoolCase("k1s1_identity",                   1, 2,  4,  3, 1,       1,      0,       1,      False),
    PoolCase("k1s2_subsample",                  1, 2,  5,  6, 1,       2,      0,       1,      False),
    PoolCase("k2s3_stride_gt_kernel",           1, 2,  9, 10, 2,       3,      0,       1,      False),
    PoolCase("k2s3_stride_gt_kernel_ceil",      1, 2,  9, 10, 2,       3,      0,       1,      True),
    PoolCase("rect_kernel_2x3_stride_1x2",      2, 2,  7,  9, (2, 3),  (1, 2), (1, 1),  1,      False),
    PoolCase("asym_padding_1x0",                1, 3,  6,  7, 3,       2,      (1, 0),  1,      False),
    PoolCase("asym_padding_0x1_ceil",           1, 3,  6,  7, 3,       2,      (0, 1),  1,      True),
    PoolCase("k5s1p2",                          1, 2,  6,  5, 5,       1,      2,       1,      False),
    PoolCase("global_kernel_eq_input",          2, 3,  5,  6, (5, 6),  1,      0,       1,      False),
    PoolCase("row_input_1xW",                   2, 2,  1,  9, (1, 3),  (1, 2), 0,       1,      False),
    PoolCase("batch1",                          1, 1,  6,  6, 2,       2,      0,       1,      False),
    PoolCase("empty_batch",                     0, 3,  6,  6, 2,       2,      0,       1,      False),
    # ceil_mode edge cases: the last window overhangs the (padded) input, or would start in
    # the right padding and is dropped (torch's rule: a window must start inside the input or
    # the left padding).
    PoolCase("ceil_overhang_k3s2_no_pad",       1, 2,  6,  6, 3,       2,      0,       1,      True),
    PoolCase("ceil_last_window_dropped_k2s2p1", 1, 2,  5,  5, 2,       2,      1,       1,      True),
    PoolCase("ceil_dropped_k3s3p1",             1, 2,  8,  7, 3,       3,      1,       1,      True),
    PoolCase("ceil_extra_window_in_pad_k3s2p1", 1, 2,  6,  6, 3,       2,      1,       1,      True),
    PoolCase("ceil_tiny_1x1_k2s2p1",            1, 2,  1,  1, 2,       2,      1,       1,      True),
    PoolCase("ceil_mixed_axes",                 1, 2,  5,  8, (2, 3),  (2, 3), (1, 1),  1,      True),
    PoolCase("ceil_k4s3p2",                     1, 1, 10,  9, 4,       3,      2,       1,      True),
    # dilation (max pooling only)
    PoolCase("dilation2_k3s1p1",                1, 2,  9,  9, 3,       1,      1,       2,      False),
    PoolCase("dilation2_k2s2_ceil",             1, 2,  8,  9, 2,       2,      0,       2,      True),
    PoolCase("asym_dilation_1x2",               2, 2,  8,  9, 3,       2,      1,       (1, 2), False),
    PoolCase("dilation3_k2_pad1_ceil",          1, 2,  7,  7, 2,       2,      1,       3,      True),
]
# fmt: on

AVG_POOL_CASES = [c for c in POOL_CASES if _pair(c.dilation) == (1, 1)]

# (input H, W) -> output_size for adaptive average pooling.
# fmt: off
ADAPTIVE_CASES = [
    # id                      N  C  H   W   output_size
    ("divisible_8x8_to_4",    2, 3, 8,  8,  4),
    ("non_divisible_7x9_to_3x4", 2, 2, 7, 9, (3, 4)),
    ("non_divisible_10_to_3", 1, 2, 10, 10, 3),
    ("non_divisible_5x11_to_2x5", 1, 3, 5, 11, (2, 5)),
    ("identity_5x6",          1, 2, 5,  6,  (5, 6)),
    ("upsample_3x2_to_5x4",   1, 2, 3,  2,  (5, 4)),
    ("global_1",              2, 4, 7,  5,  1),
    ("global_1x1_tuple",      1, 3, 6,  6,  (1, 1)),
    ("none_keeps_h",          1, 2, 6,  9,  (None, 4)),
    ("none_keeps_w",          1, 2, 6,  9,  (3, None)),
    ("empty_batch",           0, 2, 6,  6,  3),
]
# fmt: on


def conv_params(cases=None):
    return [pytest.param(c, id=c.id) for c in (CONV_CASES if cases is None else cases)]


def pool_params(cases=None):
    return [pytest.param(c, id=c.id) for c in (POOL_CASES if cases is None else cases)]


def adaptive_params():
    return [pytest.param(*c[1:], id=c[0]) for c in ADAPTIVE_CASES]


def layer_cases(names=("vgg16", "resnet50"), batch=2):
    """Every distinct conv of the named bench layer sets (bench/layers/*.json) at `batch`."""
    from cnnkern.bench import runner

    seen, out = set(), []
    for name in names:
        for layer in runner.load_layers(name)["conv2d"]:
            c = ConvCase(f"{name}_{layer['name']}", batch, layer["C"], layer["H"], layer["W"],
                         layer["K"], layer["R"], layer["S"], _pair(layer.get("stride", 1)),
                         _pair(layer.get("padding", 0)), _pair(layer.get("dilation", 1)),
                         layer.get("groups", 1))
            key = (c.C, c.H, c.W, c.K, c.R, c.S, c.stride, c.padding, c.dilation, c.groups)
            if key not in seen:  # ResNet repeats its blocks
                seen.add(key)
                out.append(c)
    return out
