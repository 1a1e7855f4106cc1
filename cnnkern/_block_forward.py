"""The forward `cnnkern.convert` gives a module that does nothing but conv -> BN -> a ReLU call.

torchvision's GoogLeNet (BasicConv2d) and many other models wrap each conv + BN in a module
whose forward ends in code: `return F.relu(self.bn(self.conv(x)), inplace=True)`. A ReLU that
is code cannot be removed like a ReLU module (nn.Identity), so fusing it into the conv + BN
would only add a pass: the fused op applies the ReLU, then F.relu runs again over the whole
tensor in forward (relu_) and once more in backward (threshold_backward), where the fused
backward recomputes the mask from its saved input for free.

Where the module's traced forward is exactly that chain (cnnkern/conversion/chains.py checks
it), convert fuses the ReLU in and sets this object as the module's own `forward` (an instance
attribute, which nn.Module.__call__ finds before the class's method): it calls the fused conv
alone. The module keeps its class, children, hooks and state_dict keys. A plain object holding
the module, not a closure, so the model still deep-copies (the copy's forward calls the copied
module) and pickles (torch.save of the whole model).
"""

from __future__ import annotations

import torch
from torch import nn


class FusedBlockForward:
    """`block.forward` after convert: block.<conv>(input), the fused conv + BN + ReLU, whose
    BatchNorm2d is now identity and whose ReLU call is fused in."""

    def __init__(self, block: nn.Module, conv: str):
        self.block = block
        self.conv = conv   # the fused conv's name within the block ("conv", "layers.0", ...)

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        return self.block.get_submodule(self.conv)(input)

    def __repr__(self) -> str:
        return f"FusedBlockForward(calls {self.conv!r}: conv + BN + ReLU fused)"
