#pragma once
// Grow-only, 64-byte aligned scratch memory owned by the calling thread.
//
// at::parallel_for's worker threads live as long as the process, so buffers that every call
// needs (GEMM packing panels, an im2col tile) are allocated once per thread and reused,
// instead of being mapped and faulted in again on every call. Each user takes its own slot;
// a slot's memory stays valid until the same thread asks that slot for more.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace cnnkern {
namespace cpu {

enum class ScratchSlot : int { GemmPackB = 0, GemmPackA = 1, ConvColumns = 2, Count = 3 };

namespace scratch_detail {
struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  ~Buffer() { std::free(p); }
  void* get(size_t want) {
    if (want > bytes) {
      std::free(p);
      p = nullptr;
      bytes = 0;
      const size_t rounded = (want + 63) / 64 * 64;
      p = std::aligned_alloc(64, rounded);
      if (p == nullptr) throw std::bad_alloc();
      bytes = rounded;
    }
    return p;
  }
};
}  // namespace scratch_detail

// `elems` elements of T in this thread's buffer for `slot`.
template <typename T>
T* thread_scratch(ScratchSlot slot, int64_t elems) {
  thread_local scratch_detail::Buffer buffers[static_cast<int>(ScratchSlot::Count)];
  return static_cast<T*>(
      buffers[static_cast<int>(slot)].get(static_cast<size_t>(elems) * sizeof(T)));
}

}  // namespace cpu
}  // namespace cnnkern
