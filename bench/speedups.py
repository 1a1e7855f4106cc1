"""The speedup matrix of a benchmark run: one row per layer and pass, one column per algorithm.

    python -m cnnkern --device cpu --passes all --json run.json
    python -m cnnkern.bench.speedups run.json [--targets direct=0.5,im2col=0.7,winograd=1.3]

Each cell is PyTorch's time / cnnkern's time from the run (>1: cnnkern faster). With
--targets, a cell below its algorithm's target is marked with `*` and the misses are listed
under the table, so a closing note can name every shape that misses. Markdown, for the README
and issue notes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Tuple


def parse_targets(text: str) -> Dict[str, float]:
    """"direct=0.5,im2col=0.7" -> {"direct": 0.5, "im2col": 0.7}."""
    targets = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--targets: expected algo=ratio, got {item!r}")
        targets[name.strip()] = float(value)
    return targets


def matrix(rows: List[dict]) -> Tuple[List[str], Dict[Tuple[str, str], Dict[str, float]]]:
    """(algorithms in first-seen order, {(layer, pass): {algo: speedup}}) of the timed rows."""
    algos: List[str] = []
    cells: Dict[Tuple[str, str], Dict[str, float]] = {}
    for r in rows:
        if r.get("speedup") is None:
            continue
        if r["algo"] not in algos:
            algos.append(r["algo"])
        cells.setdefault((r["layer"], r["pass_"]), {})[r["algo"]] = r["speedup"]
    return algos, cells


def render(run: dict, targets: Optional[Dict[str, float]] = None) -> str:
    targets = targets or {}
    algos, cells = matrix(run["rows"])
    env = run.get("environment", {})
    head = ", ".join(f"{k} {env[k]}" for k in ("gpu", "cpu", "threads", "load_average", "date")
                     if env.get(k) is not None)
    lines = [f"Speedup over PyTorch ({head})" if head else "Speedup over PyTorch", "",
             "| layer | pass | " + " | ".join(algos) + " |",
             "|---|---|" + "---|" * len(algos)]
    misses = []
    for (layer, pass_), by_algo in cells.items():
        out = []
        for a in algos:
            s = by_algo.get(a)
            if s is None:
                out.append("-")
                continue
            miss = a in targets and s < targets[a]
            if miss:
                misses.append(f"{layer} {pass_} {a}: {s:.2f}x < {targets[a]}x")
            out.append(f"{s:.2f}{'*' if miss else ''}")
        lines.append(f"| {layer} | {pass_} | " + " | ".join(out) + " |")
    if targets:
        lines += ["", f"Below target ({len(misses)}):" if misses else "Every cell meets its target."]
        lines += [f"- {m}" for m in misses]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cnnkern.bench.speedups", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="a run written by `cnnkern --json`")
    ap.add_argument("--targets", default="", help="algo=ratio,... (e.g. direct=0.5,im2col=0.7)")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        run = json.load(f)
    sys.stdout.write(render(run, parse_targets(args.targets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
