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

enum class ScratchSlot : int {
  GemmPackB, GemmPackA,  // the GEMM's packed panels (cpu/gemm)
  ConvColumns,           // an im2col tile (cpu/im2col)
  StridePhases,          // an image split into its stride phases (cpu/im2col/stride_phases.h)
  // Winograd (cpu/winograd/winograd_plan.h): one block's transformed inputs V and products M,
  // a filter chunk U and its products Mt, a row buffer, the filter-streaming V chunk.
  WinogradV, WinogradM, WinogradU, WinogradMt, WinogradRow, WinogradVChunk,
  HalfRows,  // rows of half weights converted to float32 before packing (cpu/im2col)
  Count
};

namespace scratch_detail {
struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  ~Buffer() { std::free(p); }
  void* get(size_t want) {
    if (want == 0) want = 1;  // a valid pointer even for an empty request
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
