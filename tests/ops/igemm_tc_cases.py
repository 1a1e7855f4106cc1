"""What the tests of the CUDA tensor-core implicit-GEMM kernels share (test_cuda_igemm_tc.py,
the forward; test_cuda_igemm_tc_bwd.py, the backward passes): a case (a convolution, the SM
count the emulated device reports, and the path the kernel's plan must take there), and the
fixture that sets that SM count."""

import pytest
import torch


class Case:
    def __init__(self, id, N, C, H, W, K, R, S, stride=1, padding=0, dilation=1, sms=132,
                 path="small"):
        self.id, self.N, self.C, self.H, self.W, self.K, self.R, self.S = id, N, C, H, W, K, R, S
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.sms = sms      # the SM count the emulated device reports
        self.path = path    # "large", "small", "split" (emulator plan) or "general"

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    def out_size(self, n):
        return (n + 2 * self.padding - self.dilation * (self.R - 1) - 1) // self.stride + 1


@pytest.fixture
def sm_count(dev):
    """Sets the emulated device's SM count for one test (restored to the default 132)."""
    def set_(n):
        if dev.emulated:
            torch.ops.cnnkern_emu._emu_set_sm_count(n)
    yield set_
    set_(132)
