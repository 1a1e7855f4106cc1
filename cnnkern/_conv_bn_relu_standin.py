"""Stand-in for the fused conv + BatchNorm (+ ReLU) op: replaced at merge by the fused op.

It has exactly the signature of `cnnkern.conv_bn_relu` (being written on another branch), and
computes the same thing unfused: cnnkern.conv2d, then F.batch_norm, then ReLU. Only
cnnkern/_fused_modules.py imports it (one import site), so the merge swaps one line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .functional import conv2d


def conv_bn_relu(input, weight, bias, bn_weight, bn_bias, running_mean, running_var,
                 training=False, momentum=0.1, eps=1e-5, stride=1, padding=0, dilation=1,
                 groups=1, *, relu=True, algo="auto") -> torch.Tensor:
    """relu(batch_norm(conv2d(input))) with F.batch_norm's semantics.

    `momentum` is the already-resolved exponential-average factor; the running stats are
    updated in place when `training`; running_mean / running_var None means batch stats only.
    """
    out = conv2d(input, weight, bias, stride, padding, dilation, groups, algo=algo)
    out = F.batch_norm(out, running_mean, running_var, bn_weight, bn_bias, training, momentum,
                       eps)
    return F.relu(out) if relu else out
