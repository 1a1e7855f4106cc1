"""FCN-8s (Long, Shelhamer & Darrell, 2015) on a VGG16 encoder, for semantic segmentation.

Downsample with VGG16's conv stages (pool3 at 1/8, pool4 at 1/16, pool5 at 1/32), classify
every position with the fully convolutional fc6/fc7, then upsample back to the input size
with cnnkern's transposed convolutions, fusing the 1/16 and 1/8 scores on the way (skips).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Layers
from .vgg import vgg_features

# Indices in vgg_features() after which pool3, pool4 and pool5 come out.
_POOL3, _POOL4 = 17, 24


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Per-channel bilinear upsampling weights, FCN's initialisation of its deconvolutions."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    w = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    w[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return w.float()


class FCN8s(nn.Module):
    def __init__(self, num_classes: int = 21, fc_channels: int = 4096, algo: str = "auto",
                 backend: str = "cnnkern"):
        super().__init__()
        L = Layers(backend, algo)
        self.features = vgg_features(L)
        self.fc6 = L.conv(512, fc_channels, 7, padding=3)
        self.fc7 = L.conv(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score_fr = L.conv(fc_channels, num_classes, 1)
        self.score_pool4 = L.conv(512, num_classes, 1)
        self.score_pool3 = L.conv(256, num_classes, 1)
        # x2, x2, x8: kernel 2s, stride s, padding s/2 multiplies the size by s exactly
        self.upscore2 = L.conv_transpose(num_classes, num_classes, 4, stride=2, padding=1,
                                         bias=False)
        self.upscore_pool4 = L.conv_transpose(num_classes, num_classes, 4, stride=2, padding=1,
                                              bias=False)
        self.upscore8 = L.conv_transpose(num_classes, num_classes, 16, stride=8, padding=4,
                                         bias=False)
        with torch.no_grad():
            for up in (self.upscore2, self.upscore_pool4, self.upscore8):
                up.weight.copy_(bilinear_kernel(num_classes, up.kernel_size[0]))

    def forward(self, x):
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"fcn_vgg16: input height and width must be multiples of 32; got "
                             f"{tuple(x.shape[-2:])}")
        pool3 = self.features[:_POOL3](x)
        pool4 = self.features[_POOL3:_POOL4](pool3)
        pool5 = self.features[_POOL4:](pool4)
        h = self.drop(torch.relu(self.fc6(pool5)))
        h = self.drop(torch.relu(self.fc7(h)))
        h = self.upscore2(self.score_fr(h))                       # 1/16
        h = self.upscore_pool4(h + self.score_pool4(pool4))       # 1/8
        return self.upscore8(h + self.score_pool3(pool3))         # 1/1: per-pixel scores


def fcn_vgg16(num_classes: int = 21, fc_channels: int = 4096, algo: str = "auto",
              backend: str = "cnnkern") -> FCN8s:
    return FCN8s(num_classes, fc_channels, algo, backend)
