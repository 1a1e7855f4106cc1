"""The benchmark runner behind the `cnnkern` command.

For each layer of a layer set (bench/layers/*.json) and each cnnkern algorithm built for the
device: the median time, GFLOP/s on the direct-convolution FLOP count, PyTorch's own op
timed in the same run (cuDNN on the GPU with TF32 off, oneDNN on the CPU), the ratio of the
two, and the max error against PyTorch's result.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tbench

import cnnkern

LAYER_DIR = Path(__file__).resolve().parent / "layers"
PASSES = ("fwd", "bwd_input", "bwd_weight")


@dataclass
class Row:
    kind: str                      # "conv2d" | "pool2d"
    layer: str
    shape: str
    pass_: str
    algo: str
    ms: Optional[float] = None     # cnnkern median time
    gflops: Optional[float] = None
    ref_ms: Optional[float] = None  # PyTorch's median time, same run
    speedup: Optional[float] = None  # ref_ms / ms: > 1 means cnnkern is faster
    max_err: Optional[float] = None  # max |cnnkern - torch| / max |torch|
    note: str = ""
    extra: Dict[str, float] = field(default_factory=dict)


def median_seconds(fn: Callable[[], object], min_run_time: float) -> float:
    """Median time of fn() after warm-up; torch.utils.benchmark syncs CUDA around each block."""
    fn()
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def max_rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.abs().max().item() or 1.0
    return (out.double() - ref.double()).abs().max().item() / scale


def load_layers(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = LAYER_DIR / f"{name_or_path}.json"
    with open(path) as f:
        return json.load(f)


def layer_sets() -> List[str]:
    return sorted(p.stem for p in LAYER_DIR.glob("*.json"))


def environment(device: torch.device) -> dict:
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cnnkern": cnnkern.__version__,
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cnnkern_cuda_built": cnnkern.cuda_built(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "host": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = torch.backends.cudnn.allow_tf32
    return info


def _conv_problem(layer: dict, batch: Optional[int]):
    n = batch if batch is not None else layer.get("N", 1)
    return dict(N=n, C=layer["C"], H=layer["H"], W=layer["W"], K=layer["K"], R=layer["R"],
                S=layer["S"], stride=layer.get("stride", 1), padding=layer.get("padding", 0),
                dilation=layer.get("dilation", 1), groups=layer.get("groups", 1))


def _conv_closures(p, x, w, go, algo):
    """(cnnkern fn, torch fn) for each pass."""
    args = ([p["stride"]] * 2, [p["padding"]] * 2, [p["dilation"]] * 2, p["groups"])
    ops = torch.ops.cnnkern
    ours = {
        "fwd": lambda: ops.conv2d(x, w, None, *args, algo),
        "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), *args, algo),
        "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), *args, algo),
    }

    def torch_bwd(mask):
        return lambda: torch.ops.aten.convolution_backward(
            go, x, w, None, args[0], args[1], args[2], False, [0, 0], args[3], mask)[
                0 if mask[0] else 1]

    theirs = {
        "fwd": lambda: F.conv2d(x, w, None, *args),
        "bwd_input": torch_bwd([True, False, False]),
        "bwd_weight": torch_bwd([False, True, False]),
    }
    return ours, theirs


def bench_conv(layer: dict, device, dtype, passes, algos, batch, min_run_time) -> List[Row]:
    p = _conv_problem(layer, batch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(p["N"], p["C"], p["H"], p["W"], generator=gen).to(device, dtype)
    w = torch.randn(p["K"], p["C"] // p["groups"], p["R"], p["S"], generator=gen)
    w = (w / (p["C"] // p["groups"] * p["R"] * p["S"]) ** 0.5).to(device, dtype)
    out_shape = F.conv2d(x[:1], w, None, p["stride"], p["padding"], p["dilation"],
                         p["groups"]).shape
    go = torch.randn(p["N"], *out_shape[1:], generator=gen).to(device, dtype)
    P, Q = out_shape[2], out_shape[3]
    flops = 2 * p["N"] * p["K"] * (p["C"] // p["groups"]) * p["R"] * p["S"] * P * Q
    shape = (f"{p['N']}x{p['C']}x{p['H']}x{p['W']} k{p['K']} {p['R']}x{p['S']} "
             f"s{p['stride']} p{p['padding']}" + (f" g{p['groups']}" if p["groups"] > 1 else ""))
    rows = []
    for pass_ in passes:
        ref_ms = None
        for algo in algos:
            row = Row("conv2d", layer["name"], shape, pass_, algo)
            rows.append(row)
            ok, why = cnnkern.can_implement(x, w, None, p["stride"], p["padding"], p["dilation"],
                                            p["groups"], algo=algo)
            if not ok:
                row.note = why
                continue
            ours, theirs = _conv_closures(p, x, w, go, algo)
            try:
                out = ours[pass_]()
            except RuntimeError as e:  # e.g. an algorithm without this backward pass
                row.note = str(e).splitlines()[0]
                continue
            ref = theirs[pass_]()
            if ref_ms is None:
                ref_ms = median_seconds(theirs[pass_], min_run_time) * 1e3
            row.ms = median_seconds(ours[pass_], min_run_time) * 1e3
            row.ref_ms = ref_ms
            row.gflops = flops / (row.ms * 1e-3) / 1e9
            row.speedup = ref_ms / row.ms
            row.max_err = max_rel_error(out, ref)
    return rows


def _pool_closures(layer: dict, x):
    op = layer["op"]
    if op == "max":
        k, s, pad = layer["kernel"], layer.get("stride", layer["kernel"]), layer.get("padding", 0)
        return (lambda: cnnkern.max_pool2d(x, k, s, pad)), (lambda: F.max_pool2d(x, k, s, pad))
    if op == "avg":
        k, s, pad = layer["kernel"], layer.get("stride", layer["kernel"]), layer.get("padding", 0)
        return (lambda: cnnkern.avg_pool2d(x, k, s, pad)), (lambda: F.avg_pool2d(x, k, s, pad))
    if op == "adaptive_avg":
        o = layer["output"]
        return (lambda: cnnkern.adaptive_avg_pool2d(x, o)), (lambda: F.adaptive_avg_pool2d(x, o))
    if op == "copy":  # the bandwidth ceiling pooling is compared with
        return (lambda: x.clone()), (lambda: x.clone())
    raise ValueError(f"unknown pooling op {op!r} in layer {layer['name']!r}")


def bench_pool(layer: dict, device, dtype, batch, min_run_time) -> List[Row]:
    n = batch if batch is not None else layer.get("N", 1)
    x = torch.randn(n, layer["C"], layer["H"], layer["W"],
                    generator=torch.Generator().manual_seed(0)).to(device, dtype)
    ours, theirs = _pool_closures(layer, x)
    out, ref = ours(), theirs()
    row = Row("pool2d", layer["name"], f"{n}x{layer['C']}x{layer['H']}x{layer['W']} {layer['op']}",
              "fwd", layer["op"])
    row.ms = median_seconds(ours, min_run_time) * 1e3
    row.ref_ms = median_seconds(theirs, min_run_time) * 1e3
    row.speedup = row.ref_ms / row.ms
    row.max_err = max_rel_error(out, ref)
    moved = (x.numel() + out.numel()) * x.element_size()
    row.extra["GB/s"] = moved / (row.ms * 1e-3) / 1e9
    return [row]


def run(layers: dict, device: torch.device, dtype: torch.dtype, passes, algos, batch,
        min_run_time, progress: Callable[[str], None] = lambda s: None) -> List[Row]:
    """Benchmarks every layer; on CUDA, PyTorch's fp32 reference runs without TF32."""
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        rows: List[Row] = []
        for layer in layers.get("conv2d", []):
            progress(layer["name"])
            rows += bench_conv(layer, device, dtype, passes, algos, batch, min_run_time)
        for layer in layers.get("pool2d", []):
            progress(layer["name"])
            rows += bench_pool(layer, device, dtype, batch, min_run_time)
        return rows
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def format_table(rows: List[Row], ref_name: str) -> str:
    header = ["layer", "shape", "pass", "algo", "ms", "GFLOP/s", f"{ref_name} ms",
              "speedup", "max rel err"]
    body = []
    for r in rows:
        gflops = _fmt(r.gflops, ".1f") if r.kind == "conv2d" else _fmt(r.extra.get("GB/s"), ".1f") + " GB/s"
        cells = [r.layer, r.shape, r.pass_, r.algo, _fmt(r.ms, ".3f"), gflops,
                 _fmt(r.ref_ms, ".3f"), _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""),
                 _fmt(r.max_err, ".1e")]
        if r.note:
            cells[4:] = [f"n/a: {r.note}"]
        body.append(cells)
    widths = [max(len(str(row[i])) for row in [header] + [b for b in body if len(b) > i])
              for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    for b in body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(b, widths)).rstrip())
    return "\n".join(lines)


def to_json(rows: List[Row], env: dict) -> str:
    return json.dumps({"environment": env, "rows": [asdict(r) for r in rows]}, indent=1)


def default_device() -> torch.device:
    return torch.device("cuda" if cnnkern.cuda_available() else "cpu")


def write(path: str, text: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
