"""VGG16 (configuration D, Simonyan & Zisserman 2014), with torchvision's state_dict keys."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Layers

# Configuration D: 13 3x3 convs in five stages, "M" a 2x2/2 max-pool.
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"]


def vgg_features(L: Layers, cfg=VGG16_CFG, batch_norm: bool = False,
                 in_channels: int = 3) -> nn.Sequential:
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(L.max_pool(2, 2))
            continue
        layers.append(L.conv(in_channels, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Module, L: Layers, num_classes: int = 1000,
                 dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = L.adaptive_avg_pool((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16(num_classes: int = 1000, algo: str = "auto", backend: str = "cnnkern") -> VGG:
    """138,357,544 parameters (138,344,128 weights without biases) for 1000 classes."""
    L = Layers(backend, algo)
    return VGG(vgg_features(L), L, num_classes)


def vgg16_bn(num_classes: int = 1000, algo: str = "auto", backend: str = "cnnkern") -> VGG:
    L = Layers(backend, algo)
    return VGG(vgg_features(L, batch_norm=True), L, num_classes)
