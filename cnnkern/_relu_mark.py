"""A ReLU module that skips the work when its input already went through a fused ReLU.

torchvision's ResNet blocks call one `self.relu` module twice: after bn1, and after the
residual add. `cnnkern.convert` cannot make that module nn.Identity (the second call needs
it), so without this the conv + BN before it would be fused without the ReLU, and the ReLU
would run as two extra passes over the tensor in forward (relu_) and three in backward
(threshold_backward), where the fused op recomputes its mask from z for free.

So convert fuses the ReLU into the conv + BN anyway and replaces the shared module by
SkipAppliedReLU: the fused layer marks its output (mark_relu_applied) with the tensor's version
counter, and SkipAppliedReLU returns a marked tensor unchanged as long as its version is the
one marked, i.e. nothing has written into it since (`out += identity`, relu_, any in-place
op bumps it). Any other input (the residual sum) gets the ReLU as before.

Skipping is only ever an optimisation: ReLU is idempotent in value (relu(relu(x)) == relu(x),
NaN included) and in gradient (the second mask, y > 0, is the first one), so wherever a mark
cannot be set or read -- inference tensors have no version counter, torch.compile traces the
module without looking -- applying the ReLU again gives the same result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ATTR = "_cnnkern_relu_applied_at_version"


def mark_relu_applied(t: torch.Tensor) -> torch.Tensor:
    """Marks t (a fused op's ReLU output) as ReLU-applied at its current version; returns t."""
    if torch.compiler.is_compiling():
        return t
    try:
        setattr(t, _ATTR, t._version)
    except RuntimeError:  # an inference tensor: no version counter, so no mark
        pass
    return t


def relu_applied(t: torch.Tensor) -> bool:
    """Whether t is marked and unchanged since (its version is the marked one)."""
    version = getattr(t, _ATTR, None)
    return version is not None and version == t._version


class SkipAppliedReLU(nn.ReLU):
    """nn.ReLU (same arguments, no state) that returns its input as it is when the input is a
    fused ReLU's output that nothing has written into since (relu_applied)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and relu_applied(input):
            return input
        return F.relu(input, inplace=self.inplace)

    @classmethod
    def from_torch(cls, relu: nn.ReLU) -> "SkipAppliedReLU":
        return cls(inplace=relu.inplace).train(relu.training)
