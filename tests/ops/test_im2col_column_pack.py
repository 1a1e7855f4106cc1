"""The im2col forward's three ways of packing the GEMM's column panels from the image
(cpu/im2col/im2col_pack.h): copying runs along input rows (the default for one image), the
same runs read from the image split into its column stride phases (cpu/im2col/stride_phases.h;
the default for strided layers with S > 1, forced here on every shape, stride 1 included),
and gathering through an offset table, which also packs several images' columns for one GEMM
(small planes in a batch: images_per_gemm in cpu/im2col/conv2d_im2col.cpp). They write the
same values, so the forward's bits must not depend on the method, the batching or the thread
count (1, 2, 3), and all must match a float64 reference."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, int_tensor

METHODS = ["runs", "phases", "gather"]
# Images per GEMM (CNNKERN_IM2COL_IMAGES; "" for the problem's own choice, which batches only
# weights larger than 4 MiB, none of the small shapes here).
IMAGES = ["", "1", "2", "3"]
# (input shape, weight shape, conv2d kwargs)
SHAPES = [
    pytest.param((1, 32, 7, 7), (40, 32, 3, 3), dict(padding=1), id="7x7_pad1"),
    pytest.param((2, 16, 14, 14), (24, 16, 3, 3), dict(padding=1, stride=2), id="3x3_s2"),
    pytest.param((1, 24, 15, 13), (16, 24, 1, 1), dict(stride=2), id="1x1_s2_odd"),
    pytest.param((2, 8, 11, 9), (12, 4, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=2),
                 id="dilated_groups_asym_pad"),
    pytest.param((1, 3, 40, 37), (8, 3, 7, 7), dict(padding=3, stride=2), id="7x7_s2_stem"),
    # stride 3 (the general phase split; W = 17 leaves phase rows one short) and a row stride
    # that differs from the column stride, with dilation
    pytest.param((1, 5, 16, 17), (9, 5, 5, 4), dict(padding=(1, 2), stride=3), id="s3_odd"),
    pytest.param((2, 6, 13, 15), (8, 6, 3, 3), dict(padding=2, stride=(1, 2), dilation=(1, 2)),
                 id="s1x2_dilated"),
    # an output row longer than two AVX-512 register tiles: runs by default
    pytest.param((1, 4, 70, 70), (8, 4, 3, 3), dict(padding=1), id="70x70_wide_rows"),
    # small planes in a batch: the images' columns in one GEMM (3 x 49 columns), one GEMM
    # per group, 1x1 stride 1 (else read in place) too
    pytest.param((3, 16, 7, 7), (24, 16, 3, 3), dict(padding=1), id="batch3_7x7"),
    pytest.param((4, 8, 9, 9), (12, 4, 3, 3), dict(padding=1, stride=2, groups=2),
                 id="batch4_s2_groups2"),
    pytest.param((3, 16, 5, 6), (8, 16, 1, 1), {}, id="batch3_1x1"),
    pytest.param((5, 2, 32, 32), (4, 2, 3, 3), dict(padding=1), id="batch5_32x32"),
]


def _forward(x, w, b, method, monkeypatch, images="", **kw):
    monkeypatch.setenv("CNNKERN_IM2COL_PACK", method)
    monkeypatch.setenv("CNNKERN_IM2COL_IMAGES", images)
    return cnnkern.conv2d(x, w, b, algo="im2col", **kw)


@pytest.mark.parametrize("xs, ws, kw", SHAPES)
def test_methods_batching_and_thread_counts_give_the_same_bits(xs, ws, kw, monkeypatch):
    gen = torch.Generator().manual_seed(2)
    x, w = torch.randn(xs, generator=gen), torch.randn(ws, generator=gen)
    b = torch.randn(ws[0], generator=gen)
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for method in METHODS:
                for images in IMAGES:
                    results[method, images, threads] = _forward(x, w, b, method, monkeypatch,
                                                                images, **kw)
    finally:
        torch.set_num_threads(before)
    first = results["runs", "1", 1]
    for key, got in results.items():
        assert torch.equal(got, first), f"(method, images, threads) {key} differs from {('runs', '1', 1)}"
    ref = F.conv2d(x.double(), w.double(), b.double(), **kw)
    assert_close(first, ref.float())


@pytest.mark.parametrize("images", ["1", "2"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("xs, ws, kw", SHAPES)
def test_integer_inputs_exact(xs, ws, kw, method, images, monkeypatch):
    """Integer data make every sum exact: each packed value, padding included, must be right."""
    x, w, b = int_tensor(*xs), int_tensor(*ws), int_tensor(ws[0])
    got = _forward(x, w, b, method, monkeypatch, images, **kw)
    ref = F.conv2d(x.double(), w.double(), b.double(), **kw)
    assert torch.equal(got, ref.float())


@pytest.mark.parametrize("images", ["1", "2"])
@pytest.mark.parametrize("method", METHODS)
def test_padding_stays_zero_next_to_nan(method, images, monkeypatch):
    """The gather reads plane offset 0 for a padding column and masks it: a NaN there (the
    top-left pixel of every channel of the first image) must reach exactly the outputs whose
    window covers it."""
    x = torch.randn(2, 8, 7, 7)
    x[0, :, 0, 0] = float("nan")
    w = torch.randn(16, 8, 3, 3)
    got = _forward(x, w, None, method, monkeypatch, images, padding=1)
    ref = F.conv2d(x, w, None, padding=1)
    assert torch.equal(got.isnan(), ref.isnan())
    assert int(got.isnan().sum()) == 16 * 4  # outputs (0..1, 0..1) of each filter, image 0
    finite = ~ref.isnan()
    assert_close(got[finite], ref[finite])


def _im2col_forward_workspace(x, w):
    fwd = next(p for p in cnnkern.explain(x, w, padding=1).passes if p.name == "fwd")
    return next(a for a in fwd.algorithms if a.name == "im2col")


@pytest.mark.parametrize("threads, images", [(1, 3), (2, 2), (3, 1)])
def test_batched_forward_by_default_only_for_weights_over_4_mib(threads, images):
    """ResNet-50's 512 x 7x7 layer at batch 3: 9 MiB of weights, batched into at least one GEMM
    per thread (1 thread: all 3 images, its 512 x 147 outputs a per-thread buffer; 2: GEMMs of
    2 and 1 images; 3: a GEMM per image, no buffer); 256 -> 256 filters of 1x1 (256 KiB) never."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = _im2col_forward_workspace(torch.randn(3, 512, 7, 7), torch.randn(512, 512, 3, 3))
        small = _im2col_forward_workspace(torch.randn(3, 256, 7, 7), torch.randn(256, 256, 1, 1))
    finally:
        torch.set_num_threads(before)
    if images > 1:
        assert a.workspace_per_thread == 512 * images * 49 * 4
        assert f"the outputs of {images} images" in a.workspace
    else:
        assert a.workspace_per_thread == 0 and "images" not in a.workspace
    assert small.workspace_per_thread == 0 and "images" not in small.workspace


