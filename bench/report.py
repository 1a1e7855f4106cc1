"""The main job's output as a person reads it (what `cnnkern` prints; --json and --markdown are
runner.py's).

- the peaks behind %peak, each with how it was found;
- a convolution table: per layer, each pass, the `auto` row first ("auto (im2col)": what the
  public default ran), then every algorithm; PyTorch's time and its own error against float64
  once per pass. A row that could not run shows a short tag, `n/a¹`, and the reasons are
  numbered once under the table;
- a pooling table (GB/s and %peak of the bandwidth the layer's bytes are held to);
- the definitions, then three summary lines: the geometric-mean speedup of `auto` (and of
  pooling, which has one implementation) over PyTorch, the worst layer, the largest error
  against float64.
"""

from __future__ import annotations

import math
import re
from itertools import groupby
from typing import Dict, List, Optional, Sequence

from cnnkern.tools.console import Footnotes, add_row, render, table
from .runner import Row

_CANNOT = re.compile(r"^algo '(?P<algo>[^']+)' cannot run this problem on \S+: ")


def short_reason(note: str) -> str:
    """A refusal said once for every algorithm it applies to: the registry's "algo 'winograd'
    cannot run this problem on CPU: winograd needs a 3x3 kernel ..." becomes "needs a 3x3
    kernel ..." (the footnote lists the algorithms; the row names its own). Notes of any
    other form are kept whole."""
    m = _CANNOT.match(note)
    if not m:
        return note
    rest = note[m.end():]
    algo = m.group("algo")
    return rest[len(algo) + 1:] if rest.startswith(algo + " ") else rest


def _ms(v: Optional[float]) -> str:
    if v is None:
        return ""
    for limit, spec in ((100, ".0f"), (10, ".1f"), (1, ".2f"), (0.01, ".3f")):
        if v >= limit:
            return format(v, spec)
    return format(v, ".1e")


def _num(v: Optional[float], spec: str, suffix: str = "") -> str:
    return "" if v is None else format(v, spec) + suffix


def _rate(v: Optional[float]) -> str:
    return "" if v is None else format(v, ".0f" if v >= 100 else ".1f")


def _varies(rows: Sequence[Row], attr: str) -> bool:
    return len({getattr(r, attr) for r in rows}) > 1


class Notes:
    """Footnotes of refusals (short_reason), each listing the algorithms it was given for."""

    def __init__(self) -> None:
        self.notes = Footnotes()
        self.algos: Dict[str, List[str]] = {}

    def tag(self, note: str, algo: str = "-") -> str:
        text = short_reason(note)
        algos = self.algos.setdefault(text, [])
        if algo not in algos and algo != "-":
            algos.append(algo)
        return self.notes.tag(text)

    def lines(self) -> List[str]:
        out = []
        for line in self.notes.lines():
            number, text = line.split(" ", 1)
            algos = self.algos.get(text)
            out.append(f"{number} {', '.join(algos)}: {text}" if algos else line)
        return out


def conv_table(rows: Sequence[Row], ref: str, notes: Notes):
    """One row per Row; a layer's name, input and filter down its first rows; the pass and
    PyTorch's time and float64 error on the first row of each pass."""
    several = _varies(rows, "dtype") or _varies(rows, "layout")
    t = table(["layer", "pass", "algo", "ms", "GFLOP/s", "%peak", f"{ref}\nms", "speedup",
               f"err vs\n{ref}", "err vs\nfp64", f"{ref} err\nvs fp64"],
              right=["ms", "GFLOP/s", "%peak", f"{ref}\nms", "speedup", f"err vs\n{ref}",
                     "err vs\nfp64", f"{ref} err\nvs fp64"], wrap=["layer"])
    for _, group in groupby(rows, key=lambda r: (r.layer, r.shape, r.dtype, r.layout)):
        group = list(group)
        first = group[0]
        labels = [first.layer] + first.shape.split(" ", 1) if first.shape else [first.layer]
        if several:
            labels.append(f"{first.dtype} {first.layout}")
        if len(labels) > len(group):  # fewer rows than lines: the rest joins the last row
            labels[len(group) - 1:] = [" ".join(labels[len(group) - 1:])]
        labels += [""] * (len(group) - len(labels))
        reference_shown = set()
        previous_pass = None
        for label, r in zip(labels, group):
            pass_cell = r.pass_ if r.pass_ != previous_pass else ""
            previous_pass = r.pass_
            algo = f"{r.algo} ({r.picked})" if r.picked else r.algo
            if r.ms is None:
                add_row(t, [label, pass_cell, algo, notes.tag(r.note, r.algo) if r.note else "-"])
                continue
            show_ref = r.pass_ not in reference_shown
            reference_shown.add(r.pass_)
            add_row(t, [label, pass_cell, algo, _ms(r.ms), _rate(r.gflops),
                        _num(r.pct_peak, ".0f"), _ms(r.ref_ms) if show_ref else "",
                        _num(r.speedup, ".2f", "x"), _num(r.max_err, ".1e"),
                        _num(r.err_fp64, ".1e"),
                        _num(r.ref_err_fp64, ".1e") if show_ref else ""])
        t.add_section()
    return t


