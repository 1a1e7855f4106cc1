// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16 for the CUDA emulator, written from the
// PTX ISA ("Warp-level matrix load instruction: ldmatrix") and from nothing in the project's
// kernels, so that a kernel that addresses its rows or reads its fragments wrongly gets wrong
// values here, as it would on a GPU.
//
// Per PTX: matrix i (i < num) is 8 rows of 8 b16 elements; its row r is the 16 bytes at the
// address supplied by thread 8 i + r (the other threads' addresses are not used). Each thread
// receives register i of matrix i: with groupID = %laneid >> 2 and threadID_in_group =
// %laneid % 4, the elements (groupID, 2 threadID_in_group) in the low half and
// (groupID, 2 threadID_in_group + 1) in the high half; with .trans, the same elements of the
// matrix's transpose. The engine has already checked the addresses (16-byte aligned, in the
// block's shared memory, not a pending cp.async destination).

#include <cstdint>
#include <cstring>

#include "warp_ops.h"

namespace cuda_emu {

std::string complete_ldmatrix(unsigned mask, const std::array<WarpPayload*, 32>& lanes) {
  if (mask != 0xffffffffu) return "ldmatrix.sync.aligned needs all 32 lanes of the warp";
  const int num = lanes[0]->param;
  const bool trans = lanes[0]->width != 0;
  for (const WarpPayload* p : lanes)
    if (p->param != num || (p->width != 0) != trans)
      return "the lanes of the warp run different ldmatrix shapes (.x1/.x2/.x4, .trans)";
  uint16_t m[4][8][8];
  for (int i = 0; i < num; ++i)
    for (int r = 0; r < 8; ++r)
      std::memcpy(m[i][r], reinterpret_cast<const void*>(lanes[8 * i + r]->in[0]), 16);
  for (int lane = 0; lane < 32; ++lane) {
    const int group = lane >> 2, col = 2 * (lane % 4);
    for (int i = 0; i < num; ++i) {
      const uint16_t lo = trans ? m[i][col][group] : m[i][group][col];
      const uint16_t hi = trans ? m[i][col + 1][group] : m[i][group][col + 1];
      lanes[lane]->out[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
  return "";
}

}  // namespace cuda_emu
