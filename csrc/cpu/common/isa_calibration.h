#pragma once
// The per-machine measurement behind cpu_isa.h's "measured" choice: each family with more
// than one candidate ISA on this CPU runs its probe (a representative block of its own
// micro-kernel, isa_probes.cpp) once per candidate, interleaved, a few times, and takes the
// fastest median. The result is kept for the process and in a small JSON file per CPU model
// ($XDG_CACHE_HOME/cnnkern or ~/.cache/cnnkern, cpu_isa-<hash of the CPU model>.json, holding
// the CPU model and the library's build id: a file from another build or CPU is measured
// again and overwritten). A missing, corrupt or unwritable cache file is never an error.
// (Torch-free.)

#include <string>
#include <utility>
#include <vector>

#include "cpu/common/cpu_isa.h"

namespace cnnkern {
namespace cpu {

struct Calibration {
  struct Entry {
    Isa isa = Isa::generic;
    std::vector<std::pair<Isa, double>> seconds;  // median per candidate; empty: not measured
  };
  Entry entries[sizeof(kFamilies) / sizeof(kFamilies[0])];  // indexed by Family
  std::string source;  // "measured in this process" or "cache <path>"
  double ms = 0;       // wall time of the measurement (0 when read from the cache)
  double cpu_ms = 0;   // its CPU time (what it costs whatever the machine's load)
  std::string cache_path;
  std::string cache_note;  // "" or why the cache was not read / written
};

// The candidates calibration compares for `f` on this CPU, best first: {avx512, avx2} where
// the CPU has AVX-512 and `f` an AVX-512 variant, else the one variant it runs. With
// CNNKERN_ISA_CALIBRATION=emulated, a CPU without AVX-512 compares {avx512_emulated, avx2}
// instead: a test vehicle, so that the calibration and its cache run on every CI machine.
std::vector<Isa> calibration_candidates(Family f);

// Measured (or read) once per process, on first use.
const Calibration& calibration();

// One timed run of family `f`'s probe with `isa`'s variant, in seconds (isa_probes.cpp).
double probe_seconds(Family f, Isa isa);

// The calibration as JSON (cnnkern.tuning.isa_choices): per family the choice now (forced /
// only / rule / measured) and the measured figures, the cache file and the CPU key.
std::string isa_report_json();

// The cache key parts (exposed for the report and the tests).
std::string cpu_model_key();
std::string library_build_id();

}  // namespace cpu
}  // namespace cnnkern