def pool_table(rows: Sequence[Row], ref: str, notes: Notes):
    """One row per Row: GB/s and %peak (of the bandwidth runner.bench_pool held it to)."""
    extra = [c for c in ("dtype", "layout") if _varies(rows, c)]
    t = table(["layer", "shape"] + extra + ["ms", "GB/s", "%peak", f"{ref}\nms",
                                            f"{ref}\nGB/s", "speedup", f"err vs\n{ref}"],
              right=["ms", "GB/s", "%peak", f"{ref}\nms", f"{ref}\nGB/s", "speedup",
                     f"err vs\n{ref}"], wrap=["layer", "shape"])
    for r in rows:
        head = [r.layer, r.shape] + [getattr(r, c) for c in extra]
        if r.ms is None:
            add_row(t, head + [notes.tag(r.note, r.algo) if r.note else "-"])
            continue
        add_row(t, head + [_ms(r.ms), _rate(r.extra.get("GB/s")), _num(r.pct_peak, ".0f"),
                           _ms(r.ref_ms), _rate(r.extra.get("ref GB/s")),
                           _num(r.speedup, ".2f", "x"), _num(r.max_err, ".1e")])
    return t


def peak_lines(peaks: Dict[str, float], sources: Dict[str, str]) -> List[str]:
    """One line per peak: its value and how it was found."""
    lines = []
    for key, value in peaks.items():
        unit = "GB/s" if key.startswith("bandwidth") else "GFLOP/s"
        what = {"bandwidth": "memory bandwidth", "bandwidth_cache": "cache bandwidth"}.get(
            key, key)
        how = sources.get(key)
        lines.append(f"peak {what}: {value / 1e9:.{0 if value >= 100e9 else 1}f} {unit}"
                     + (f", {how}" if how else ""))
    return lines


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _label(r: Row, rows: Sequence[Row]) -> str:
    parts = [r.layer] + ([r.pass_] if r.kind == "conv2d" else [])
    parts += [getattr(r, a) for a in ("dtype", "layout") if _varies(rows, a)]
    return " ".join(parts)


def summary_lines(rows: Sequence[Row], ref: str) -> List[str]:
    """Three lines: the geometric-mean speedup of the conv `auto` rows over `ref` (pooling's,
    which has one implementation, beside it: it would flatter the conv figure), the worst
    layer (auto's lowest speedup; pooling's when no conv was timed) with the fastest
    algorithm timed by name there, and the largest error against float64 beside PyTorch's
    own on the same layer."""
    auto = [r for r in rows if r.kind == "conv2d" and r.algo == "auto" and r.speedup]
    pool = [r for r in rows if r.kind == "pool2d" and r.speedup]
    pooling = (f"pooling {geomean([r.speedup for r in pool]):.2f}x over "
               f"{_count(len(pool), 'layer', 'layers')}; " if pool else "")
    if auto:
        lines = [f"auto vs {ref}: geomean {geomean([r.speedup for r in auto]):.2f}x over "
                 f"{_count(len(auto), 'conv layer-pass', 'conv layer-passes')} ({pooling}"
                 f">1: cnnkern faster)"]
    else:
        lines = [f"auto vs {ref}: no convolution timed ({pooling}>1: cnnkern faster)"]
    if auto or pool:
        worst = min(auto or pool, key=lambda r: r.speedup)
        text = f"worst layer: {_label(worst, rows)} {worst.speedup:.2f}x"
        if worst.picked:
            rivals = [r for r in rows if (r.layer, r.pass_, r.dtype, r.layout)
                      == (worst.layer, worst.pass_, worst.dtype, worst.layout)
                      and r.speedup and r.algo != "auto"]
            text += f" (auto ran {worst.picked}"
            if rivals:
                best = max(rivals, key=lambda r: r.speedup)
                text += f"; fastest algorithm here: {best.algo} {best.speedup:.2f}x"
            text += ")"
        lines.append(text)
    else:
        lines.append("worst layer: - (nothing was timed)")
    errors = [r for r in rows if r.err_fp64 is not None]
    if errors:
        top = max(errors, key=lambda r: r.err_fp64)
        text = f"largest error vs fp64: {top.err_fp64:.1e}, {top.algo} on {_label(top, rows)}"
        if top.ref_err_fp64 is not None:
            text += f" ({ref}'s own {top.ref_err_fp64:.1e})"
        auto_errors = [r.err_fp64 for r in errors if r.algo == "auto"]
        if auto_errors and top.algo != "auto":
            text += f"; auto {max(auto_errors):.1e}"
        lines.append(text)
    else:
        lines.append("largest error vs fp64: - (no convolution was timed)")
    return lines


def legend(ref: str, seconds: float) -> str:
    return (f"speedup = {ref} time / cnnkern time (>1: cnnkern faster); auto (x): what "
            f'algo="auto", the default, ran. GFLOP/s on the direct-conv count '
            f"2*N*K*C/g*R*S*P*Q (effective for Winograd, which can pass 100% of the peak). "
            f"%peak of pooling: of the cache bandwidth when its bytes fit in the cache STREAM "
            f"test, else of memory's. err = max|ours - ref| / max|ref|. {seconds:.0f} s.")


def format_report(rows: Sequence[Row], ref: str, seconds: float,
                  width: Optional[int] = None) -> str:
    """Tables, footnotes, legend and summary, as plain text at most `width` columns wide."""
    notes = Notes()
    items: list = []
    conv = [r for r in rows if r.kind == "conv2d"]
    pool = [r for r in rows if r.kind == "pool2d"]
    if conv:
        items.append(conv_table(conv, ref, notes))
        items += notes.lines()
    if pool:
        pool_notes = len(notes.notes.lines())
        items.append(pool_table(pool, ref, notes))
        items += notes.lines()[pool_notes:]
    items.append(legend(ref, seconds))
    items += summary_lines(rows, ref)
    return render(*items, width=width)
