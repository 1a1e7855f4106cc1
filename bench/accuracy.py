"""Accuracy report: float32 error of every CPU convolution algorithm against a float64 reference.

    python -m cnnkern.bench.accuracy                       # VGG16 layers, 56x56 crops, text
    python -m cnnkern.bench.accuracy --markdown            # the README's table
    python -m cnnkern.bench.accuracy --crop 0 --passes all # full size, forward and backward

For each layer of a layer set (batch 1) and each algorithm built for the CPU that can run it,
the float32 result is compared with F.conv2d (or aten.convolution_backward) in float64 on
the same standard-normal input, weight and grad_output:

    max rel err  = max |out32 - ref64| / max |ref64|
    mean rel err = mean |out32 - ref64| / max |ref64|

PyTorch's own float32 conv (oneDNN) is measured the same way as the yardstick.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

import cnnkern
from cnnkern.tools.console import add_row, echo, render, table
from . import runner
from .report import Notes

PASSES = ("fwd", "bwd_input", "bwd_weight")
_EXPONENT_ZERO = re.compile(r"e([+-])0(\d)")
REFERENCE = "torch"  # PyTorch's float32 op, the yardstick column


def rel_errors(out: torch.Tensor, ref: torch.Tensor) -> Tuple[float, float]:
    """(max, mean) of |out - ref| / max|ref|."""
    err = (out.double() - ref).abs()
    scale = float(ref.abs().max()) or 1.0
    return float(err.max()) / scale, float(err.mean()) / scale


def _layer_problem(layer: dict, crop: int) -> dict:
    p = runner.conv_problem(layer, 1)  # stride, padding, dilation as [h, w]
    if crop:
        p["H"], p["W"] = min(p["H"], crop), min(p["W"], crop)
    return p


def _runners(p: dict, x, w, go):
    """{pass: (fn(algo) -> float32 result, float64 reference)}; algo None is PyTorch's op."""
    st, pd, dl, g = list(p["stride"]), list(p["padding"]), list(p["dilation"]), p["groups"]
    ops = torch.ops.cnnkern

    def aten_bwd(go_, x_, w_, mask):
        return torch.ops.aten.convolution_backward(go_, x_, w_, None, st, pd, dl, False, [0, 0],
                                                   g, mask)

    x32, w32, go32 = x.float(), w.float(), go.float()
    fns = {
        "fwd": lambda a: (F.conv2d(x32, w32, None, st, pd, dl, g) if a is None
                          else ops.conv2d(x32, w32, None, st, pd, dl, g, a)),
        "bwd_input": lambda a: (aten_bwd(go32, x32, w32, [True, False, False])[0] if a is None
                                else ops.conv2d_backward_input(go32, w32, list(x.shape), st, pd,
                                                               dl, g, a)),
        "bwd_weight": lambda a: (aten_bwd(go32, x32, w32, [False, True, False])[1] if a is None
                                 else ops.conv2d_backward_weight(go32, x32, list(w.shape), st,
                                                                 pd, dl, g, a)),
    }
    refs = {
        "fwd": lambda: F.conv2d(x, w, None, st, pd, dl, g),
        "bwd_input": lambda: aten_bwd(go, x, w, [True, False, False])[0],
        "bwd_weight": lambda: aten_bwd(go, x, w, [False, True, False])[1],
    }
    return fns, refs


def measure(layers: dict, algos: List[str], passes, crop: int, seed: int = 0) -> List[dict]:
    """One row per (layer, pass): {'layer', 'shape', 'pass', errors: {algo: (max, mean) | why}}."""
    rows = []
    for index, layer in enumerate(layers.get("conv2d", [])):
        p = _layer_problem(layer, crop)
        gen = torch.Generator().manual_seed(seed + index)  # layers of one shape: new samples
        x = torch.randn(p["N"], p["C"], p["H"], p["W"], generator=gen, dtype=torch.float64)
        w = torch.randn(p["K"], p["C"] // p["groups"], p["R"], p["S"], generator=gen,
                        dtype=torch.float64)
        st, pd, dl = (tuple(p[k]) for k in ("stride", "padding", "dilation"))
        out_shape = F.conv2d(x, w, None, st, pd, dl, p["groups"]).shape
        go = torch.randn(out_shape, generator=gen, dtype=torch.float64)
        fns, refs = _runners(p, x, w, go)
        shape = f"{p['C']}->{p['K']} {p['H']}x{p['W']} {p['R']}x{p['S']}"
        for pass_ in passes:
            ref = refs[pass_]()
            errors: Dict[str, object] = {}
            for algo in algos:
                ok, why = cnnkern.can_implement(x.float(), w.float(), None, st, pd, dl,
                                                p["groups"], algo=algo)
                errors[algo] = rel_errors(fns[pass_](algo), ref) if ok else why
            errors[REFERENCE] = rel_errors(fns[pass_](None), ref)
            rows.append(dict(layer=layer["name"], shape=shape, pass_=pass_, errors=errors))
    return rows


