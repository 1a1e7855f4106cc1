#pragma once
// The cp.async groups of one block (PTX ISA, "cp.async", "cp.async.commit_group",
// "cp.async.wait_group / cp.async.wait_all"). Torch-free; the engine (engine.cpp) checks the
// operands and owns one of these per launch.
//
// Model. cp.async only initiates a copy; it belongs to the thread's current group until
// cp.async.commit_group closes that group, and cp.async.wait_group N returns once at most the N
// most recent committed groups of the thread are pending (copies not yet committed are not
// waited for). Until then the destination's contents are undefined, so here a copy is not made
// before the wait: the source bytes are read at issue (an out-of-bounds source stops under
// AddressSanitizer at the kernel's cp.async line), the destination is filled with 0xFF bytes (a
// premature read gives NaN, not the data) and poisoned under AddressSanitizer (the read stops
// there), and the engine refuses an ldmatrix of it or a second copy into it.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "cuda_emu/engine.h"

namespace cuda_emu {

struct PendingCopy {
  int bytes = 0;               // cp-size
  unsigned char data[16] = {}; // src-size bytes of the source, then zeros
  int thread = 0;              // linear index in the block of the issuing thread
  SourceLoc loc{nullptr, 0};   // its cp.async
};

class AsyncCopies {
 public:
  // A new block of `threads` threads: nothing pending.
  void reset(int threads);
  // The pending copy whose destination overlaps [p, p + n), or nullptr (with its address).
  const PendingCopy* overlapping(const void* p, std::size_t n, const unsigned char** dst) const;
  // Queues a copy in the thread's current group (its destination must not overlap a pending one).
  void issue(unsigned char* dst, const PendingCopy& copy);
  void commit(int thread);
  // Lands the thread's committed groups older than its `n` most recent ones.
  void wait(int thread, int n);

 private:
  struct Groups {
    std::vector<unsigned char*> open;                  // not committed yet
    std::deque<std::vector<unsigned char*>> committed; // oldest first
  };
  void land(unsigned char* dst);
  std::vector<Groups> threads_;
  std::map<const unsigned char*, PendingCopy> pending_;  // by destination; never overlapping
};

}  // namespace cuda_emu
