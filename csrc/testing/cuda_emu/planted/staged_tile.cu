// A tile pipeline in miniature, as the Hopper implicit-GEMM kernels stage their operands: global
// memory -> cp.async (16/8/4 bytes, zero-fill past the valid columns) -> a 3-stage ring of
// XOR-swizzled shared tiles, one commit group per tile, wait_group<kStages - 2> -> ldmatrix
// fragments. Correct, or with one planted bug (StagedBug) that the emulator must catch, for
// tests/internals/test_cuda_emu_async.py. Plain CUDA: nvcc builds this file as it is (sm_80+).

#include "testing/cuda_emu/planted/staged_tile.h"

#include <cuda_runtime.h>

#include "core/smem_swizzle.h"
#include "cuda/async_copy.cuh"
#include "cuda/ldmatrix.cuh"

namespace cnnkern {
namespace planted {
namespace {

using namespace cuda_async;

constexpr int kThreads = 32;
constexpr int kRows = 16, kCols = 16;              // b16 elements
constexpr int kRowBytes = kCols * 2;               // 2 chunks of 16 bytes
constexpr int kTileBytes = kRows * kRowBytes;      // 512
constexpr int kStages = 3;
using Swizzle = XorSwizzle<kRowBytes / 16>;

// Where logical byte `byte` of `row` lives in a stage. The colliding variant keeps the chunk
// but folds rows 2k and 2k + 1 onto row 2k's slots: two rows mapping to one slot.
__device__ int stage_offset(int row, int byte, bool colliding) {
  if (colliding) return (row & ~1) * kRowBytes + (Swizzle::chunk(row, byte / 16) * 16) + byte % 16;
  return Swizzle::byte_offset(row, byte);
}

// Thread t stages chunk t (row t / 2, chunk t % 2) of tile `tile` into `stage`, in copies of
// `copy_bytes` (0: one cp.async.cg of 16); bytes of columns >= valid_cols are zero-filled.
__device__ void stage_tile(unsigned char* stage, const StagedTileArgs& a, int tile, StagedBug bug) {
  const int t = threadIdx.x, row = t / 2, chunk = t % 2;
  const int step = a.copy_bytes == 0 ? 16 : a.copy_bytes;
  for (int b = chunk * 16; b < chunk * 16 + 16; b += step) {
    const int valid = (a.valid_cols * 2 - b) < 0 ? 0 : a.valid_cols * 2 - b;
    const int src_bytes = valid < step ? valid : step;
    const unsigned char* src = reinterpret_cast<const unsigned char*>(a.x) +
                               (static_cast<long>(tile) * kRows + row) * kRowBytes + b;
    if (bug == StagedBug::MisalignedCpAsync && t == 5) src += 4;
    unsigned char* dst = stage + stage_offset(row, b, bug == StagedBug::CollidingSwizzle);
    if (a.copy_bytes == 0) cp_async_cg(dst, src, src_bytes);
    else if (step == 16) cp_async_ca<16>(dst, src, src_bytes);
    else if (step == 8) cp_async_ca<8>(dst, src, src_bytes);
    else cp_async_ca<4>(dst, src, src_bytes);
  }
}

template <int N, bool Trans>
__global__ void __launch_bounds__(kThreads) staged_tile_kernel(StagedTileArgs a, StagedBug bug) {
  __shared__ uint4 ring[kStages * kTileBytes / 16];
  unsigned char* const base = reinterpret_cast<unsigned char*>(ring);
  const int lane = threadIdx.x;
  // Prologue: tiles 0 .. kStages - 2 in flight, one group each (empty groups past the end keep
  // the count uniform).
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < a.tiles) stage_tile(base + s * kTileBytes, a, s, bug);
    cp_async_commit();
  }
  if (bug == StagedBug::ReadBeforeWait && lane == 0) {
    // Tile 0's first element, read before its group was waited for.
    *a.early = static_cast<float>(*reinterpret_cast<const volatile uint16_t*>(base));
  }
  for (int kt = 0; kt < a.tiles; ++kt) {
    if (bug == StagedBug::ShallowWait) cp_async_wait_group<kStages - 1>();
    else if (bug != StagedBug::MissingWait) cp_async_wait_group<kStages - 2>();  // tile kt landed
    __syncthreads();  // ... for every thread; and every thread is done with tile kt - 1
    // Refill the stage that held tile kt - 1 with tile kt + kStages - 1.
    const int next = kt + kStages - 1;
    if (next < a.tiles) stage_tile(base + (next % kStages) * kTileBytes, a, next, bug);
    cp_async_commit();
    // Lane 8 i + r addresses row r of matrix i (lanes past 8 N repeat the valid addresses).
    const int i = (lane / 8) % N, r = lane % 8;
    const int row = (i % 2) * 8 + r, byte = (i / 2) * 16;
    const unsigned char* stage = base + (kt % kStages) * kTileBytes;
    const void* addr = stage + stage_offset(row, byte, bug == StagedBug::CollidingSwizzle);
    if (bug == StagedBug::UnswizzledRead) addr = stage + row * kRowBytes + byte;
    if (bug == StagedBug::MisalignedLdmatrix && lane == 3)
      addr = static_cast<const char*>(addr) + 2;
    if (bug == StagedBug::LdmatrixFromGlobal && lane == 0) addr = a.x;
    uint32_t regs[N];
    ldmatrix<N, Trans>(regs, addr);
    for (int q = 0; q < N; ++q) a.y[(static_cast<long>(kt) * kThreads + lane) * N + q] = regs[q];
  }
  cp_async_wait_all();
}

template <int N>
void launch_n(StagedBug bug, const StagedTileArgs& a) {
  if (a.trans) staged_tile_kernel<N, true><<<1, kThreads>>>(a, bug);
  else staged_tile_kernel<N, false><<<1, kThreads>>>(a, bug);
}

}  // namespace

cudaError_t launch_staged_tile(StagedBug bug, const StagedTileArgs& a) {
  if (a.num == 1) launch_n<1>(bug, a);
  else if (a.num == 2) launch_n<2>(bug, a);
  else launch_n<4>(bug, a);
  return cudaGetLastError();
}

}  // namespace planted
}  // namespace cnnkern
