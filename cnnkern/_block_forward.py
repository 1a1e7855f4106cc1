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


# torchvision's ResNet blocks, by class: the forward below repeats theirs, so it may replace
# only these exact classes (a subclass may have changed the forward).
RESIDUAL_BLOCKS = {("torchvision.models.resnet", "BasicBlock"): ("conv1",),
                   ("torchvision.models.resnet", "Bottleneck"): ("conv1", "conv2")}


def residual_block_convs(block: nn.Module):
    """(the fused conv + BN + ReLU layers, the tail conv's name) of a torchvision BasicBlock
    or Bottleneck whose convs convert fused (the tail conv's BN without a ReLU), else None."""
    from .nn import FusedConvBatchNorm2d   # cnnkern.nn imports this module's neighbours

    heads = RESIDUAL_BLOCKS.get((type(block).__module__, type(block).__name__))
    if heads is None or "forward" in vars(block):
        return None
    tail = "conv3" if len(heads) == 2 else "conv2"
    convs = [getattr(block, n, None) for n in heads + (tail,)]
    if not all(isinstance(c, FusedConvBatchNorm2d) for c in convs):
        return None
    if not all(c.fused_relu and c.relu_max is None for c in convs[:-1]) or convs[-1].fused_relu:
        return None
    return heads, tail


class ResidualBlockForward:
    """`block.forward` of a torchvision BasicBlock / Bottleneck after convert: the block's
    own sequence, but the tail `bn(conv(out)) + identity -> relu` runs as one fused op
    (cnnkern.nn.FusedConvBatchNorm2d.forward_residual): no `out += identity` pass and no
    separate ReLU pass in forward, no separate ReLU node in backward. Its BN modules are the
    identity after convert and its ReLU module skips the fused layers' outputs, so calling
    them keeps the original's module calls (hooks) at no cost. A plain object, for the reason
    FusedBlockForward is one."""

    def __init__(self, block: nn.Module, heads, tail: str):
        self.block = block
        self.heads = tuple(heads)   # "conv1" (BasicBlock), "conv1", "conv2" (Bottleneck)
        self.tail = tail

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        out = x
        for i, name in enumerate(self.heads, start=1):
            out = b.relu(getattr(b, f"bn{i}")(getattr(b, name)(out)))
        return getattr(b, self.tail).forward_residual(out, identity)

    def __repr__(self) -> str:
        return (f"ResidualBlockForward({', '.join(self.heads)} fused conv + BN + ReLU; "
                f"{self.tail} + BN + residual add + ReLU fused)")
