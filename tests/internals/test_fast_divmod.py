"""core/fast_divmod.h, the magic-number division the CUDA pooling kernels split their 32-bit
indices with, run on the CPU (the tests-only op cnnkern_testing.fast_divmod) against Python's
integer division: every divisor class (1, powers of two, odd, the pooling sizes, the largest
allowed), the dividends where a wrong multiplier or shift shows first (multiples of d and their
neighbours, the top of the range), and random ones."""

import pytest
import torch

import cnnkern  # noqa: F401  (loads the ops)
from conftest import load_testing_ops

ops = load_testing_ops()  # torch.ops.cnnkern_testing

TOP = 2**31 - 1
DIVISORS = ([1, 2, 3, 5, 6, 7, 9, 11, 14, 28, 56, 112, 224, 641, 6700417]
            + [2**k for k in range(1, 31)] + [2**k + 1 for k in range(1, 31)]
            + [2**k - 1 for k in range(2, 32)] + [TOP - 1, TOP])


def _dividends(d, gen):
    near = [q * d + r for q in (0, 1, 2, 3, TOP // d - 1, TOP // d) for r in (-1, 0, 1)]
    rand = torch.randint(0, TOP + 1, (2000,), generator=gen).tolist()
    return sorted({n for n in near + rand + [0, 1, TOP - 1, TOP] if 0 <= n <= TOP})


@pytest.mark.parametrize("d", DIVISORS)
def test_quotient_and_remainder_match_integer_division(d):
    gen = torch.Generator().manual_seed(d)
    n = torch.tensor(_dividends(d, gen), dtype=torch.int64)
    got = ops.fast_divmod(n, d)
    assert got.shape == (n.numel(), 2)
    assert torch.equal(got[:, 0], n // d), d
    assert torch.equal(got[:, 1], n % d), d


def test_a_hand_example():
    # 112 = 2^7 - 16: shift 7, multiplier floor(2^32 * 16 / 112) + 1 = 613566757.
    got = ops.fast_divmod(torch.tensor([0, 111, 112, 12543, TOP]), 112)
    assert got.tolist() == [[0, 0], [0, 111], [1, 0], [111, 111], [19173961, 15]]


@pytest.mark.parametrize("n, d, what", [([0], 0, "d must be in"), ([0], 2**31, "d must be in"),
                                        ([-1], 3, "n must be in"), ([2**31], 3, "n must be in")])
def test_out_of_range_arguments_are_refused(n, d, what):
    with pytest.raises(RuntimeError, match=what):
        ops.fast_divmod(torch.tensor(n), d)