def test_batched_forward_workspace_by_hand(monkeypatch):
    """3 images of 7x7 in one GEMM (forced): its 8 x 147 outputs are a per-thread buffer."""
    monkeypatch.setenv("CNNKERN_IM2COL_IMAGES", "3")
    a = _im2col_forward_workspace(torch.randn(3, 4, 7, 7), torch.randn(8, 4, 3, 3))
    assert a.workspace_per_thread == 8 * 3 * 49 * 4
    assert "the outputs of 3 images" in a.workspace


def test_unknown_method_is_refused_naming_the_variable_and_value(monkeypatch):
    x, w = torch.randn(1, 4, 6, 6), torch.randn(4, 4, 3, 3)
    with pytest.raises(RuntimeError, match="CNNKERN_IM2COL_PACK must be 'runs', 'phases' or "
                                           "'gather'; got 'gathr'"):
        _forward(x, w, None, "gathr", monkeypatch, padding=1)


@pytest.mark.parametrize("bad", ["0", "-1", "two", "3 "])
def test_bad_image_count_is_refused_naming_the_variable_and_value(bad, monkeypatch):
    x, w = torch.randn(2, 4, 6, 6), torch.randn(4, 4, 3, 3)
    with pytest.raises(RuntimeError, match="CNNKERN_IM2COL_IMAGES must be a whole number of "
                                           f"images from 1; got '{bad}'"):
        _forward(x, w, None, "gather", monkeypatch, bad, padding=1)
