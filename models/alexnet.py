"""AlexNet: the 2012 paper's network (as the lecture gives it) and torchvision's variant."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Layers


class AlexNetOriginal(nn.Module):
    """Krizhevsky et al. 2012 on 224x224x3: 96 11x11/4, 256 5x5 (2 groups), 384 3x3,
    384 3x3, 256 3x3 (2 groups), overlapping 3x3/2 max-pools, local response normalisation,
    then 4096-4096-classes with dropout.

    The two groups stand for the paper's split over two GPUs. conv1 pads by 2 so that 224
    input gives the paper's 55x55 maps (the paper's 227 arithmetic).
    Weights per layer: 34,848 / 307,200 / 884,736 / 1,327,104 / 442,368 / 37,748,736 /
    16,777,216 / 4,096,000.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, algo: str = "auto",
                 backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)
        self.features = nn.Sequential(
            L.conv(3, 96, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), L.max_pool(3, 2),
            L.conv(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), L.max_pool(3, 2),
            L.conv(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            L.conv(384, 384, 3, padding=1), nn.ReLU(inplace=True),
            L.conv(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            L.max_pool(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNet(nn.Module):
    """torchvision's AlexNet (64/192/384/256/256 filters, 61,100,840 parameters), same keys."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, algo: str = "auto",
                 backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)
        self.features = nn.Sequential(
            L.conv(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), L.max_pool(3, 2),
            L.conv(64, 192, 5, padding=2), nn.ReLU(inplace=True), L.max_pool(3, 2),
            L.conv(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            L.conv(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            L.conv(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            L.max_pool(3, 2),
        )
        self.avgpool = L.adaptive_avg_pool((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet_original(num_classes: int = 1000, algo: str = "auto",
                     backend: str = "cnnkern") -> AlexNetOriginal:
    return AlexNetOriginal(num_classes, algo=algo, backend=backend)


def alexnet(num_classes: int = 1000, algo: str = "auto", backend: str = "cnnkern") -> AlexNet:
    return AlexNet(num_classes, algo=algo, backend=backend)
