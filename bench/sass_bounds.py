"""Bound analysis of the headline layers on an H100, from the static kernel report.

For each layer and cnnkern kernel that would run it, lower bounds on the time (seconds) from:
  issue    warp instructions of the busiest SM / (4 schedulers x clock)
  tensor   MMA FLOPs / the mma.sync tensor peak;   fp32: FFMA FLOPs / the FP32 peak
  smem     shared-memory bytes of the busiest SM / (128 B per clock)
  hbm      bytes that must cross DRAM / 3.35 TB/s
The prediction is the largest; its name is the limiter. How many main-loop iterations a layer
takes comes from the layer's work and the main loop's own content (GEMM kernels: its MMA or FFMA
count per iteration), or from trip counts of the kernel's loop nest (direct, pooling, Winograd
transforms: the `trips` of each model below, read off the kernel source).

cuDNN is not measured here: `cudnn_assumed` states what it is assumed to reach (+-30%).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List

# H100 SXM5. Datasheet peaks (dense); the clock is the one the FP32 peak implies.
SMS = 132
CLOCK = 66.9e12 / (SMS * 128 * 2)          # 1.98 GHz
SCHEDULERS = 4                              # warp instructions issued per clock per SM
SMEM_BYTES_PER_CLOCK = 128                  # per SM: 32 banks x 4 bytes
HBM = 3.35e12
PEAK = {"float32": 66.9e12, "tf32": 494.7e12, "float16": 989.4e12, "bfloat16": 989.4e12}
# mma.sync (the pre-Hopper warp-level MMA this code uses) does not reach the datasheet tensor
# peak, which needs wgmma (Luo et al., "Benchmarking and Dissecting the Nvidia Hopper GPU
# Architecture", arXiv 2402.13499, measure mma.sync below wgmma on Hopper). The fraction 2/3 is
# an assumption; today's kernels are issue-bound 10-20x above the tensor bound, so it does not
# move any prediction here.
MMA_SYNC_FRACTION = 2.0 / 3.0
DTYPE_BYTES = {"float32": 4, "tf32": 4, "float16": 2, "bfloat16": 2}
MACS_PER_MMA = {"float16": 16 * 8 * 16, "bfloat16": 16 * 8 * 16, "tf32": 16 * 8 * 8}
BM = BN = 64                                 # igemm::Tile (csrc/core/implicit_gemm.h)
BK = 16
GEMM_THREADS = 256
FP32_CORE_TILE = (128, 128, 8)               # gemm32::Tile (csrc/core/gemm_fp32_tile.h)
# The fp32 GEMM core's variant for operands whose mn dimension is contiguous and 16-byte
# aligned (Winograd on the headline layers: tiles and channels multiples of 4).
FP32_CORE = "gemm_fp32_kernel<true, true>"


@dataclasses.dataclass(frozen=True)
class Layer:
    """A convolution (K output channels), or a max-pool (pool=True: K = C, no weight)."""
    name: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int = 3
    S: int = 3
    stride: int = 1
    pad: int = 1
    pool: bool = False

    @property
    def P(self) -> int:
        return (self.H + 2 * self.pad - self.R) // self.stride + 1

    @property
    def Q(self) -> int:
        return (self.W + 2 * self.pad - self.S) // self.stride + 1

    @property
    def outputs(self) -> int:
        return self.N * self.K * self.P * self.Q

    @property
    def flops(self) -> float:
        return 2.0 * self.outputs * self.C * self.R * self.S

    def tensor_bytes(self, eb: int) -> float:
        weight = 0 if self.pool else self.K * self.C * self.R * self.S
        return eb * (self.N * self.C * self.H * self.W + weight + self.outputs)


LAYERS = [
    Layer("VGG16 conv3_2 N32 C256 K256 56x56 3x3", 32, 256, 56, 56, 256),
    Layer("ResNet-50 3x3 N32 C256 K256 14x14", 32, 256, 14, 14, 256),
    Layer("ResNet-50 1x1 N32 C256->64 56x56", 32, 256, 56, 56, 64, R=1, S=1, pad=0),
    Layer("ResNet-50 3x3 s2 N32 C128 K128 56x56->28x28", 32, 128, 56, 56, 128, stride=2),
    Layer("max-pool 3x3 s2 N32 C64 112x112", 32, 64, 112, 112, 64, stride=2, pool=True),
]


def cudnn_assumed(layer, dtype: str) -> float:
    """Seconds cuDNN is assumed to take (+-30%): its kernels are taken to reach 60% of the
    tensor peak (float16/bfloat16/TF32) or 75% of the FP32 peak on layers with >= 1 GFLOP per
    SM-wave of work, 45% / 55% on the small 14x14 and 1x1 layers, and 80% of HBM bandwidth for
    the bytes each tensor must move (max-pool: input + output, no indices); the larger of the
    two times."""
    eb = DTYPE_BYTES[dtype]
    if layer.pool:
        return layer.tensor_bytes(eb) / (0.8 * HBM)
    small = layer.P * layer.Q <= 196 or layer.R == 1
    eff = (0.45 if small else 0.6) if dtype != "float32" else (0.55 if small else 0.75)
    return max(layer.flops / (eff * PEAK[dtype]), layer.tensor_bytes(eb) / (0.8 * HBM))


@dataclasses.dataclass
class Bounds:
    issue: float = 0.0
    tensor: float = 0.0
    fp32: float = 0.0
    smem: float = 0.0
    hbm: float = 0.0

    def add(self, other: "Bounds") -> "Bounds":  # kernels run one after another
        return Bounds(*(a + b for a, b in zip(dataclasses.astuple(self),
                                              dataclasses.astuple(other))))

    @property
    def time(self) -> float:
        return max(dataclasses.astuple(self))

    @property
    def limiter(self) -> str:
        d = dataclasses.asdict(self)
        return max(d, key=d.get)


def _loop_instrs(k: Dict) -> int:
    return k["main_loop"]["instructions"] + k["subroutine_instrs"]


class LoopNestChanged(Exception):
    """The kernel no longer has the loop structure its model was written for."""


def gemm_bounds(k: Dict, dtype: str, M: int, N: int, Kr: int, batches: int = 1,
                tile=(BM, BN, BK)) -> Bounds:
    """A GEMM launch (igemm_kernel, or the fp32 core with tile=FP32_CORE_TILE): tiles_m x
    tiles_n x batches blocks of 256 threads, each running ceil(K/BK) k-tiles of its main loop;
    one iteration's MACs come from its MMA (or FFMA) count."""
    BM, BN, BK = tile
    warps = GEMM_THREADS // 32
    blocks = math.ceil(M / BM) * math.ceil(N / BN) * batches
    per_sm = math.ceil(blocks / SMS)               # the busiest SM's blocks (waves)
    block_macs = BM * BN * math.ceil(Kr / BK) * BK
    mix = k["main_loop_mix"]
    if mix["mma"]:
        iter_macs = warps * mix["mma"] * MACS_PER_MMA[dtype]
    else:
        iter_macs = warps * mix["ffma"] * 32
    if abs(iter_macs / (BM * BN * BK) - 1) > 0.05:  # SIMT: ~260 FFMAs for 256 (4 not MACs)
        raise LoopNestChanged(f"main loop does {iter_macs} MACs per block iteration, the "
                              f"{BM}x{BN}x{BK} tile {BM * BN * BK}")
    iters = block_macs / iter_macs
    b = Bounds()
    b.issue = per_sm * warps * iters * _loop_instrs(k) / (SCHEDULERS * CLOCK)
    if mix["mma"]:
        b.tensor = per_sm * 2 * block_macs / (PEAK[dtype] * MMA_SYNC_FRACTION / SMS)
    else:
        b.fp32 = per_sm * 2 * block_macs / (PEAK["float32"] / SMS)
    b.smem = per_sm * warps * iters * k["main_loop_shared_bytes"] / (SMEM_BYTES_PER_CLOCK * CLOCK)
    # not a bound: the grid and how many full-occupancy waves it makes (under 1: idle SMs)
    b.grid = (blocks, blocks / (SMS * k["blocks_per_sm"]) if k.get("blocks_per_sm") else None)
    return b