def _cell(v, na=lambda why: "n/a") -> str:
    """"max / mean" of an (max, mean) pair; a refusal (its reason) gives na(reason)."""
    return f"{v[0]:.1e} / {v[1]:.1e}" if isinstance(v, tuple) else na(v)


def _summary(rows: List[dict], columns: List[str]) -> List[str]:
    cells = []
    for c in columns:
        vals = [r["errors"][c] for r in rows if isinstance(r["errors"].get(c), tuple)]
        cells.append(_cell((max(v[0] for v in vals), max(v[1] for v in vals))) if vals else "n/a")
    return cells


def format_rows(rows: List[dict], columns: List[str], markdown: bool) -> str:
    """The table; in Markdown a refused cell says "n/a", on screen "n/a¹" with the reasons
    numbered under the table."""
    notes = Notes()
    multi_pass = len({r["pass_"] for r in rows}) > 1
    header = ["layer", "shape"] + (["pass"] if multi_pass else []) + columns
    body = []
    for r in rows:
        cells = [_cell(r["errors"].get(c), (lambda why: "n/a") if markdown
                       else (lambda why, c=c: notes.tag(why, c))) for c in columns]
        body.append([r["layer"], r["shape"]] + ([r["pass_"]] if multi_pass else []) + cells)
    summary = ["**worst**" if markdown else "worst", ""] + ([""] if multi_pass else [])
    body.append(summary + _summary(rows, columns))
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    # On screen the exponents lose their leading zero (1.2e-7), so that five algorithms and
    # PyTorch fit in 120 columns beside the layer.
    body = [[_EXPONENT_ZERO.sub(r"e\1\2", c) for c in b] for b in body]
    t = table(header, right=columns, wrap=["layer", "shape"])
    for b in body[:-1]:
        add_row(t, b)
    t.add_section()
    add_row(t, body[-1])
    return render(t, *notes.lines())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cnnkern.bench.accuracy",
        description="float32 error of each CPU conv algorithm (and of PyTorch's float32 conv) "
                    "against a float64 reference.")
    p.add_argument("--layers", default="vgg16",
                   help=f"a layer set ({', '.join(runner.layer_sets())}) or a JSON file")
    p.add_argument("--crop", type=int, default=56,
                   help="crop H and W to at most this many pixels (0: full size; default 56)")
    p.add_argument("--passes", default="fwd",
                   help="comma-separated: fwd, bwd_input, bwd_weight, or 'all' (default: fwd)")
    p.add_argument("--algos", default=None, help="comma-separated (default: every CPU algorithm)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    passes = PASSES if args.passes == "all" else tuple(args.passes.split(","))
    bad = [p for p in passes if p not in PASSES]
    if bad:
        print(f"accuracy: unknown pass {bad[0]!r}; choose from {', '.join(PASSES)}",
              file=sys.stderr)
        return 2
    algos = args.algos.split(",") if args.algos else cnnkern.algorithms("cpu")
    rows = measure(runner.load_layers(args.layers), algos, passes, args.crop)
    size = "full size" if not args.crop else f"H and W cropped to at most {args.crop}"
    intro = (f"float32 error against a float64 reference, CPU, layers: {args.layers}, batch 1, "
             f"{size}; standard-normal input, weight and grad_output (seed: layer index). "
             f"Each cell: max rel err / mean rel err, where max rel err = max|out32 - ref64| / "
             f"max|ref64| and mean rel err = mean(|out32 - ref64|) / max|ref64|; "
             f"'{REFERENCE}' is PyTorch's own float32 conv. 'worst' = largest over the layers.")
    echo(render(intro) + "\n")
    echo(format_rows(rows, algos + [REFERENCE], args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
