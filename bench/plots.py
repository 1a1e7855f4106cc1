"""PNG charts of a benchmark run: speedup against the reference per layer, and a roofline."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

from .runner import Row


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def speedup_chart(rows: List[Row], path: str, title: str, ref_name: str) -> None:
    """Bars per layer (one per algorithm and pass), log scale, a line at 1 (parity)."""
    plt = _plt()
    measured = [r for r in rows if r.speedup is not None]
    layers = list(dict.fromkeys(r.layer for r in measured))
    series: Dict[str, Dict[str, float]] = defaultdict(dict)
    for r in measured:
        series[f"{r.algo} {r.pass_}" + ("" if r.layout == "nchw" else f" {r.layout}")][r.layer] = r.speedup
    width_in = min(16, max(6, 2 + 0.4 * len(layers) * max(1, len(series)) ** 0.5))
    fig, ax = plt.subplots(figsize=(width_in, 4.5))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j, layer in enumerate(layers) if layer in values]
        ax.bar(xs, [values[layer] for layer in layers if layer in values], width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))])
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"speedup vs {ref_name} (>1: cnnkern faster)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roofline_chart(rows: List[Row], peaks: Dict[str, float], path: str, title: str) -> None:
    """Achieved FLOP/s against arithmetic intensity (FLOP per byte moved at least once), under
    the compute roof of each dtype measured and the memory-bandwidth roof."""
    plt = _plt()
    points = [r for r in rows if r.kind == "conv2d" and r.gflops and r.bytes_moved]
    fig, ax = plt.subplots(figsize=(7, 5))
    bw = peaks.get("bandwidth")
    intensities = [r.flops / r.bytes_moved for r in points] or [1.0]
    lo, hi = min(intensities) / 2, max(intensities) * 2
    for name, peak in peaks.items():
        if name == "bandwidth":
            continue
        xs = [lo, hi]
        if bw:
            knee = peak / bw
            xs = [lo, max(lo, min(knee, hi)), hi]
            ax.plot(xs, [min(peak, bw * x) / 1e9 for x in xs], label=f"roof {name}")
        else:
            ax.plot(xs, [peak / 1e9] * 2, label=f"roof {name}")
    by_algo = defaultdict(list)
    for r in points:
        by_algo[f"{r.algo} {r.pass_}"].append(r)
    for name, rs in by_algo.items():
        ax.scatter([r.flops / r.bytes_moved for r in rs], [r.gflops for r in rs], s=14, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s (direct-conv count)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
