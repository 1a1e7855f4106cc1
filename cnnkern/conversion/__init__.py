"""`cnnkern.convert(model)`: put cnnkern layers into an existing PyTorch model.

What it replaces (modules of exactly these torch types; subclasses may override forward and
are left alone, with the reason in the report):

- nn.Conv2d -> cnnkern.nn.Conv2d (same parameters, same keys);
- nn.MaxPool2d / nn.AvgPool2d / nn.AdaptiveAvgPool2d -> their cnnkern.nn twins (every
  argument of the torch layers is supported, return_indices and divisor_override included);
- with fuse=True, every Conv2d -> BatchNorm2d (-> ReLU) chain -> one fused conv + BN (+ ReLU)
  computation (cnnkern.nn.FusedConvBatchNorm2d says how the modules keep their names and
  keys).

The package, by job: swap.py (the function, and the module swap), chains.py (finding the
chains), eligibility.py (what can be swapped, and why not), report.py (ConvertReport).
"""

from .report import ConvertEntry, ConvertReport
from .swap import convert

__all__ = ["convert", "ConvertReport", "ConvertEntry"]
