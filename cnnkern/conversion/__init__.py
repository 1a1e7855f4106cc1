"""`cnnkern.convert(model)`: put cnnkern layers into an existing PyTorch model.

What it replaces (modules of exactly these torch types; subclasses may override forward and
are left alone, with the reason in the report):

- nn.Conv2d -> cnnkern.nn.Conv2d (same parameters, same keys);
- nn.ConvTranspose2d -> cnnkern.nn.ConvTranspose2d (same parameters, same keys; its forward
  runs the grad-input kernels of the conv whose weight it has);
- nn.MaxPool2d / nn.AvgPool2d / nn.AdaptiveAvgPool2d -> their cnnkern.nn twins (every
  argument of the torch layers is supported, return_indices and divisor_override included);
- with fuse=True, every Conv2d -> BatchNorm2d (-> ReLU) chain -> one fused conv + BN (+ ReLU)
  computation (cnnkern.nn.FusedConvBatchNorm2d says how the modules keep their names and
  keys).

Every other module of a type that eligibility.LAYERS lists (1-D and 3-D convs and pools,
uninitialised lazy convs, LPPool2d, FractionalMaxPool2d, AdaptiveMaxPool2d, MaxUnpool2d,
quantized and fake-quantized convs, already-converted layers) gets a "NOT replaced" line in the
report, with the reason.

The package, by job: swap.py (the function, and the module swap), chains.py (finding the
chains), eligibility.py (what can be swapped, and why not), report.py (ConvertReport).
"""

from .report import ConvertEntry, ConvertReport
from .swap import convert

__all__ = ["convert", "ConvertReport", "ConvertEntry"]
