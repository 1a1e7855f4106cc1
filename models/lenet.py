"""LeNet-5 (LeCun et al., 1998)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ._layers import Layers


class LeNet5(nn.Module):
    """C1 6@5x5 -> S2 avg 2x2 -> C3 16@5x5 -> S4 avg 2x2 -> C5 120@5x5 -> F6 84 -> classes.

    The paper's layout with tanh and average-pool subsampling, on 32x32 grey input. 28x28
    digits (MNIST as distributed) are zero-padded by 2 on each side, as the paper did to keep
    strokes away from the border, which gives the same 28x28 C1 maps.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, algo: str = "auto",
                 backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)
        self.features = nn.Sequential(
            L.conv(in_channels, 6, 5), nn.Tanh(), L.avg_pool(2),
            L.conv(6, 16, 5), nn.Tanh(), L.avg_pool(2),
            L.conv(16, 120, 5), nn.Tanh(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), nn.Tanh(),
                                        nn.Linear(84, num_classes))

    def forward(self, x):
        if x.shape[-2:] == (28, 28):
            x = F.pad(x, (2, 2, 2, 2))
        elif x.shape[-2:] != (32, 32):
            raise ValueError(f"lenet5: expected 32x32 or 28x28 input; got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1, algo: str = "auto",
           backend: str = "cnnkern") -> LeNet5:
    return LeNet5(num_classes, in_channels, algo, backend)
