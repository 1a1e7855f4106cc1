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
FP32_CORE_TILE = {"bm": 128, "bn": 128, "bk": 8}  # gemm32::Tile (csrc/core/gemm_fp32_tile.h)
# The fp32 GEMM core's variant for operands whose mn dimension is contiguous and 16-byte
# aligned (Winograd on the headline layers: tiles and channels multiples of 4).
FP32_CORE = "gemm_fp32_kernel<true, true>"
# The fp32 implicit-GEMM forward on that core (csrc/cuda/conv2d_igemm_fp32.cu): its block's
# output channels (128, or 64 for K/groups <= 64) and patch gather (PointwiseStager for 1x1
# filters without padding, else PatchStager's tap walk); split-K's reduce kernel; its
# grad-weight (csrc/cuda/conv2d_igemm_fp32_wgrad.cu).
def igemm_fp32_kernel(bm: int, pointwise: bool) -> str:
    return f"igemm_fp32_fprop_kernel<{bm}, {'PointwiseStager' if pointwise else 'PatchStager'}>"


IGEMM_FP32 = igemm_fp32_kernel(128, False)
IGEMM_FP32_REDUCE = "igemm_fp32_reduce_kernel"
def igemm_fp32_wgrad_kernel(bm: int) -> str:
    return f"igemm_fp32_wgrad_kernel<{bm}>"


IGEMM_FP32_WGRAD = igemm_fp32_wgrad_kernel(128)


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


def grid_waves(k: Dict, blocks: int):
    """Not a bound: the grid, and how many full-occupancy waves it makes (under 1: idle SMs)."""
    return (blocks, blocks / (SMS * k["blocks_per_sm"]) if k.get("blocks_per_sm") else None)


def gemm_bounds(k: Dict, dtype: str, M: int, N: int, Kr: int, batches: int = 1,
                bm: int = BM, bn: int = BN, bk: int = BK, threads: int = GEMM_THREADS) -> Bounds:
    """A GEMM kernel launch (igemm_kernel by default): tiles_m x tiles_n x batches blocks of
    `threads` threads, each running ceil(K/bk) k-tiles of its main loop; one iteration's MACs
    come from its MMA (or FFMA) count."""
    BM, BN, BK = bm, bn, bk  # noqa: N806 (the tile, as named above)
    warps = threads // 32
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
    b.grid = grid_waves(k, blocks)
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


def shared_bound(k: Dict, threads: int, iterations: float) -> float:
    """Shared-memory time of `threads` threads each running `iterations` main-loop iterations:
    the loop's shared bytes per warp-iteration at 128 B per clock per SM, no bank conflicts."""
    warp_iters = threads / 32 * iterations
    return warp_iters * k["main_loop_shared_bytes"] / (SMEM_BYTES_PER_CLOCK * CLOCK * SMS)


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


def igemm_general_dgrad_model(dtype: str):
    """grad-input through the general kernel (DgradMap, the gather form): what a strided layer
    runs (stride 1 takes the swapped forward of a faster kernel). Its GEMM is N*H*W x C x
    K*R*S: every stride hole is a multiplied zero, so only 1/stride^2 of its MACs are useful
    (the % of peak, from the layer's FLOPs, shows it)."""
    name = _igemm(dtype).replace("FpropMap", "DgradMap")

    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        b = gemm_bounds(kernels[name], dtype, layer.N * layer.H * layer.W, layer.C,
                        layer.K * layer.R * layer.S)
        b.hbm = layer.tensor_bytes(DTYPE_BYTES[dtype]) / HBM
        return b
    model.kernels = [name]
    return model


# csrc/core/igemm_fp32_schedule.h, mirrored: the narrow tile's rows, the slices' limits, and
# the busy share (per mille) under which the k-tiles are split.
FP32_NARROW_BM, FP32_MIN_KTILES_PER_SLICE, FP32_MAX_SLICES, FP32_MIN_BUSY = 64, 8, 16, 900


