// cnnkern.tuning.isa_choices() reads the CPU ISA selector through this op. Its schema lives
// here rather than in csrc/cnnkern.cpp because it exists with the CPU backend only: the CUDA
// emulator compiles cnnkern.cpp into a library of its own, without csrc/cpu.
#include <torch/library.h>

#include "cpu/common/isa_calibration.h"

TORCH_LIBRARY_FRAGMENT(cnnkern, m) {
  // JSON: per family the ISA it runs now, how that was decided (forced / only / rule /
  // measured) and the measured seconds per candidate; the CPU key, build id and cache file.
  m.def("cpu_isa_report() -> str", &cnnkern::cpu::isa_report_json);
}
