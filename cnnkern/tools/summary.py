"""`cnnkern summary MODEL`: the per-layer table the VGG16 lecture walks through.

Output shape, weights (without biases), cumulative weights, multiply-accumulates, and for
each convolution the algorithm "auto" runs and why.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

import cnnkern
from cnnkern.tools.console import add_row, render, table


def _weights(m: nn.Module) -> int:
    """Weights as the lecture counts them: those of convolutions and dense layers."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        return m.weight.numel()
    return 0


def _macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv2d):  # K * C/g * R * S per output position
        return out.numel() * m.weight[0].numel()
    if isinstance(m, nn.ConvTranspose2d):  # each input element meets C_out/g * R * S taps
        return inp.numel() * m.weight[0].numel()
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    return 0


def summarize(model: nn.Module, input_shape, device: str = "cpu") -> List[dict]:
    rows: List[dict] = []
    handles = []
    for name, m in model.named_modules():
        if not name or list(m.children()):
            continue

        def hook(mod, args, out, name=name):
            if not isinstance(out, torch.Tensor):
                return
            row = dict(name=name, kind=type(mod).__name__, shape=tuple(out.shape[1:]),
                       weights=_weights(mod), macs=_macs(mod, args[0], out), algo="")
            if isinstance(mod, cnnkern.nn.Conv2d):
                try:
                    chosen = cnnkern.select(args[0], mod.weight, mod.bias, mod.stride,
                                            mod.padding, mod.dilation, mod.groups, algo=mod.algo)
                    how = "auto's pick" if mod.algo == "auto" else "requested"
                    row["algo"] = f"{chosen} ({how})"
                except RuntimeError as e:
                    row["algo"] = f"cannot run: {str(e).splitlines()[0]}"
            rows.append(row)

        handles.append(m.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    for h in handles:
        h.remove()
    total = 0
    for r in rows:
        total += r["weights"]
        r["cumulative"] = total
    return rows


def format_summary(rows: List[dict], title: Optional[str] = None) -> str:
    numbers = ["weights", "cumulative", "MACs"]
    t = table(["layer", "kind", "output"] + numbers + ["algorithm"], right=numbers,
              wrap=["algorithm"], title=title)
    for r in rows:
        add_row(t, [r["name"], r["kind"], "x".join(map(str, r["shape"])), f"{r['weights']:,}",
                    f"{r['cumulative']:,}", f"{r['macs']:,}", r["algo"]])
    return render(t, f"total: {rows[-1]['cumulative'] if rows else 0:,} weights (without "
                     f"biases), {sum(r['macs'] for r in rows):,} MACs per image")