def nest_bounds(k: Dict, items: int, trips: Dict[int, float], hbm_bytes: float,
                ffma_flops: float = 0.0) -> Bounds:
    """A grid-stride kernel over `items` work items (one per thread): per item, each loop on
    the main loop's chain issues its exclusive instructions trips[depth] times. `trips` names
    every depth of the nest it was read off: a kernel whose main loop now sits at another
    depth has been rewritten, and its model must be too (LoopNestChanged, not a wrong figure)."""
    if k["main_loop"]["depth"] != max(trips):
        raise LoopNestChanged(f"main loop at depth {k['main_loop']['depth']}, the model's trip "
                              f"counts are for depth {max(trips)}")
    per_item = 0.0
    for lp in k["main_loop_chain"]:
        per_item += lp["exclusive"] * trips.get(lp["depth"], 0)
    per_item += k["subroutine_instrs"] * trips.get(k["main_loop"]["depth"], 0)
    b = Bounds()
    b.issue = items / 32 * per_item / (SMS * SCHEDULERS * CLOCK)
    b.fp32 = ffma_flops / PEAK["float32"]
    b.hbm = hbm_bytes / HBM
    return b


def _igemm(dtype: str) -> str:
    t = {"float32": "float", "tf32": "float", "float16": "__half",
         "bfloat16": "__nv_bfloat16"}[dtype]
    compute = {"float32": "SimtCompute", "tf32": "MmaCompute<Tf32MmaOp> ",
               "float16": "MmaCompute<MmaOp<__half> > ",
               "bfloat16": "MmaCompute<MmaOp<__nv_bfloat16> > "}[dtype]
    return f"igemm_kernel<{t}, FpropMap, {compute}>"


