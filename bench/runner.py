"""The benchmark runner behind `cnnkern bench` (the `cnnkern` command's default).

For each layer of a layer set (bench/layers/*.json) x algorithm x dtype x layout x pass on
one device: the median time, GFLOP/s on the direct-convolution FLOP count (effective for
Winograd), % of the device's peak, PyTorch's own op timed in the same run (cuDNN on the GPU,
TF32 off unless asked; oneDNN on the CPU) and the ratio, the error against PyTorch and against
a float64 reference (beside PyTorch's own error against it), and workspace bytes where they
can be measured. Every layer and pass also gets a row for algo="auto", the public default,
naming the algorithm it picked. Layers an algorithm cannot run are listed with the reason.
The peaks behind %peak are bench/peaks.py's; what a person reads is bench/report.py's.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F

import cnnkern
from cnnkern.tools.console import Progress
from . import peaks as _peaks
from .timing import median_seconds

LAYER_DIR = Path(__file__).resolve().parent / "layers"
PASSES = ("fwd", "bwd_input", "bwd_weight")
LAYOUTS = ("nchw", "channels_last")
DTYPES = {"float32": torch.float32, "float64": torch.float64,
          "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Row:
    kind: str                       # "conv2d" | "pool2d"
    layer: str
    shape: str
    pass_: str
    algo: str                       # "auto" rows: what the public default runs
    dtype: str = "float32"
    layout: str = "nchw"
    ms: Optional[float] = None      # cnnkern median time
    gflops: Optional[float] = None  # on the direct-conv FLOP count
    pct_peak: Optional[float] = None
    ref_ms: Optional[float] = None  # PyTorch's median time, same run
    speedup: Optional[float] = None  # ref_ms / ms: > 1 means cnnkern is faster
    max_err: Optional[float] = None  # max |cnnkern - torch| / max |torch|
    err_fp64: Optional[float] = None      # max |cnnkern - fp64 ref| / max |ref|
    ref_err_fp64: Optional[float] = None  # the same for PyTorch, in this dtype
    workspace_bytes: Optional[int] = None
    flops: Optional[int] = None
    bytes_moved: Optional[int] = None  # inputs read + outputs written once (roofline)
    note: str = ""                  # why the row was not timed
    picked: Optional[str] = None    # auto rows: the algorithm auto ran for this pass
    extra: Dict[str, float] = field(default_factory=dict)


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
        "cpu": cnnkern.tuning.cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "host": platform.node(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = torch.backends.cudnn.allow_tf32  # cuDNN's (the reference's) setting
    # cnnkern's own (cnnkern.backends.allow_tf32): float32 on the TF32 tensor cores where
    # cnnkern has such a path; `cnnkern --tf32` sets both, for a like-for-like comparison.
    info["cnnkern_allow_tf32"] = cnnkern.backends.get_allow_tf32()
    return info


def _pair(v) -> List[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


def conv_problem(layer: dict, batch: Optional[int]) -> dict:
    return dict(N=batch if batch is not None else layer.get("N", 1), C=layer["C"], H=layer["H"],
                W=layer["W"], K=layer["K"], R=layer["R"], S=layer["S"],
                stride=_pair(layer.get("stride", 1)), padding=_pair(layer.get("padding", 0)),
                dilation=_pair(layer.get("dilation", 1)), groups=layer.get("groups", 1))


def conv_output_hw(p: dict):
    return [(size + 2 * p["padding"][i] - p["dilation"][i] * (k - 1) - 1) // p["stride"][i] + 1
            for i, (size, k) in enumerate(((p["H"], p["R"]), (p["W"], p["S"])))]


def conv_flops(p: dict) -> int:
    """The direct-convolution count, 2*N*K*(C/g)*R*S*P*Q (a multiply and an add per MAC)."""
    P, Q = conv_output_hw(p)
    return 2 * p["N"] * p["K"] * (p["C"] // p["groups"]) * p["R"] * p["S"] * P * Q


def _describe(p: dict) -> str:
    def pair(v):
        return str(v[0]) if v[0] == v[1] else f"{v[0]},{v[1]}"
    return (f"{p['N']}x{p['C']}x{p['H']}x{p['W']} k{p['K']} {p['R']}x{p['S']} "
            f"s{pair(p['stride'])} p{pair(p['padding'])}"
            + (f" d{pair(p['dilation'])}" if p["dilation"] != [1, 1] else "")
            + (f" g{p['groups']}" if p["groups"] > 1 else ""))


def _conv_closures(p, x, w, go, algo):
    """(cnnkern fn, torch fn) per pass; `algo` None gives only the torch ones. cnnkern's ops get
    cnnkern.backends.allow_tf32 as it is now, as cnnkern.conv2d would pass it."""
    args = (p["stride"], p["padding"], p["dilation"], p["groups"])
    ops = torch.ops.cnnkern
    tf32 = cnnkern.backends.get_allow_tf32()
    ours = {
        "fwd": lambda: ops.conv2d(x, w, None, *args, algo, tf32),
        "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), *args, algo, tf32),
        "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), *args, algo, tf32),
    }

    def torch_bwd(mask, x=x, w=w, go=go):
        return lambda: torch.ops.aten.convolution_backward(
            go, x, w, None, args[0], args[1], args[2], False, [0, 0], args[3], mask)[
                0 if mask[0] else 1]

    theirs = {
        "fwd": lambda: F.conv2d(x, w, None, *args),
        "bwd_input": torch_bwd([True, False, False]),
        "bwd_weight": torch_bwd([False, True, False]),
    }
    return ours, theirs


def _workspace(fn, device, out_bytes) -> Optional[int]:
    """Device memory a call needs beyond its output (CUDA's allocator statistics)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    return max(0, torch.cuda.max_memory_allocated(device) - before - out_bytes)


def bench_conv(layer: dict, device, dtype, layout, passes, algos, batch, min_run_time,
               peaks: Dict[str, float]) -> List[Row]:
    p = conv_problem(layer, batch)
    gen = torch.Generator().manual_seed(0)
    Cg = p["C"] // p["groups"]
    x64 = torch.randn(p["N"], p["C"], p["H"], p["W"], generator=gen, dtype=torch.float64)
    w64 = torch.randn(p["K"], Cg, p["R"], p["S"], generator=gen, dtype=torch.float64)
    w64 /= (Cg * p["R"] * p["S"]) ** 0.5
    P, Q = conv_output_hw(p)
    go64 = torch.randn(p["N"], p["K"], P, Q, generator=gen, dtype=torch.float64)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x, w, go = (t.to(device, dtype).contiguous(memory_format=fmt) for t in (x64, w64, go64))
    flops = conv_flops(p)
    elem = x.element_size()
    moved = {"fwd": (x.numel() + w.numel() + go.numel()) * elem,
             "bwd_input": (go.numel() + w.numel() + x.numel()) * elem,
             "bwd_weight": (go.numel() + x.numel() + w.numel()) * elem}
    dname = str(dtype).replace("torch.", "")
    # cnnkern's %peak: the TF32 tensor-core peak when cnnkern may use it for float32
    peak = peaks.get("tf32" if (device.type == "cuda" and dtype == torch.float32
                                and cnnkern.backends.get_allow_tf32()) else dname)
    # The float64 reference: PyTorch's op on the CPU in float64.
    _, exact = _conv_closures(p, x64, w64, go64, None)
    rows = []
    for pass_ in passes:
        _, theirs = _conv_closures(p, x, w, go, None)
        ref = theirs[pass_]()
        ref64 = exact[pass_]()
        ref_ms = None
        for algo in algos:
            row = Row("conv2d", layer["name"], _describe(p), pass_, algo, dname, layout,
                      flops=flops, bytes_moved=moved[pass_])
            rows.append(row)
            conv_args = (x, w, None, p["stride"], p["padding"], p["dilation"], p["groups"])
            ok, why = cnnkern.can_implement(*conv_args, algo=algo)
            if not ok:
                row.note = why
                continue
            if algo == "auto":  # the registry's pick for this pass, as the op will make it
                row.picked = cnnkern.select(*conv_args, algo="auto", pass_=pass_)
            ours, theirs = _conv_closures(p, x, w, go, algo)
            try:
                out = ours[pass_]()
            except RuntimeError as e:  # e.g. an algorithm without this backward pass
                row.note = str(e).splitlines()[0]
                continue
            if ref_ms is None:
                ref_ms = median_seconds(theirs[pass_], min_run_time) * 1e3
            row.ms = median_seconds(ours[pass_], min_run_time) * 1e3
            row.ref_ms = ref_ms
            row.gflops = flops / (row.ms * 1e-3) / 1e9
            row.pct_peak = 100 * row.gflops * 1e9 / peak if peak else None
            row.speedup = ref_ms / row.ms
            row.max_err = max_rel_error(out, ref)
            row.err_fp64 = max_rel_error(out.cpu(), ref64)
            row.ref_err_fp64 = max_rel_error(ref.cpu(), ref64)
            row.workspace_bytes = _workspace(ours[pass_], device, out.numel() * out.element_size())
    return rows


def _pool_closures(layer: dict, x):
    op = layer["op"]
    k, s, pad = layer.get("kernel"), layer.get("stride", layer.get("kernel")), layer.get("padding", 0)
    if op == "max":
        return (lambda: cnnkern.max_pool2d(x, k, s, pad)), (lambda: F.max_pool2d(x, k, s, pad))
    if op == "avg":
        return (lambda: cnnkern.avg_pool2d(x, k, s, pad)), (lambda: F.avg_pool2d(x, k, s, pad))
    if op == "adaptive_avg":
        o = layer["output"]
        return (lambda: cnnkern.adaptive_avg_pool2d(x, o)), (lambda: F.adaptive_avg_pool2d(x, o))
    if op == "copy":  # the bandwidth ceiling pooling is compared with
        return (lambda: x.clone()), (lambda: x.clone())
    raise ValueError(f"unknown pooling op {op!r} in layer {layer['name']!r}")


def bench_pool(layer: dict, device, dtype, layout, batch, min_run_time,
               peaks: Dict[str, float]) -> List[Row]:
    n = batch if batch is not None else layer.get("N", 1)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(n, layer["C"], layer["H"], layer["W"],
                    generator=torch.Generator().manual_seed(0)).to(device, dtype)
    x = x.contiguous(memory_format=fmt)
    ours, theirs = _pool_closures(layer, x)
    out, ref = ours(), theirs()
    desc = f"{n}x{layer['C']}x{layer['H']}x{layer['W']} {layer['op']}"
    if layer["op"] in ("max", "avg"):
        desc += f" {layer['kernel']}x{layer['kernel']} s{layer.get('stride', layer['kernel'])} p{layer.get('padding', 0)}"
    row = Row("pool2d", layer["name"], desc, "fwd", layer["op"], str(dtype).replace("torch.", ""),
              layout)
    row.ms = median_seconds(ours, min_run_time) * 1e3
    row.ref_ms = median_seconds(theirs, min_run_time) * 1e3
    row.speedup = row.ref_ms / row.ms
    row.max_err = max_rel_error(out, ref)
    row.bytes_moved = (x.numel() + out.numel()) * x.element_size()
    row.extra["GB/s"] = row.bytes_moved / (row.ms * 1e-3) / 1e9
    row.extra["ref GB/s"] = row.bytes_moved / (row.ref_ms * 1e-3) / 1e9
    bandwidth = peaks.get(_peaks.bandwidth_key(peaks, row.bytes_moved))
    row.pct_peak = 100 * row.extra["GB/s"] * 1e9 / bandwidth if bandwidth else None
    return [row]


def with_auto(algos: Iterable[str]) -> List[str]:
    """`algos` with "auto" first when it is missing: its rows are the run's headline."""
    algos = list(algos)
    return algos if "auto" in algos else ["auto"] + algos


def run(layers: dict, device: torch.device, dtypes, layouts, passes, algos, batch,
        min_run_time, progress: bool = False, peaks: Optional[Dict[str, float]] = None) -> tuple:
    """Benchmarks every layer; returns (rows, peaks), measuring the peaks unless given.
    "auto" joins `algos` (with_auto). PyTorch's
    fp32 reference runs without TF32 unless the caller enabled it. With `progress`, a bar on
    a terminal, else a line on stderr per layer."""
    if peaks is None:
        peaks = _peaks.measure(device, dtypes)[0]
    algos = with_auto(algos)
    work = [("conv2d", layer, dt, lo) for layer in layers.get("conv2d", [])
            for dt in dtypes for lo in layouts]
    work += [("pool2d", layer, dt, lo) for layer in layers.get("pool2d", [])
             for dt in dtypes for lo in layouts]
    several = len(dtypes) > 1 or len(layouts) > 1
    rows: List[Row] = []
    with Progress(len(work), enabled=progress) as bar:
        for kind, layer, dtype, layout in work:
            dname = str(dtype).replace("torch.", "")
            bar.step(layer["name"] + (f" {dname} {layout}" if several else ""))
            if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
                rows.append(Row(kind, layer["name"], "", "-", "-", dname, layout,
                                note="no CPU kernels for this dtype"))
            elif kind == "conv2d":
                rows += bench_conv(layer, device, dtype, layout, passes, algos, batch,
                                   min_run_time, peaks)
            else:
                rows += bench_pool(layer, device, dtype, layout, batch, min_run_time, peaks)
    return rows, peaks


# The Markdown table (--markdown): one row per Row, the reason in full where a row has one.
def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table_cells(r: Row) -> List[str]:
    if r.kind == "conv2d":
        rate = _fmt(r.gflops, ".1f")
    else:
        rate = _fmt(r.extra.get("GB/s"), ".1f") + " GB/s"
    algo = f"{r.algo} ({r.picked})" if r.picked else r.algo
    cells = [r.layer, r.shape, r.dtype, r.layout, r.pass_, algo, _fmt(r.ms, ".3f"), rate,
             _fmt(r.pct_peak, ".0f"), _fmt(r.ref_ms, ".3f"),
             _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""), _fmt(r.max_err, ".1e"),
             _fmt(r.err_fp64, ".1e") + (f" ({r.ref_err_fp64:.1e})" if r.ref_err_fp64 is not None else "")]
    if r.note:
        cells[6:] = [f"n/a: {r.note}"]
    return cells


HEADER = ["layer", "shape", "dtype", "layout", "pass", "algo", "ms", "GFLOP/s", "%peak",
          "{ref} ms", "speedup", "err vs {ref}", "err vs fp64 ({ref})"]


def format_markdown(rows: List[Row], ref_name: str) -> str:
    header = [h.format(ref=ref_name) for h in HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = table_cells(r)
        cells += [""] * (len(header) - len(cells))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def to_json(rows: List[Row], env: dict, peaks: Dict[str, float],
            peak_sources: Optional[Dict[str, str]] = None) -> str:
    """The run as JSON; `peak_sources` says how each peak was found (bench/peaks.py)."""
    data = {"environment": env, "peaks": peaks}
    if peak_sources is not None:
        data["peak_sources"] = peak_sources
    data["rows"] = [asdict(r) for r in rows]
    return json.dumps(data, indent=1)


def default_device() -> torch.device:
    return torch.device("cuda" if cnnkern.cuda_available() else "cpu")


def write(path: str, text: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