def fp32_schedule(layer: Layer, sms: int = SMS):
    """igemm32::make_schedule for groups 1: (bm, splits, k-tiles per slice)."""
    bm = FP32_NARROW_BM if layer.K <= FP32_NARROW_BM else FP32_CORE_TILE["bm"]
    tiles = math.ceil(layer.K / bm) * math.ceil(layer.N * layer.P * layer.Q / FP32_CORE_TILE["bn"])
    k_tiles = math.ceil(layer.C * layer.R * layer.S / FP32_CORE_TILE["bk"])

    def busy(blocks):
        return blocks * 1000 // (sms * math.ceil(blocks / sms))

    best, best_per, best_busy = 1, k_tiles, busy(tiles)
    if best_busy >= FP32_MIN_BUSY:
        return bm, 1, k_tiles
    for want in range(2, min(k_tiles // FP32_MIN_KTILES_PER_SLICE, FP32_MAX_SLICES) + 1):
        per = math.ceil(k_tiles / want)
        n = math.ceil(k_tiles / per)
        if busy(tiles * n) > best_busy:
            best, best_per, best_busy = n, per, busy(tiles * n)
        if best_busy >= FP32_MIN_BUSY:
            break
    return bm, best, best_per


def _fp32_pointwise(layer: Layer) -> bool:
    return layer.R == 1 and layer.S == 1 and layer.pad == 0


def igemm_fp32_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    # conv2d_igemm_fp32.cu: per group, output[K x N*P*Q] = weight[K x CRS] x patches; one block
    # of 256 threads per bm x 128 output tile (the schedule's bm), k-tiles of 8 (C*R*S rounded
    # up). Split into slices: each slice's blocks run its k-tiles (the last slice's fewer
    # counted as full) and write fp32 partial sums, which the reduce kernel reads back once and
    # sums into the output (its issue time, a few instructions per element read, not counted).
    bm, splits, per = fp32_schedule(layer)
    M, N = layer.K, layer.N * layer.P * layer.Q
    k = kernels[igemm_fp32_kernel(bm, _fp32_pointwise(layer))]
    b = gemm_bounds(k, "float32", M, N, per * FP32_CORE_TILE["bk"], batches=splits, bm=bm,
                    bn=FP32_CORE_TILE["bn"], bk=FP32_CORE_TILE["bk"])
    if splits == 1:
        b.hbm = layer.tensor_bytes(4) / HBM
        return b
    partials = 4 * splits * M * N
    b.hbm = (layer.tensor_bytes(4) - 4 * layer.outputs + partials) / HBM
    reduce = Bounds(hbm=(partials + 4 * layer.outputs) / HBM)
    grid = b.grid
    b = b.add(reduce)
    b.grid = grid
    return b


def _igemm_fp32_kernels(layer: Layer) -> List[str]:
    bm, splits, _ = fp32_schedule(layer)
    return [igemm_fp32_kernel(bm, _fp32_pointwise(layer))] + (
        [IGEMM_FP32_REDUCE] if splits > 1 else [])


igemm_fp32_model.kernels_for = _igemm_fp32_kernels


def _swapped_for_dgrad(layer: Layer) -> Layer:
    """grad-input, stride 1, as a forward (csrc/core/conv2d_dgrad.h): on grad_output, with the
    weight flipped and K <-> C swapped, padding R-1-pad."""
    if layer.stride != 1:
        raise LoopNestChanged("a strided grad-input runs the general kernel")
    return dataclasses.replace(layer, C=layer.K, K=layer.C, H=layer.P, W=layer.Q,
                               pad=layer.R - 1 - layer.pad)


def igemm_fp32_dgrad_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    # The fp32 forward on the swapped problem, plus the flipped weight's one copy (groups 1:
    # read and written once).
    b = igemm_fp32_model(_swapped_for_dgrad(layer), kernels)
    b.hbm += 2 * 4 * layer.K * layer.C * layer.R * layer.S / HBM
    return b


def _igemm_fp32_dgrad_kernels(layer: Layer) -> List[str]:
    # A strided layer has no such kernels: the model itself says why (LoopNestChanged).
    return _igemm_fp32_kernels(_swapped_for_dgrad(layer)) if layer.stride == 1 else []


igemm_fp32_dgrad_model.kernels_for = _igemm_fp32_dgrad_kernels


def fp32_wgrad_plan(M: int, N: int, pixels: int):
    """csrc/core/igemm_fp32_bwd.h make_wgrad_plan on SMS SMs (groups 1): (bm, splits, k-tiles
    per slice) of the M x N grad-weight GEMM over `pixels`; bm 64 (the narrow tile) for
    M <= 64."""
    bk = FP32_CORE_TILE["bk"]
    bm = FP32_NARROW_BM if M <= FP32_NARROW_BM else FP32_CORE_TILE["bm"]
    k_tiles = math.ceil(pixels / bk)
    tiles = math.ceil(M / bm) * math.ceil(N / FP32_CORE_TILE["bn"])
    if tiles >= SMS:
        return bm, 1, k_tiles
    want = min(2 * SMS // tiles, k_tiles // 16, 128)  # >= 16 k-tiles a slice, 128 at most
    if want <= 1:
        return bm, 1, k_tiles
    per = math.ceil(k_tiles / want)
    return bm, math.ceil(k_tiles / per), per


def igemm_fp32_wgrad_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    """grad-weight on the fp32 core (csrc/cuda/conv2d_igemm_fp32_wgrad.cu): a K x (C*R*S) GEMM
    over N*P*Q pixels in tiles of bm x 128 (bm 64 for K <= 64), split-K where the tiles are
    under a wave of 2 blocks per SM; each slice
    counted as full, and the fp32 partial sums written and read back once by the reduce (its
    issue time, M*N*splits loads over the GPU, not counted)."""
    M, N = layer.K, layer.C * layer.R * layer.S
    bm, splits, per = fp32_wgrad_plan(M, N, layer.N * layer.P * layer.Q)
    b = gemm_bounds(kernels[igemm_fp32_wgrad_kernel(bm)], "float32", M, N,
                    per * FP32_CORE_TILE["bk"], batches=splits, bm=bm, bn=FP32_CORE_TILE["bn"],
                    bk=FP32_CORE_TILE["bk"])
    partials = 2 * 4 * splits * M * N if splits > 1 else 0
    b.hbm = (layer.tensor_bytes(4) + partials) / HBM
    return b


def _igemm_fp32_wgrad_kernels(layer: Layer) -> List[str]:
    bm, _, _ = fp32_wgrad_plan(layer.K, layer.C * layer.R * layer.S,
                               layer.N * layer.P * layer.Q)
    return [igemm_fp32_wgrad_kernel(bm)]


igemm_fp32_wgrad_model.kernels_for = _igemm_fp32_wgrad_kernels


# core/direct_tile.h, mirrored for the plan of the layers here (groups 1, dilation 1): a block
# computes a 16 x 16 output tile for 32 output channels with 256 threads, staging `cb` input
# channels (at most 8) and their weights in 47 KiB of shared memory per stage; the weights
# start at a multiple of 4 elements (16-byte vector reads).
DIRECT_TILE, DIRECT_KB, DIRECT_THREADS = 16, 32, 256
DIRECT_SMEM_BUDGET, DIRECT_MAX_STAGE_CHANNELS, DIRECT_WEIGHT_ALIGN = 47 * 1024, 8, 4


def _direct_stage(cb: int, tile: int, taps: int) -> int:
    """direct_tile::stage_elems: the input tile rounded up, then the weights."""
    return -(-cb * tile // DIRECT_WEIGHT_ALIGN) * DIRECT_WEIGHT_ALIGN + cb * taps * DIRECT_KB


def _direct_fit(budget: int, cb_max: int, tile: int, taps: int) -> int:
    """direct_tile::fit_channels."""
    cb = min(budget // (tile + taps * DIRECT_KB), cb_max)
    while cb > 1 and _direct_stage(cb, tile, taps) > budget:
        cb -= 1
    return cb


def direct_plan(layer: Layer, acc_bytes: int = 4) -> Dict:
    """direct_tile::make_plan: the kernel variant, channels per stage and stages per block."""
    budget = DIRECT_SMEM_BUDGET // acc_bytes
    cb_max = min(layer.C, DIRECT_MAX_STAGE_CHANNELS)
    if layer.R == 3 and layer.S == 3:
        halo = (DIRECT_TILE - 1) * layer.stride + 3
        if _direct_stage(1, halo * halo, 9) <= budget:
            unit = "true" if layer.stride == 1 else "false"
            return {"kernel": f"conv2d_direct_forward_kernel<float, 3, 3, {unit}>",
                    "cb": _direct_fit(budget, cb_max, halo * halo, 9), "taps_h": 1,
                    "taps_w": 1}
    return {"kernel": "conv2d_direct_forward_kernel<float, 1, 1, true>",
            "cb": _direct_fit(budget, cb_max, DIRECT_TILE * DIRECT_TILE, 1),
            "taps_h": layer.R, "taps_w": layer.S}


# The tensor-core forward (csrc/cuda/conv2d_igemm_tc.cu): 4 warps, k-tiles of 32, the tile its
# plan picks (csrc/core/igemm_tc_plan.h: 128x128 when that grid fills a wave of SMS blocks,
# else 64x64), and the variant for C % 32 == 0 (every headline layer).
TC_THREADS = 128
TC_BK = 32
# k per k-tile of the tensor-core forward by dtype: a stage row is 64 bytes, i.e. 32 b16 or, in
# its TF32 variant (float32 with allow_tf32), 16 floats (csrc/core/igemm_tc_plan.h bk_elems).
TC_BK_OF = {"float16": TC_BK, "bfloat16": TC_BK, "tf32": 16}


def _igemm_tc(dtype: str, tile: int) -> str:
    t = {"float16": "__half", "bfloat16": "__nv_bfloat16", "tf32": "float"}[dtype]
    return f"igemm_tc_fprop_kernel<{t}, {tile}, {tile}, true>"


def tc_plan(M: int, N: int, red: int, split_large_first: bool = False, bk: int = TC_BK):
    """csrc/core/igemm_tc_plan.h make_gemm_plan on SMS SMs: (tile, splits, k-tiles per slice)
    of an M x N tensor-core GEMM reduced over `red` elements in k-tiles of `bk`."""
    k_tiles = math.ceil(red / bk)

    def split(want, most=16):  # at least 4 k-tiles a slice, at most `most` slices, none empty
        want = min(want, k_tiles // 4, most)
        if want <= 1:
            return 1, k_tiles
        per = math.ceil(k_tiles / want)
        return math.ceil(k_tiles / per), per

    big = math.ceil(M / 128) * math.ceil(N / 128)
    if big >= SMS:
        return 128, 1, k_tiles
    if split_large_first and big * split(2 * SMS // big, 32)[0] >= SMS:
        two, one = split(2 * SMS // big, 32), split(SMS // big, 32)
        # one block per SM when no SM gets more k-tiles: half the fp32 partial sums
        if 1 < one[0] < two[0] and (math.ceil(big * one[0] / SMS) * one[1]
                                    <= math.ceil(big * two[0] / SMS) * two[1]):
            return (128, *one)
        return (128, *two)
    small = math.ceil(M / 64) * math.ceil(N / 64)
    return (64, 1, k_tiles) if small >= SMS else (64, *split(math.ceil(SMS / small)))


def igemm_tc_model(dtype: str):
    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        M = layer.N * layer.P * layer.Q
        bk = TC_BK_OF[dtype]
        tile, splits, _ = tc_plan(M, layer.K, layer.C * layer.R * layer.S, bk=bk)
        if splits > 1:
            raise LoopNestChanged("the plan splits K here (split-K is not modelled)")
        if layer.C % bk != 0:
            raise LoopNestChanged(f"C % {bk} != 0 runs the general-C variant (not modelled)")
        b = gemm_bounds(kernels[_igemm_tc(dtype, tile)], dtype, M, layer.K,
                        layer.C * layer.R * layer.S, bm=tile, bn=tile, bk=bk,
                        threads=TC_THREADS)
        # A channels_last call: no layout copies (an NCHW one adds input + weight + output
        # transposes, each read and written once: 2x tensor_bytes more).
        b.hbm = layer.tensor_bytes(DTYPE_BYTES[dtype]) / HBM
        return b
    model.kernels = [_igemm_tc(dtype, 128), _igemm_tc(dtype, 64)]
    return model


def igemm_tc_dgrad_model(dtype: str):
    """grad-input, stride 1 (csrc/core/igemm_tc_bwd.h): the forward kernel on grad_output with
    the weight flipped and K <-> C swapped (padding R-1-pad), plus that weight's two copies."""
    fwd = igemm_tc_model(dtype)

    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        b = fwd(_swapped_for_dgrad(layer), kernels)
        b.hbm += 2 * 2 * DTYPE_BYTES[dtype] * layer.K * layer.C * layer.R * layer.S / HBM
        return b
    model.kernels = fwd.kernels
    return model


def _igemm_tc_wgrad(dtype: str, tile: int) -> str:
    t = {"float16": "__half", "bfloat16": "__nv_bfloat16"}[dtype]
    return f"igemm_tc_wgrad_kernel<{t}, {tile}, {tile}>"


def igemm_tc_wgrad_model(dtype: str):
    """grad-weight (csrc/cuda/conv2d_igemm_tc_wgrad.cu): a K x (R*S*C) GEMM over N*P*Q pixels,
    its plan splitting the big tile first; each slice's blocks run its k-tiles (the last
    slice's fewer counted as full), and with a split the fp32 partial sums are written and read
    back once by the reduce (its issue time, M*N*splits loads over the GPU, is not counted)."""
    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        M, N = layer.K, layer.C * layer.R * layer.S
        tile, splits, per = tc_plan(M, N, layer.N * layer.P * layer.Q, split_large_first=True)
        b = gemm_bounds(kernels[_igemm_tc_wgrad(dtype, tile)], dtype, M, N, per * TC_BK,
                        batches=splits, bm=tile, bn=tile, bk=TC_BK, threads=TC_THREADS)
        partials = 2 * 4 * splits * M * N if splits > 1 else 0
        b.hbm = (layer.tensor_bytes(DTYPE_BYTES[dtype]) + partials) / HBM
        return b
    model.kernels = [_igemm_tc_wgrad(dtype, 128), _igemm_tc_wgrad(dtype, 64)]
    return model


def direct_model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
    # conv2d_direct_forward_kernel: each thread 2x2 outputs x 8 channels. Loop nest per block
    # tile: depth 1 the grid-stride tiles, 2 the channel blocks (ceil(C / cb)), 3 and 4 the taps
    # staged one at a time (1 x 1 for the halo variants, R x S for the one-tap kernel), 5 the
    # cb channels of a stage (the main loop: every tap of the stage for the thread's 32
    # accumulators). Not counted: the staging loops (siblings of the main loop, ~10-20% more
    # instructions on the 3x3 layers) and the tile's overhang past P, Q (it is computed).
    pl = direct_plan(layer)
    k = kernels[pl["kernel"]]
    blocks = (layer.N * math.ceil(layer.K / DIRECT_KB) * math.ceil(layer.P / DIRECT_TILE)
              * math.ceil(layer.Q / DIRECT_TILE))
    threads = blocks * DIRECT_THREADS
    cblocks = math.ceil(layer.C / pl["cb"])
    taps = pl["taps_h"] * pl["taps_w"]
    trips = {1: 1, 2: cblocks, 3: cblocks * pl["taps_h"], 4: cblocks * taps,
             5: cblocks * pl["cb"] * taps}
    executed_flops = 2.0 * threads * trips[5] * k["main_loop_mix"]["ffma"]
    b = nest_bounds(k, threads, trips, layer.tensor_bytes(4), executed_flops)
    b.smem = shared_bound(k, threads, trips[5])
    b.grid = grid_waves(k, blocks)
    return b


def _direct_kernels(layer: Layer) -> List[str]:
    return [direct_plan(layer)["kernel"]]


direct_model.kernels_for = _direct_kernels


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
                    **FP32_CORE_TILE)
    g.hbm = (u + v + m) / HBM
    b = b.add(g)
    return b.add(nest_bounds(kernels["wino_output_kernel<4, float>"], layer.N * layer.K * TH * TW,
                             {1: 1}, m + y))


winograd4_model.kernels = ["wino_filter_kernel<4, float>", "wino_input_kernel<4, float>",
                           FP32_CORE, "wino_output_kernel<4, float>"]


# The fused Winograd kernel's block (csrc/core/winograd_fused_tile.h, wino_fused::Cfg<m>): TB
# tiles x KB output channels at all (m+2)^2 points, BC input channels per main-loop iteration,
# 8 threads per point; the variant with 16-byte filter copies (K % 4 == 0, every headline layer).
FUSED_TILE = {4: {"tb": 16, "kb": 32, "bc": 3, "threads": 288},
              2: {"tb": 16, "kb": 32, "bc": 2, "threads": 128}}


def _fused(m: int) -> str:
    return f"wino_fused{m}_kernel<float, true>"


def winograd_fused_model(m: int):
    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        # conv2d_winograd_fused.cu: the filter transform (every call unless
        # CNNKERN_WINOGRAD_FILTER_CACHE=1), then one kernel: per block and main-loop iteration
        # (BC channels) the input transform of its TB tiles into shared memory, the chunk of U by
        # cp.async, and a*a small GEMMs in registers; the output transform in the epilogue (not
        # counted: by hand ~1% of the main loop's instructions at C = 256). DRAM: x, y and U
        # once (the KB-channel blocks of a tile block are adjacent in the grid and share x in
        # L2); no V or M.
        t = FUSED_TILE[m]
        k = kernels[_fused(m)]
        a2, f = (m + 2) ** 2, 4
        T = layer.N * math.ceil(layer.P / m) * math.ceil(layer.Q / m)
        blocks = math.ceil(T / t["tb"]) * math.ceil(layer.K / t["kb"])
        per_sm = math.ceil(blocks / SMS)
        warps = t["threads"] // 32
        iters = math.ceil(layer.C / t["bc"])
        iter_macs = a2 * t["tb"] * t["kb"] * t["bc"]
        ffma_macs = warps * k["main_loop_mix"]["ffma"] * 32  # + a few in the 1-D transforms
        if not 1.0 <= ffma_macs / iter_macs <= 1.1:
            raise LoopNestChanged(f"main loop does {ffma_macs} FFMAs per block iteration, the "
                                  f"{a2}x{t['kb']}x{t['tb']}x{t['bc']} block {iter_macs} MACs")
        u = a2 * layer.K * layer.C * f
        b = nest_bounds(kernels[f"wino_filter_kernel<{m}, float>"], layer.K * layer.C, {1: 1},
                        layer.K * layer.C * 9 * f + u)
        g = Bounds()
        g.issue = per_sm * warps * iters * _loop_instrs(k) / (SCHEDULERS * CLOCK)
        g.fp32 = per_sm * 2 * iter_macs * iters / (PEAK["float32"] / SMS)
        g.smem = per_sm * warps * iters * k["main_loop_shared_bytes"] / (SMEM_BYTES_PER_CLOCK *
                                                                          CLOCK)
        g.hbm = (layer.tensor_bytes(f) - layer.K * layer.C * 9 * f + u) / HBM
        b = b.add(g)
        b.grid = grid_waves(k, blocks)
        return b
    model.kernels = [f"wino_filter_kernel<{m}, float>", _fused(m)]
    return model


def maxpool_model(dtype: str):
    # pool2d_forward_kernel, NCHW, 32-bit indices, V = 4 outputs along a row per thread (Q of
    # the layer here is a multiple of 4), values only (max_pool2d without return_indices: the
    # MaxPoolValues kernel, which carries no index). float32: depth 1 the grid-stride groups, 2 the window rows, 3 the
    # window columns of each of the V outputs (V sibling loops of S taps, one row each);
    # float16: ptxas unrolls the column loops, so the row loop is the main loop.
    ctype = {"float32": "float", "float16": "__half"}[dtype]
    name = f"pool2d_forward_kernel<MaxPoolValues<{ctype}>, false, 4, int>"
    V = 4

    def model(layer: Layer, kernels: Dict[str, Dict]) -> Bounds:
        eb = DTYPE_BYTES[dtype]
        trips = {1: 1, 2: layer.R}
        if dtype == "float32":
            trips[3] = layer.R * layer.S * V
        return nest_bounds(kernels[name], layer.outputs // V, trips, layer.tensor_bytes(eb))
    model.kernels = [name]
    return model


# (label, dtype for peaks and cuDNN, model, layers it applies to)
ROWS = [
    ("implicit GEMM fp16 mma.sync", "float16", igemm_model("float16"), "conv"),
    ("igemm fp16 tensor-core NHWC", "float16", igemm_tc_model("float16"), "conv"),
    ("igemm fp16 tc dgrad (s1)", "float16", igemm_tc_dgrad_model("float16"), "s1"),
    ("igemm fp16 tc wgrad NHWC", "float16", igemm_tc_wgrad_model("float16"), "conv"),
    ("implicit GEMM TF32 mma.sync", "tf32", igemm_model("tf32"), "conv"),
    ("igemm TF32 tensor-core NHWC", "tf32", igemm_tc_model("tf32"), "conv"),
    ("implicit GEMM fp32 (fp32 core)", "float32", igemm_fp32_model, "conv"),
    ("igemm fp32 core dgrad (s1)", "float32", igemm_fp32_dgrad_model, "s1"),
    ("igemm fp32 core wgrad", "float32", igemm_fp32_wgrad_model, "conv"),
    ("general igemm dgrad fp16 mma", "float16", igemm_general_dgrad_model("float16"), "strided"),
    ("general igemm dgrad TF32 mma", "tf32", igemm_general_dgrad_model("tf32"), "strided"),
    ("general igemm dgrad fp32 SIMT", "float32", igemm_general_dgrad_model("float32"), "strided"),
    ("Winograd F(4x4) fp32", "float32", winograd4_model, "3x3s1"),
    ("Winograd F(4x4) fused fp32", "float32", winograd_fused_model(4), "3x3s1"),
    ("Winograd F(2x2) fused fp32", "float32", winograd_fused_model(2), "3x3s1"),
    ("direct fp32", "float32", direct_model, "conv"),
    ("max-pool fp32", "float32", maxpool_model("float32"), "pool"),
    ("max-pool fp16", "float16", maxpool_model("float16"), "pool"),
]


def _applies(kind: str, layer: Layer) -> bool:
    if kind == "pool" or layer.pool:
        return kind == "pool" and layer.pool
    if kind == "conv":
        return True
    if kind == "s1":  # grad-input as a forward: stride 1 only (strided: the general kernel)
        return layer.stride == 1
    if kind == "strided":
        return layer.stride > 1
    return layer.R == 3 and layer.S == 3 and layer.stride == 1  # "3x3s1"


def analyse_layers(ks: Dict[str, Dict]) -> List[Dict]:
    """One row per (layer, kernel): bounds, prediction, limiter, % of peak, vs cuDNN. `ks`:
    the report's kernels by name (sass_report.kernel_report)."""
    rows = []
    for layer in LAYERS:
        for label, dtype, model, kind in ROWS:
            if not _applies(kind, layer):
                continue
            row = {"layer": layer.name, "kernel": label, "dtype": dtype}
            needed = (model.kernels_for(layer) if hasattr(model, "kernels_for")
                      else model.kernels)
            missing = [n for n in needed if n not in ks or ks[n]["main_loop"] is None]
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
