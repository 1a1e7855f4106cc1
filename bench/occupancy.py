"""Blocks and warps per SM of a kernel on an H100 (sm_90), from its registers, shared memory
and block size: the rules of CUDA 13.0's `cuda_occupancy.h` (the header behind
cudaOccupancyMaxActiveBlocksPerMultiprocessor), for compute capability 9.0:

- threads: 2048 per SM (64 warps), at most 32 blocks per SM (cudaOccMaxBlocksPerMultiprocessor);
- registers: 65536 per SM in 4 sub-partitions (cudaOccSubPartitionsPerMultiprocessor), allocated
  per warp in units of 256 (cudaOccRegAllocationGranularity): a warp takes
  ceil(regs * 32 / 256) * 256 registers, a sub-partition holds floor(16384 / that) warps, the SM
  4 times as many (cudaOccMaxBlocksPerSMRegsLimit); at most 255 registers per thread;
- shared memory: 228 KiB per SM (sharedMemPerMultiprocessor on an H100 = 233472), at most
  227 KiB per block (sharedMemPerBlockOptin); each block also takes the driver's reserved
  1 KiB (reservedSharedMemPerBlock) and is rounded up to 128 bytes
  (cudaOccSMemAllocationGranularity); the carveout is assumed set to the maximum
  (cudaOccMaxBlocksPerSMSmemLimit with the largest shared-memory preference);
- barriers: 2 per block slot (64 named-barrier sets): never the limit with 1 barrier a block.
"""

from __future__ import annotations

import dataclasses

WARP = 32
SM90 = dict(
    sms=132,                       # H100 SXM5
    max_threads_per_sm=2048,
    max_warps_per_sm=64,
    max_blocks_per_sm=32,
    regs_per_sm=65536,
    reg_sub_partitions=4,
    reg_alloc_unit=256,            # registers, per warp
    max_regs_per_thread=255,
    smem_per_sm=233472,            # 228 KiB
    smem_per_block_max=232448,     # 227 KiB (opt-in)
    smem_reserved_per_block=1024,
    smem_alloc_unit=128,
)


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


@dataclasses.dataclass
class Occupancy:
    blocks_per_sm: int
    warps_per_sm: int
    limiter: str          # "threads", "registers", "shared memory" or "blocks"
    by_registers: int
    by_shared: int
    by_threads: int

    @property
    def occupancy(self) -> float:
        return self.warps_per_sm / SM90["max_warps_per_sm"]


def occupancy(threads: int, registers: int, shared_bytes: int, spec: dict = SM90) -> Occupancy:
    """Resident blocks and warps per SM for blocks of `threads` threads using `registers` per
    thread and `shared_bytes` of shared memory (static + dynamic) per block."""
    if threads <= 0 or threads > 1024:
        raise ValueError(f"occupancy: threads per block must be in 1..1024; got {threads}")
    if registers < 0 or shared_bytes < 0:
        raise ValueError(f"occupancy: registers ({registers}) and shared_bytes ({shared_bytes}) "
                         "must be >= 0")
    warps = -(-threads // WARP)
    by_threads = min(spec["max_warps_per_sm"] // warps,
                     spec["max_threads_per_sm"] // (warps * WARP))
    by_blocks = spec["max_blocks_per_sm"]
    if registers > spec["max_regs_per_thread"]:
        by_regs = 0
    elif registers == 0:
        by_regs = by_blocks
    else:
        per_warp = _round_up(registers * WARP, spec["reg_alloc_unit"])
        per_sub = (spec["regs_per_sm"] // spec["reg_sub_partitions"]) // per_warp
        by_regs = (per_sub * spec["reg_sub_partitions"]) // warps
    smem = _round_up(shared_bytes + spec["smem_reserved_per_block"], spec["smem_alloc_unit"])
    if shared_bytes > spec["smem_per_block_max"]:
        by_smem = 0
    else:
        by_smem = spec["smem_per_sm"] // smem
    # Ties name the first: a kernel at the thread limit is "threads"-bound even if its
    # registers would allow no more either.
    limits = [("threads", by_threads), ("registers", by_regs), ("shared memory", by_smem),
              ("blocks", by_blocks)]
    limiter, blocks = min(limits, key=lambda kv: kv[1])
    return Occupancy(blocks, blocks * warps, limiter, by_regs, by_smem, by_threads)
