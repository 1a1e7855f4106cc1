#pragma once
// Launcher of the staged-tile kernel (staged_tile.cu): the cp.async pipeline and ldmatrix of
// the Hopper kernels in miniature, correct or with one planted bug. Torch-free.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cnnkern {
namespace planted {

enum class StagedBug {
  None,                // correct
  MissingWait,         // no cp.async.wait_group before the barrier that precedes the ldmatrix
  ShallowWait,         // wait_group<kStages - 1>: leaves the group of the tile about to be read
  ReadBeforeWait,      // correct, plus a plain load of a tile element before its group's wait
  CollidingSwizzle,    // rows 2k and 2k+1 mapped onto the same two 16-byte slots
  UnswizzledRead,      // tiles written swizzled, ldmatrix rows addressed row-major
  MisalignedLdmatrix,  // lane 3's row address 2 bytes past its row
  LdmatrixFromGlobal,  // lane 0 passes a global-memory address
  MisalignedCpAsync,   // thread 5's source 4 bytes past its chunk
};

struct StagedTileArgs {
  const uint16_t* x;  // tiles x 16 x 16 b16 values, row-major
  uint32_t* y;        // tiles x 32 lanes x num registers
  float* early;       // ReadBeforeWait: what thread 0 read before its wait (one float)
  int tiles;
  int num;            // ldmatrix .x1 / .x2 / .x4
  bool trans;
  int copy_bytes;     // 4, 8 or 16 (cp.async.ca), or 0 for 16-byte cp.async.cg
  int valid_cols;     // columns >= valid_cols of every row are zero-filled by the copies
};

// One block of 32 threads: the tiles pass through a 3-stage shared-memory ring (XOR-swizzled,
// core/smem_swizzle.h) by cp.async, one commit group per tile, wait_group 1; each tile is then
// read with ldmatrix: matrix i (i < num) is the 8 x 8 block at rows 8 (i % 2), columns 8 (i / 2).
cudaError_t launch_staged_tile(StagedBug bug, const StagedTileArgs& args);

}  // namespace planted
}  // namespace cnnkern
