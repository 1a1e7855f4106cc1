#pragma once
// The data movement of a complete warp collective (shuffles, votes, mma.sync, ldmatrix): every
// lane of the mask has arrived with its payload; fill each lane's `out`. Torch-free.

#include <array>
#include <string>

#include "cuda_emu/engine.h"

namespace cuda_emu {

// lanes[k]: lane k's payload, nullptr for lanes outside the mask. Returns "" or what is
// wrong (a shuffle reading a lane outside the mask, a bad width, an unknown mma shape).
std::string complete_warp_op(WarpOp op, unsigned mask, const std::array<WarpPayload*, 32>& lanes);

// mma.sync on a whole warp (mma.cpp).
std::string complete_mma(unsigned mask, const std::array<WarpPayload*, 32>& lanes);

// ldmatrix on a whole warp (ldmatrix.cpp): the row addresses are lanes' in[0].
std::string complete_ldmatrix(unsigned mask, const std::array<WarpPayload*, 32>& lanes);

}  // namespace cuda_emu
