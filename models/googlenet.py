"""GoogLeNet (Szegedy et al., 2014): Inception modules, with torchvision's state_dict keys."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Layers


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU, as torchvision builds GoogLeNet."""

    def __init__(self, L: Layers, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = L.conv(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5;
    3x3 max-pool -> 1x1 projection. The 1x1s in front cut the channels the big kernels see.

    `branch3_kernel` is 5 as in the paper; torchvision's weights were trained with 3 there
    (a bug it keeps for compatibility), so pass 3 to load them.
    """

    def __init__(self, L: Layers, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5,
                 pool_proj, branch3_kernel: int = 5):
        super().__init__()
        self.branch1 = BasicConv2d(L, in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(L, in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(L, ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(
            BasicConv2d(L, in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(L, ch5x5red, ch5x5, kernel_size=branch3_kernel,
                        padding=branch3_kernel // 2))
        self.branch4 = nn.Sequential(
            L.max_pool(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(L, in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, branch3_kernel: int = 5,
                 algo: str = "auto", backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)

        def inception(*channels):
            return Inception(L, *channels, branch3_kernel=branch3_kernel)

        self.conv1 = BasicConv2d(L, 3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = L.max_pool(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(L, 64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(L, 64, 192, kernel_size=3, padding=1)
        self.maxpool2 = L.max_pool(3, stride=2, ceil_mode=True)
        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = L.max_pool(3, stride=2, ceil_mode=True)
        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = L.max_pool(2, stride=2, ceil_mode=True)
        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)
        self.avgpool = L.adaptive_avg_pool((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, "inception" + name)(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def googlenet(num_classes: int = 1000, branch3_kernel: int = 5, algo: str = "auto",
              backend: str = "cnnkern") -> GoogLeNet:
    return GoogLeNet(num_classes, branch3_kernel=branch3_kernel, algo=algo, backend=backend)
