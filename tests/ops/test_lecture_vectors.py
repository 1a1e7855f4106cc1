"""The worked examples of the CNN lectures (shared/LECTURES.md), as exact test vectors.

All inputs are small integers, so every result is exact in float32: these tests use exact
equality. On every backend: the CPU, a GPU ("cuda") and the CUDA emulator ("cuda_emu"; the
`dev` fixture, tests/conftest.py), each test's tensors made on its device (`on_dev`).
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import DEVICES, assert_close, assert_exact, int_tensor

DTYPES = [torch.float32, torch.float64]

IMAGE_5x5 = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
]
FILTER_X = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
EXPECTED_5x5 = [[4, 3, 4], [2, 4, 3], [2, 3, 4]]

IMAGE_10x10 = [[int(ch) for ch in row] for row in (
    "1011011010 0100110010 1011000110 1101111010 1011010001 "
    "1101010100 0000110010 0001111011 0011010111 0111011011").split()]
CROSS = [[1, -1, 1], [-1, 1, -1], [1, -1, 1]]
EXPECTED_10x10 = [
    [5, -1, -1, 3, 0, 0, 1, 0],
    [-3, 3, 1, 0, 1, 0, 3, -2],
    [4, -2, 0, 2, -2, 2, -2, 2],
    [-2, 4, -1, 1, 1, 1, 1, -1],
    [2, -2, 2, 0, 0, 0, 2, -1],
    [0, 3, -2, 3, 0, 1, 0, 2],
    [1, -1, 1, 1, -2, 3, -1, 0],
    [-1, 2, 0, 1, 2, -2, 4, -1],
]

# Asymmetric kernels: a flipped-kernel (true convolution) bug changes their results.
SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
SOBEL_Y = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]
RAMP_3x3 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
# Hand-computed cross-correlations of IMAGE_5x5 (valid), e.g. SOBEL_X at (0, 0):
# rows 0..2, (col 2 - col 0) weighted 1, 2, 1: (1-1) + 2*(1-0) + (1-0) = 3;
# RAMP_3x3 at (0, 0): 1+2+3 + 0+5+6 + 0+0+9 = 26.
SOBEL_X_ON_5x5 = [[3, 0, -3], [4, 3, -2], [4, 2, -3]]
SOBEL_Y_ON_5x5 = [[-3, 0, 3], [-2, -1, 0], [2, 0, -3]]
RAMP_ON_5x5 = [[26, 35, 34], [20, 34, 33], [26, 31, 22]]
RAMP_ROTATED_ON_5x5 = [[34, 35, 26], [20, 36, 37], [14, 29, 38]]  # what a flipped kernel gives

LECTURE_KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "sobel_x": SOBEL_X,
    "sobel_y": SOBEL_Y,
}


def t4(rows, dtype):
    """A 2-D list as a (1, 1, H, W) tensor."""
    return torch.tensor(rows, dtype=dtype)[None, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_5x5_image_valid(dtype, on_dev):
    out = cnnkern.conv2d(t4(IMAGE_5x5, dtype), t4(FILTER_X, dtype))
    assert_exact(out, t4(EXPECTED_5x5, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_5x5_image_raw_op(dtype, on_dev):
    out = torch.ops.cnnkern.conv2d(t4(IMAGE_5x5, dtype), t4(FILTER_X, dtype), None,
                                   [1, 1], [0, 0], [1, 1], 1, "auto")
    assert_exact(out, t4(EXPECTED_5x5, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_5x5_image_with_bias(dtype, on_dev):
    bias = torch.tensor([-2.0], dtype=dtype)
    out = cnnkern.conv2d(t4(IMAGE_5x5, dtype), t4(FILTER_X, dtype), bias)
    assert_exact(out, t4(EXPECTED_5x5, dtype) - 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_sum_over_whole_depth_and_filters_give_output_depth(dtype, on_dev):
    # Three identical input channels, two filters: (FILTER_X on every channel) and
    # (SOBEL_X on channel 0 only). Output depth = number of filters; sums run over depth.
    x = t4(IMAGE_5x5, dtype).expand(1, 3, 5, 5).contiguous()
    w = torch.zeros(2, 3, 3, 3, dtype=dtype)
    w[0] = torch.tensor(FILTER_X, dtype=dtype)
    w[1, 0] = torch.tensor(SOBEL_X, dtype=dtype)
    b = torch.tensor([1.0, -1.0], dtype=dtype)
    out = cnnkern.conv2d(x, w, b)
    expected = torch.stack([
        3 * torch.tensor(EXPECTED_5x5, dtype=dtype) + 1,
        torch.tensor(SOBEL_X_ON_5x5, dtype=dtype) - 1,
    ])[None]
    assert_exact(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_10x10_cross_filter_full_output(dtype, on_dev):
    out = cnnkern.conv2d(t4(IMAGE_10x10, dtype), t4(CROSS, dtype))
    assert out.shape == (1, 1, 8, 8)
    assert_exact(out, t4(EXPECTED_10x10, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_10x10_max_pool_top_left_3x3_is_5(dtype, on_dev):
    y = cnnkern.conv2d(t4(IMAGE_10x10, dtype), t4(CROSS, dtype))
    pooled = cnnkern.max_pool2d(y[:, :, :3, :3], 3)  # "from 25 pixels to 1" (well, 9 here)
    assert pooled.shape == (1, 1, 1, 1)
    assert pooled.item() == 5
    # And straight from the given output, without relying on the conv.
    pooled2, idx = cnnkern.max_pool2d(t4(EXPECTED_10x10, dtype)[:, :, :3, :3], 3,
                                      return_indices=True)
    assert pooled2.item() == 5 and idx.item() == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_10x10_output_pooled_2x2(dtype, on_dev):
    y = t4(EXPECTED_10x10, dtype)
    # Hand-computed from the 8x8 output above: max and mean of each 2x2 block.
    max_expected = [[5, 3, 1, 3], [4, 2, 2, 2], [3, 3, 1, 2], [2, 1, 3, 4]]
    avg_expected = [[1.0, 0.75, 0.25, 0.5], [1.0, 0.5, 0.5, 0.0],
                    [0.75, 0.75, 0.25, 0.75], [0.25, 0.75, 0.25, 0.5]]
    assert_exact(cnnkern.max_pool2d(y, 2, 2), t4(max_expected, dtype))
    assert_exact(cnnkern.avg_pool2d(y, 2, 2), t4(avg_expected, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LECTURE_KERNELS))
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_image_kernels_match_torch(name, dtype, on_dev):
    k = t4(LECTURE_KERNELS[name], dtype)
    for image in (t4(IMAGE_10x10, dtype), int_tensor(2, 1, 9, 11, lo=0, hi=256, dtype=dtype)):
        for padding in (0, 1):
            out = cnnkern.conv2d(image, k, padding=padding)
            ref = F.conv2d(image.double(), k.double(), padding=padding)
            assert_exact(out, ref.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_identity_kernel_returns_interior(dtype, on_dev):
    image = t4(IMAGE_10x10, dtype)
    out = cnnkern.conv2d(image, t4(LECTURE_KERNELS["identity"], dtype))
    assert_exact(out, image[:, :, 1:-1, 1:-1])
    out_same = cnnkern.conv2d(image, t4(LECTURE_KERNELS["identity"], dtype), padding=1)
    assert_exact(out_same, image)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_box_blur_matches_torch(dtype, on_dev):
    k = torch.full((1, 1, 3, 3), 1.0 / 9.0, dtype=dtype)
    image = int_tensor(2, 1, 9, 11, lo=0, hi=256, dtype=dtype)
    out = cnnkern.conv2d(image, k, padding=1)
    ref = F.conv2d(image.double(), k.double(), padding=1)
    assert_close(out, ref)
    # A constant image blurs to itself away from the borders.
    flat = torch.full((1, 1, 6, 6), 9.0, dtype=dtype)
    assert_close(cnnkern.conv2d(flat, k), torch.full((1, 1, 4, 4), 9.0, dtype=torch.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, expected, rotated", [
    pytest.param(SOBEL_X, SOBEL_X_ON_5x5, [[-v for v in r] for r in SOBEL_X_ON_5x5], id="sobel_x"),
    pytest.param(SOBEL_Y, SOBEL_Y_ON_5x5, [[-v for v in r] for r in SOBEL_Y_ON_5x5], id="sobel_y"),
    pytest.param(RAMP_3x3, RAMP_ON_5x5, RAMP_ROTATED_ON_5x5, id="ramp_1_to_9"),
])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_asymmetric_kernel_catches_flip(kernel, expected, rotated, dtype, on_dev):
    """Cross-correlation, not convolution: a 180-degree-rotated kernel gives other numbers."""
    x = t4(IMAGE_5x5, dtype)
    w = t4(kernel, dtype)
    out = cnnkern.conv2d(x, w)
    assert_exact(out, t4(expected, dtype))
    out_rot = cnnkern.conv2d(x, torch.flip(w, dims=(2, 3)))
    assert_exact(out_rot, t4(rotated, dtype))
    assert not torch.equal(out, out_rot)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_sobel_on_horizontal_ramp(dtype, on_dev):
    # x[h, w] = w: Sobel-x sees a slope of 1 per pixel: (1+2+1) * 2 = 8 everywhere;
    # Sobel-y sees nothing. A flipped Sobel-x would give -8.
    ramp = torch.arange(6, dtype=dtype).expand(5, 6).contiguous()[None, None]
    assert_exact(cnnkern.conv2d(ramp, t4(SOBEL_X, dtype)), torch.full((1, 1, 3, 4), 8.0, dtype=dtype))
    assert_exact(cnnkern.conv2d(ramp, t4(SOBEL_Y, dtype)), torch.zeros(1, 1, 3, 4, dtype=dtype))


@pytest.mark.parametrize("H, K, p, s", [(5, 3, 0, 1), (10, 3, 0, 1), (7, 3, 1, 1), (7, 5, 2, 1),
                                        (9, 3, 0, 2), (9, 3, 1, 2), (32, 5, 0, 1), (11, 3, 1, 3)])
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_output_size_formulas(H, K, p, s, on_dev):
    # Lectures: no padding H-K+1; padding p: H+2p-K+1; stride s: (H+2p-K)/s + 1 (floor).
    x = torch.zeros(1, 1, H, H)
    w = torch.zeros(1, 1, K, K)
    out = cnnkern.conv2d(x, w, padding=p, stride=s)
    expected = (H + 2 * p - K) // s + 1
    if p == 0 and s == 1:
        assert expected == H - K + 1
    assert out.shape == (1, 1, expected, expected)
