// The cp.async groups of one block (see async_copy.h).

#include "async_copy.h"

#include <cstring>

#include "sanitizer.h"

namespace cuda_emu {

void AsyncCopies::reset(int threads) {
  threads_.assign(threads, Groups{});
  pending_.clear();
}

const PendingCopy* AsyncCopies::overlapping(const void* p, std::size_t n,
                                            const unsigned char** dst) const {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  // The pending destinations do not overlap each other: only the last one starting below
  // b + n can reach into [b, b + n).
  auto it = pending_.lower_bound(b + n);
  if (it == pending_.begin()) return nullptr;
  --it;
  if (it->first + it->second.bytes <= b) return nullptr;
  *dst = it->first;
  return &it->second;
}

void AsyncCopies::issue(unsigned char* dst, const PendingCopy& copy) {
  std::memset(dst, 0xFF, copy.bytes);
  CUDA_EMU_ASAN_POISON(dst, copy.bytes);
  pending_.emplace(dst, copy);
  threads_[copy.thread].open.push_back(dst);
}

void AsyncCopies::commit(int thread) {
  Groups& g = threads_[thread];
  g.committed.push_back(std::move(g.open));
  g.open.clear();
}

void AsyncCopies::wait(int thread, int n) {
  Groups& g = threads_[thread];
  while (static_cast<int>(g.committed.size()) > n) {
    for (unsigned char* dst : g.committed.front()) land(dst);
    g.committed.pop_front();
  }
}

void AsyncCopies::land(unsigned char* dst) {
  auto it = pending_.find(dst);
  CUDA_EMU_ASAN_UNPOISON(dst, it->second.bytes);
  std::memcpy(dst, it->second.data, it->second.bytes);
  pending_.erase(it);
}

}  // namespace cuda_emu
