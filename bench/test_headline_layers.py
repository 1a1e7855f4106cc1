"""pytest-benchmark cases for the headline layers, to compare results across commits.

Kept out of the CI test run (pytest's testpaths is tests/). Run:
    pytest bench/test_headline_layers.py --benchmark-only --benchmark-autosave
    pytest-benchmark compare            # against the saved runs in .benchmarks/
"""

import pytest
import torch
import torch.nn.functional as F

import cnnkern

DEVICE = "cuda" if cnnkern.cuda_available() else "cpu"

HEADLINE = {  # name: (N, C, H, K, kernel, stride, padding)
    "vgg16.conv3_2": (1, 256, 56, 256, 3, 1, 1),
    "vgg16.conv5_1": (1, 512, 14, 512, 3, 1, 1),
    "resnet50.1x1": (1, 256, 56, 64, 1, 1, 0),
    "resnet50.3x3s2": (1, 128, 56, 128, 3, 2, 1),
    "alexnet.conv1": (1, 3, 224, 96, 11, 4, 2),
}


def _tensors(N, C, H, K, k):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, H, generator=gen).to(DEVICE)
    w = (torch.randn(K, C, k, k, generator=gen) / (C * k * k) ** 0.5).to(DEVICE)
    return x, w


def _sync(fn):
    def run():
        out = fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out
    return run


@pytest.mark.parametrize("algo", ["torch"] + cnnkern.algorithms(DEVICE))
@pytest.mark.parametrize("layer", sorted(HEADLINE))
def test_conv_forward(benchmark, layer, algo):
    N, C, H, K, k, s, p = HEADLINE[layer]
    x, w = _tensors(N, C, H, K, k)
    if algo == "torch":
        fn = lambda: F.conv2d(x, w, None, s, p)  # noqa: E731
    else:
        ok, why = cnnkern.can_implement(x, w, None, s, p, algo=algo)
        if not ok:
            pytest.skip(why)
        fn = lambda: cnnkern.conv2d(x, w, None, s, p, algo=algo)  # noqa: E731
    benchmark.extra_info["gflop"] = 2 * N * K * C * k * k * ((H + 2 * p - k) // s + 1) ** 2 / 1e9
    benchmark(_sync(fn))


@pytest.mark.parametrize("impl", ["torch", "cnnkern"])
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1)])
def test_max_pool(benchmark, impl, kernel, stride, padding):
    x = torch.randn(8, 64, 112, 112, device=DEVICE)
    pool = F.max_pool2d if impl == "torch" else cnnkern.max_pool2d
    benchmark(_sync(lambda: pool(x, kernel, stride, padding)))
