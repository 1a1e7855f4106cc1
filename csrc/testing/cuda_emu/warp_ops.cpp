// Shuffles and votes, as the CUDA C++ Programming Guide defines them ("Warp Shuffle
// Functions", "Warp Vote Functions"): the source lane of each shuffle variant, the width
// segments, and reads of lanes outside the mask (undefined on a GPU) reported as errors.

#include "warp_ops.h"

#include <sstream>

namespace cuda_emu {

namespace {

constexpr int kWarp = 32;

// The lane whose value `lane` receives, or -1 when it keeps its own.
int source_lane(WarpOp op, int lane, int param, int width) {
  const int seg = lane & ~(width - 1), in_seg = lane & (width - 1);
  switch (op) {
    case WarpOp::ShflIdx: return seg + (param & (width - 1));
    case WarpOp::ShflUp: return in_seg >= param ? lane - param : -1;
    case WarpOp::ShflDown: return in_seg + param < width ? lane + param : -1;
    case WarpOp::ShflXor: {
      const int src = lane ^ param;
      return src >= seg + width || src >= kWarp ? -1 : src;  // later segments: own value
    }
    default: return -1;
  }
}

}  // namespace

std::string complete_warp_op(WarpOp op, unsigned mask,
                             const std::array<WarpPayload*, 32>& lanes) {
  switch (op) {
    case WarpOp::Sync:
      return "";
    case WarpOp::Ballot:
    case WarpOp::All:
    case WarpOp::Any: {
      uint64_t ballot = 0;
      for (int k = 0; k < kWarp; ++k)
        if (lanes[k] != nullptr && lanes[k]->in[0] != 0) ballot |= uint64_t(1) << k;
      const uint64_t result = op == WarpOp::Ballot ? ballot
                              : op == WarpOp::All  ? uint64_t(ballot == mask)
                                                   : uint64_t(ballot != 0);
      for (WarpPayload* p : lanes)
        if (p != nullptr) p->out[0] = result;
      return "";
    }
    case WarpOp::Mma:
      return complete_mma(mask, lanes);
    case WarpOp::Ldmatrix:
      return complete_ldmatrix(mask, lanes);
    default:
      break;
  }
  // Shuffles. Every lane must agree on the width (the delta or source lane may differ).
  int width = -1;
  for (int k = 0; k < kWarp; ++k) {
    if (lanes[k] == nullptr) continue;
    const int w = lanes[k]->width;
    if (w <= 0 || w > kWarp || (w & (w - 1)) != 0) {
      std::ostringstream os;
      os << "lane " << k << " passes width " << w << "; it must be a power of 2 up to 32";
      return os.str();
    }
    if (width < 0) width = w;
    if (w != width) return "the lanes pass different widths";
  }
  uint64_t result[kWarp];
  for (int k = 0; k < kWarp; ++k) {
    if (lanes[k] == nullptr) continue;
    const int src = source_lane(op, k, lanes[k]->param, width);
    if (src < 0 || src == k) {
      result[k] = lanes[k]->in[0];
      continue;
    }
    if (lanes[src] == nullptr) {
      std::ostringstream os;
      os << "lane " << k << " reads lane " << src << ", which is not in the mask (0x" << std::hex
         << mask << "): the value is undefined on a GPU";
      return os.str();
    }
    result[k] = lanes[src]->in[0];
  }
  for (int k = 0; k < kWarp; ++k)
    if (lanes[k] != nullptr) lanes[k]->out[0] = result[k];
  return "";
}

}  // namespace cuda_emu
