#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#else
#define CUDA_EMU_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__) || defined(CUDA_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#define CUDA_EMU_TSAN 1
#else
#define CUDA_EMU_TSAN 0
#endif

// switch_stacks(save, load): pushes the callee-saved state on the current stack, stores the
// stack pointer in *save, loads `load` as the stack pointer, pops the state saved there and
// returns into whatever called switch_stacks on that stack (or, the first time, into
// Fiber::trampoline: see the Fiber constructor).
extern "C" void cuda_emu_switch_stacks(void** save, void* load);
asm(R"(
  .text
  .p2align 4
  .globl cuda_emu_switch_stacks
  .hidden cuda_emu_switch_stacks
  .type cuda_emu_switch_stacks, @function
cuda_emu_switch_stacks:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_switch_stacks, .-cuda_emu_switch_stacks
)");

namespace cuda_emu {
namespace {

thread_local Fiber* starting_fiber = nullptr;

std::size_t page_size() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

}  // namespace

Fiber::Fiber(std::size_t stack_bytes) {
  const std::size_t page = page_size();
  const std::size_t stack = (stack_bytes + page - 1) / page * page;
  mapping_bytes_ = stack + page;
  void* m = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    std::perror("cuda_emu: mmap of a fiber stack");
    std::abort();
  }
  mapping_ = static_cast<char*>(m);
  // The lowest page faults on touch: a stack overflow stops at once instead of corrupting the
  // next fiber's stack.
  mprotect(mapping_, page, PROT_NONE);
#if CUDA_EMU_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

void Fiber::start(Entry entry, void* arg) {
  entry_ = entry;
  arg_ = arg;
  finished_ = false;
#if CUDA_EMU_ASAN
  // A thread the last launch abandoned mid-kernel (a fault, a failed collective) never returned
  // from its frames, so their redzones are still poisoned in this stack's shadow: clear them, or
  // this launch's frames would meet stale poison (what __asan_handle_no_return does for a
  // thread's own stack).
  __asan_unpoison_memory_region(mapping_ + page_size(), mapping_bytes_ - page_size());
#endif
  // The initial frame, as cuda_emu_switch_stacks expects to find it: MXCSR and x87 control
  // word (defaults), six callee-saved registers (zero), then the "return address"
  // trampoline, then a null slot that plays the return address of trampoline itself, so that
  // trampoline starts with the stack aligned as after a call (rsp + 8 a multiple of 16).
  auto* top = reinterpret_cast<std::uintptr_t*>(mapping_ + mapping_bytes_);
  std::uintptr_t* p = top;
  *--p = 0;
  *--p = reinterpret_cast<std::uintptr_t>(&Fiber::trampoline);
  for (int i = 0; i < 6; ++i) *--p = 0;
  *--p = 0x037F00001F80ull;  // low 32 bits: MXCSR; next 16 bits: the x87 control word
  sp_ = p;
}

Fiber::~Fiber() {
#if CUDA_EMU_TSAN
  if (tsan_fiber_ != nullptr) __tsan_destroy_fiber(tsan_fiber_);
#endif
  munmap(mapping_, mapping_bytes_);
}

void Fiber::switch_to() {
  void* scheduler_fake_stack = nullptr;
  (void)scheduler_fake_stack;
  if (finished_) return;
  starting_fiber = this;
#if CUDA_EMU_ASAN
  __sanitizer_start_switch_fiber(&scheduler_fake_stack, mapping_ + page_size(),
                                 mapping_bytes_ - page_size());
#endif
#if CUDA_EMU_TSAN
  tsan_scheduler_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, __tsan_switch_to_fiber_no_sync);
#endif
  cuda_emu_switch_stacks(&scheduler_sp_, sp_);
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
}

void Fiber::yield_to_scheduler() {
#if CUDA_EMU_ASAN
  __sanitizer_start_switch_fiber(&asan_fake_stack_, scheduler_stack_bottom_,
                                 scheduler_stack_size_);
#endif
#if CUDA_EMU_TSAN
  __tsan_switch_to_fiber(tsan_scheduler_, __tsan_switch_to_fiber_no_sync);
#endif
  cuda_emu_switch_stacks(&sp_, scheduler_sp_);
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(asan_fake_stack_, &scheduler_stack_bottom_,
                                  &scheduler_stack_size_);
#endif
}

void Fiber::finish() {
  finished_ = true;
#if CUDA_EMU_ASAN
  // nullptr: this fiber's fake stack (stack-use-after-return detection) is released.
  __sanitizer_start_switch_fiber(nullptr, scheduler_stack_bottom_, scheduler_stack_size_);
#endif
#if CUDA_EMU_TSAN
  __tsan_switch_to_fiber(tsan_scheduler_, __tsan_switch_to_fiber_no_sync);
#endif
  cuda_emu_switch_stacks(&sp_, scheduler_sp_);
  std::abort();  // a finished fiber is never resumed
}

void Fiber::trampoline() {
  Fiber* f = starting_fiber;
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &f->scheduler_stack_bottom_,
                                  &f->scheduler_stack_size_);
#endif
  f->entry_(f->arg_);
  f->finish();
}

}  // namespace cuda_emu