def igemm_model(dtype: str):
    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        k = kernels[_igemm(dtype)]
        b = gemm_bounds(k, dtype, layer.N * layer.P * layer.Q, layer.K,
                        layer.C * layer.R * layer.S)
        b.hbm = layer.tensor_bytes(DTYPE_BYTES[dtype]) / HBM
        return b
    model.kernels = [_igemm(dtype)]
    return model


def direct_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    # conv2d_direct_forward_kernel: one output per thread; loops c (depth 2), r (3),
    # s (4, unrolled by 4 by ptxas: S < 4 runs only the remainder code, counted in depth 3).
    k = kernels["conv2d_direct_forward_kernel<float>"]
    outputs = layer.N * layer.K * layer.P * layer.Q
    trips = {1: 1, 2: layer.C, 3: layer.C * layer.R, 4: layer.C * layer.R * (layer.S // 4)}
    return nest_bounds(k, outputs, trips, layer.tensor_bytes(4), layer.flops)


direct_model.kernels = ["conv2d_direct_forward_kernel<float>"]


def winograd4_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    # conv2d_winograd.cu, F(4x4,3x3) float32: filter transform (every call unless
    # CNNKERN_WINOGRAD_FILTER_CACHE=1), input transform to V, 36 GEMMs [K x C] x [C x tiles]
    # into M on the fp32 core, output transform. V and M go through DRAM.
    a2, f = 36, 4
    TH, TW = math.ceil(layer.P / 4), math.ceil(layer.Q / 4)
    T = layer.N * TH * TW
    u = a2 * layer.K * layer.C * f
    v = a2 * layer.C * T * f
    m = a2 * layer.K * T * f
    x = layer.N * layer.C * layer.H * layer.W * f
    y = layer.N * layer.K * layer.P * layer.Q * f
    b = nest_bounds(kernels["wino_filter_kernel<4, float>"], layer.K * layer.C, {1: 1},
                    layer.K * layer.C * 9 * f + u)
    b = b.add(nest_bounds(kernels["wino_input_kernel<4, float>"], layer.C * T, {1: 1}, x + v))
    g = gemm_bounds(kernels[FP32_CORE], "float32", layer.K, T, layer.C, batches=a2,
                    tile=FP32_CORE_TILE)
    g.hbm = (u + v + m) / HBM
    b = b.add(g)
    return b.add(nest_bounds(kernels["wino_output_kernel<4, float>"], layer.N * layer.K * TH * TW,
                             {1: 1}, m + y))


winograd4_model.kernels = ["wino_filter_kernel<4, float>", "wino_input_kernel<4, float>",
                           FP32_CORE, "wino_output_kernel<4, float>"]


def maxpool_model(dtype: str):
    name = {"float32": "max_pool2d_forward_kernel<float>",
            "float16": "max_pool2d_forward_kernel<__half>"}[dtype]

    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        # one output per thread; window loops r (depth 2) and s (depth 3); the op always writes
        # the int64 argmax indices (functional.py calls the with-indices op).
        eb = DTYPE_BYTES[dtype]
        nbytes = layer.tensor_bytes(eb) + 8 * layer.outputs
        return nest_bounds(kernels[name], layer.outputs, {1: 1, 2: layer.R, 3: layer.R * layer.R},
                           nbytes)
    model.kernels = [name]
    return model


# (label, dtype for peaks and cuDNN, model, layers it applies to)
ROWS = [
    ("implicit GEMM fp16 mma.sync", "float16", igemm_model("float16"), "conv"),
    ("implicit GEMM TF32 mma.sync", "tf32", igemm_model("tf32"), "conv"),
    ("implicit GEMM fp32 SIMT", "float32", igemm_model("float32"), "conv"),
    ("Winograd F(4x4) fp32", "float32", winograd4_model, "3x3s1"),
    ("direct fp32", "float32", direct_model, "conv"),
    ("max-pool fp32", "float32", maxpool_model("float32"), "pool"),
    ("max-pool fp16", "float16", maxpool_model("float16"), "pool"),
]


def _applies(kind: str, layer: Layer) -> bool:
    if kind == "pool" or layer.pool:
        return kind == "pool" and layer.pool
    return kind == "conv" or (layer.R == 3 and layer.S == 3 and layer.stride == 1)


def analyse_layers(ks: Dict[str, Dict]) -> List[Dict]:
    """One row per (layer, kernel): bounds, prediction, limiter, % of peak, vs cuDNN. `ks`:
    the report's kernels by name (sass_report.kernel_report)."""
    rows = []
    for layer in LAYERS:
        for label, dtype, model, kind in ROWS:
            if not _applies(kind, layer):
                continue
            row = {"layer": layer.name, "kernel": label, "dtype": dtype}
            missing = [n for n in model.kernels if n not in ks or ks[n]["main_loop"] is None]
            if missing:
                row["note"] = "not in this build (or no loop): " + ", ".join(missing)
                rows.append(row)
                continue
            try:
                b = model(layer, ks)
            except LoopNestChanged as e:
                row["note"] = f"kernel rewritten, model not updated (sass_bounds.py): {e}"
                rows.append(row)
                continue
            t = b.time
            cudnn = cudnn_assumed(layer, dtype)
            row.update({f"{n}_us": round(v * 1e6, 2) for n, v in dataclasses.asdict(b).items()})
            blocks, waves = getattr(b, "grid", (None, None))
            if blocks is not None:
                row.update(blocks=blocks, waves=None if waves is None else round(waves, 2))
            row.update(predicted_us=round(t * 1e6, 2), limiter=b.limiter,
                       cudnn_assumed_us=round(cudnn * 1e6, 2),
                       vs_cudnn=round(cudnn / t, 3))
            if layer.pool:
                row["pct_hbm"] = round(100 * b.hbm / t, 1)
            else:
                row["tflops"] = round(layer.flops / t / 1e12, 2)
                row["pct_peak"] = round(100 * layer.flops / t / PEAK[dtype], 2)
            rows.append(row)
    return rows


def format_layers(rows: List[Dict]) -> str:
    lines = [f"Bound analysis on an H100 SXM (clock {CLOCK / 1e9:.2f} GHz, {SMS} SMs; mma.sync "
             f"at {MMA_SYNC_FRACTION:.0%} of the datasheet tensor peak; bounds in microseconds; "
             "%peak: of the dtype's datasheet peak (Winograd: effective FLOPs), pooling: of HBM; "
             "vs cuDNN = assumed cuDNN time / predicted time, cuDNN +-30%)", ""]
    lines.append(f"{'layer':46s} {'kernel':29s} {'issue':>8s} {'tensor':>7s} {'fp32':>7s} "
                 f"{'smem':>7s} {'hbm':>7s} {'pred':>8s} {'limiter':>7s} {'%peak':>6s} "
                 f"{'cuDNN':>7s} {'vs':>6s} {'blocks':>7s} {'waves':>5s}")
    for r in rows:
        if "note" in r:
            lines.append(f"{r['layer'][:46]:46s} {r['kernel']:29s} {r['note']}")
            continue
        pct = r.get("pct_peak", r.get("pct_hbm"))
        lines.append(f"{r['layer'][:46]:46s} {r['kernel']:29s} {r['issue_us']:8.1f} "
                     f"{r['tensor_us']:7.1f} {r['fp32_us']:7.1f} {r['smem_us']:7.1f} "
                     f"{r['hbm_us']:7.1f} {r['predicted_us']:8.1f} {r['limiter']:>7s} "
                     f"{pct:6.1f} {r['cudnn_assumed_us']:7.1f} "
                     f"{r['vs_cudnn']:5.3f}x {r.get('blocks', ''):>7} "
                     f"{'' if r.get('waves') is None else format(r['waves'], '5.2f'):>5}")
    return "\n".join(lines)
