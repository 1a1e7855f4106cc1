"""The CUDA Winograd's transformed filters, cached per weight version when
CNNKERN_WINOGRAD_FILTER_CACHE=1 (csrc/cuda/winograd_filter_cache.h): a second call with the
same weight skips the filter transform (emulator: one kernel launch fewer), and whatever changes
the weight is seen: an in-place update of the tensor or of a view of it (torch's version counter
moves), a new tensor where a freed one was. Off (the default), a write through `.data` is seen
too. Results against F.conv2d in float64; GPU and emulated (`dev`)."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import emulator

ALGOS = ["winograd", "winograd_f2"]
MAX_REL = 1e-4  # F(4x4)'s float32 bound (tests/ops/test_winograd.py: FP32_MAX_REL)


def check(y, x, w):
    ref = F.conv2d(x.double(), w.double(), padding=1)
    assert (y.double() - ref).abs().max() <= MAX_REL * ref.abs().max()


@pytest.fixture
def cache_on(monkeypatch):
    monkeypatch.setenv("CNNKERN_WINOGRAD_FILTER_CACHE", "1")


def launches(dev):
    return emulator.stats()["launches"] if dev.emulated else None


@pytest.mark.parametrize("algo", ALGOS)
def test_same_weight_reuses_the_transform_and_updates_are_seen(algo, on_dev, cache_on):
    x = torch.randn(2, 5, 9, 10)
    w = torch.randn(6, 5, 3, 3)
    n0 = launches(on_dev)
    check(cnnkern.conv2d(x, w, padding=1, algo=algo), x, w)
    n1 = launches(on_dev)
    check(cnnkern.conv2d(x, w, padding=1, algo=algo), x, w)
    n2 = launches(on_dev)
    if on_dev.emulated:  # filter, the fused kernel; then no filter transform
        assert (n1 - n0, n2 - n1) == (2, 1)
    with torch.no_grad():
        w.mul_(-0.5)            # the tensor itself
        w[:, 2, 1, 1].add_(3)   # through a view: the same version counter
    check(cnnkern.conv2d(x, w, padding=1, algo=algo), x, w)
    if on_dev.emulated:
        assert launches(on_dev) - n2 == 2


@pytest.mark.parametrize("algo", ALGOS)
def test_grad_input_sees_an_updated_weight(algo, on_dev, cache_on):
    x = torch.randn(1, 4, 8, 7, requires_grad=True)
    w = torch.randn(3, 4, 3, 3)
    g = torch.randn(1, 3, 8, 7)
    for _ in range(2):  # the second pass after an in-place update of w
        x.grad = None
        cnnkern.conv2d(x, w, padding=1, algo=algo).backward(g)
        xd = x.detach().double().requires_grad_()
        F.conv2d(xd, w.double(), padding=1).backward(g.double())
        assert (x.grad.double() - xd.grad).abs().max() <= MAX_REL * xd.grad.abs().max()
        with torch.no_grad():
            w.add_(torch.randn_like(w))


def test_a_new_weight_where_a_freed_one_was_is_transformed_afresh(on_dev, cache_on):
    x = torch.randn(1, 3, 6, 6)
    for seed in range(3):  # same shape, same version 0; the allocator may reuse the address
        w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(seed)).to(x.device)
        check(cnnkern.conv2d(x, w, padding=1, algo="winograd"), x, w)
        del w


def test_off_by_default_so_a_write_through_data_is_seen(on_dev, monkeypatch):
    monkeypatch.delenv("CNNKERN_WINOGRAD_FILTER_CACHE", raising=False)
    x = torch.randn(1, 3, 7, 6)
    w = torch.randn(4, 3, 3, 3)
    n0 = launches(on_dev)
    check(cnnkern.conv2d(x, w, padding=1, algo="winograd"), x, w)
    w.data.mul_(-3)  # as gradcheck perturbs its inputs: the version counter does not move
    check(cnnkern.conv2d(x, w, padding=1, algo="winograd"), x, w)
    if on_dev.emulated:  # the filter transform ran both times (with the fused kernel)
        assert launches(on_dev) - n0 == 4
