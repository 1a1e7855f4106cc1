"""ResNet-18 and ResNet-50 (He et al., 2015) with torchvision's state_dict keys."""

from __future__ import annotations

from typing import List, Type, Union

import torch
from torch import nn

from ._layers import Layers


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, L: Layers, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module = None):
        super().__init__()
        self.conv1 = L.conv(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = L.conv(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)  # the residual connection


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride, as torchvision's "ResNet v1.5") -> 1x1 expand."""

    expansion = 4

    def __init__(self, L: Layers, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module = None):
        super().__init__()
        self.conv1 = L.conv(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = L.conv(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = L.conv(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ResNet(nn.Module):
    def __init__(self, block: Block, layers: List[int], num_classes: int = 1000,
                 algo: str = "auto", backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)
        self.inplanes = 64
        self.conv1 = L.conv(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = L.max_pool(3, 2, 1)
        self.layer1 = self._stage(L, block, 64, layers[0])
        self.layer2 = self._stage(L, block, 128, layers[1], stride=2)
        self.layer3 = self._stage(L, block, 256, layers[2], stride=2)
        self.layer4 = self._stage(L, block, 512, layers[3], stride=2)
        self.avgpool = L.adaptive_avg_pool((1, 1))  # global average pooling
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, L: Layers, block: Block, planes: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # 1x1 projection so the residual matches the block's output shape
            downsample = nn.Sequential(
                L.conv(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(L, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(L, self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, algo: str = "auto", backend: str = "cnnkern") -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, algo, backend)


def resnet50(num_classes: int = 1000, algo: str = "auto", backend: str = "cnnkern") -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, algo, backend)
