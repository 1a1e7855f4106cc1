"""The report `cnnkern.convert(..., report=True)` returns: one entry per layer or chain it
looked at, and how it analysed each (sub)module."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

__all__ = ["ConvertEntry", "ConvertReport"]

@dataclass
class ConvertEntry:
    """One layer (or chain) `convert` looked at.

    kind: "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "conv_bn_relu", "conv_bn" or "residual_add_relu" (a ResNet block whose tail add + ReLU
    joined its last fused conv); for layers never replaced, the kind of their row in
    cnnkern.conversion.eligibility.LAYERS ("conv1d", "lp_pool2d", "quantized_conv2d", ...).
    name: the module's qualified name (the conv's for a chain; "" is the model itself);
    replaced: whether it was; detail: what it became, or why it was not.
    """

    name: str
    kind: str
    replaced: bool
    detail: str
    bn: Optional[str] = None
    relu: Optional[str] = None

    def __str__(self) -> str:
        chain = ""
        if self.bn is not None:
            chain = f" + {self.bn}" + (f" + {self.relu}" if self.relu else "")
        mark = "replaced" if self.replaced else "NOT replaced"
        return f"{self.kind:20s} {(self.name or '<model>') + chain}: {mark}: {self.detail}"


@dataclass
class ConvertReport:
    """What `convert` replaced and fused, what it did not and why, and how it found chains.

    analysis maps each analysed (sub)module ("" = the model) to "torch.fx" or to
    "untraceable (...); nn.Sequential scan" / "untraceable (...); analysed per child".
    """

    entries: List[ConvertEntry] = field(default_factory=list)
    analysis: Dict[str, str] = field(default_factory=dict)

    @property
    def replaced(self) -> List[ConvertEntry]:
        return [e for e in self.entries if e.replaced]

    @property
    def skipped(self) -> List[ConvertEntry]:
        return [e for e in self.entries if not e.replaced]

    @property
    def fused(self) -> List[ConvertEntry]:
        return [e for e in self.replaced if e.kind in ("conv_bn", "conv_bn_relu")]

    def names(self, kind: Optional[str] = None, replaced: Optional[bool] = True) -> List[str]:
        """Qualified names of the entries of `kind` (all kinds if None) with that status."""
        return [e.name for e in self.entries
                if (kind is None or e.kind == kind) and (replaced is None or e.replaced == replaced)]

    def entry(self, name: str, kind: Optional[str] = None) -> ConvertEntry:
        for e in self.entries:
            if e.name == name and (kind is None or e.kind == kind):
                return e
        raise KeyError(f"ConvertReport: no entry named {name!r}"
                       + (f" of kind {kind!r}" if kind else ""))

    def __str__(self) -> str:
        counts = Counter(e.kind for e in self.replaced)
        head = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
        lines = [f"cnnkern.convert: replaced {head}; {len(self.skipped)} not replaced"]
        lines += [f"  analysis of {name or '<model>'}: {how}" for name, how in self.analysis.items()]
        lines += ["  " + str(e) for e in self.entries]
        return "\n".join(lines)
