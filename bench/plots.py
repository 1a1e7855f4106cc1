"""PNG charts of a benchmark run: speedup against the reference per layer, and a roofline."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Tuple

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


def roof_lines(peaks: Dict[str, float], sources: Dict[str, str], dtypes: Iterable[str],
               lo: float, hi: float) -> List[Tuple[str, List[float], List[float], str]]:
    """(label, intensities, GFLOP/s, line style) of each roof over [lo, hi] FLOP/byte:
    min(compute peak, bandwidth x intensity) per dtype in `dtypes` (every compute peak when
    none is), for memory's bandwidth (solid) and the cache's (dashed); a flat line when no
    bandwidth is known. The label says whether the peak was measured or is the datasheet's."""
    bandwidths = {k: v for k, v in peaks.items() if k.startswith("bandwidth") and v}
    computes = {k: v for k, v in peaks.items() if not k.startswith("bandwidth")}
    shown = set(dtypes) & set(computes) or set(computes)
    lines = []
    for name, peak in computes.items():
        if name not in shown:
            continue
        how = "datasheet" if "datasheet" in sources.get(name, "") else "measured"
        if not bandwidths:
            lines.append((f"roof {name} ({how})", [lo, hi], [peak / 1e9] * 2, "-"))
        for bw_name, bw in bandwidths.items():
            xs = [lo, max(lo, min(peak / bw, hi)), hi]
            where = "cache" if bw_name == "bandwidth_cache" else "memory"
            lines.append((f"roof {name}, {where} ({how})", xs,
                          [min(peak, bw * x) / 1e9 for x in xs],
                          "--" if bw_name == "bandwidth_cache" else "-"))
    return lines


def roofline_chart(rows: List[Row], peaks: Dict[str, float], path: str, title: str,
                   sources: Optional[Dict[str, str]] = None) -> None:
    """Achieved FLOP/s against arithmetic intensity (FLOP per byte moved at least once), under
    the roofs of the run's peaks (bench/peaks.py: measured on the CPU, the datasheet on known
    GPUs). Winograd's rates are effective (on the direct count), so its points may pass the
    compute roof."""
    plt = _plt()
    points = [r for r in rows if r.kind == "conv2d" and r.gflops and r.bytes_moved]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensities = [r.flops / r.bytes_moved for r in points] or [1.0]
    lo, hi = min(intensities) / 2, max(intensities) * 2
    for label, xs, ys, style in roof_lines(peaks, sources or {}, {r.dtype for r in points},
                                           lo, hi):
        ax.plot(xs, ys, linestyle=style, label=label)
    by_algo = defaultdict(list)
    for r in points:
        by_algo[f"{r.algo} {r.pass_}"].append(r)
    for name, rs in by_algo.items():
        ax.scatter([r.flops / r.bytes_moved for r in rs], [r.gflops for r in rs], s=14, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s (direct-conv count; effective for Winograd)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
