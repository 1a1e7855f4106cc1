#include "cpu/common/isa_calibration.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

namespace cnnkern {
namespace cpu {

namespace {

constexpr int kRounds = 5;  // interleaved repetitions per candidate; the median is kept

int index_of(Family f) { return static_cast<int>(f); }

// --- the cache key -------------------------------------------------------------------------

std::string read_file(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::string out(limit, '\0');
  in.read(&out[0], static_cast<std::streamsize>(limit));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string cpuinfo_field(const std::string& info, const char* name) {
  std::istringstream lines(info);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, std::strlen(name), name) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t b = line.find_first_not_of(" \t", colon + 1);
    return b == std::string::npos ? "" : line.substr(b);
  }
  return "";
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg == '/') return std::string(xdg) + "/cnnkern";
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return std::string(home) + "/.cache/cnnkern";
  return "";
}

// --- JSON (the subset the cache uses: objects, strings, numbers) ---------------------------

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

// Flattens a JSON document into {"a.b.c": scalar text}; false on anything malformed.
struct Flattener {
  std::string s;
  size_t i = 0;
  std::map<std::string, std::string> out;

  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool string(std::string& v) {
    ws();
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\') {
        if (++i >= s.size()) return false;
        if (s[i] == 'u') {  // only what quoted() writes: control characters
          if (i + 4 >= s.size()) return false;
          v += static_cast<char>(std::strtol(s.substr(i + 1, 4).c_str(), nullptr, 16));
          i += 4;
          continue;
        }
      }
      v += s[i];
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  }
  bool value(const std::string& path, int depth) {
    ws();
    if (i >= s.size() || depth > 8) return false;
    if (s[i] == '"') {
      std::string v;
      if (!string(v)) return false;
      out[path] = v;
      return true;
    }
    if (s[i] == '{') {
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') return ++i, true;
      for (;;) {
        std::string key;
        if (!string(key)) return false;
        ws();
        if (i >= s.size() || s[i++] != ':') return false;
        if (!value(path.empty() ? key : path + "." + key, depth + 1)) return false;
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == '}') return ++i, true;
        return false;
      }
    }
    const size_t b = i;
    while (i < s.size() && std::strchr("+-.0123456789eE", s[i]) != nullptr) ++i;
    if (i == b) return false;
    out[path] = s.substr(b, i - b);
    return true;
  }
  bool run() {
    if (!value("", 0)) return false;
    ws();
    return i == s.size();
  }
};

std::string entries_json(const Calibration& c, const char* indent) {
  std::string out;
  for (Family f : kFamilies) {
    const Calibration::Entry& e = c.entries[index_of(f)];
    if (e.seconds.empty()) continue;
    out += out.empty() ? "" : ",\n";
    out += std::string(indent) + quoted(family_name(f)) + ": {\"isa\": " + quoted(isa_name(e.isa)) +
           ", \"seconds\": {";
    for (size_t k = 0; k < e.seconds.size(); ++k)
      out += (k ? ", " : "") + quoted(isa_name(e.seconds[k].first)) + ": " +
             number(e.seconds[k].second);
    out += "}}";
  }
  return out;
}

// --- measuring, reading, writing -----------------------------------------------------------

double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

Calibration measure() {
  Calibration c;
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = thread_cpu_ms();
  std::vector<double> times[sizeof(kFamilies) / sizeof(kFamilies[0])][2];
  for (int round = -1; round < kRounds; ++round)  // round -1 warms up caches and clocks
    for (Family f : kFamilies) {
      const std::vector<Isa> cands = calibration_candidates(f);
      if (cands.size() < 2) continue;
      for (size_t k = 0; k < 2; ++k) {
        const double t = probe_seconds(f, cands[k]);
        if (round >= 0) times[index_of(f)][k].push_back(t);
      }
    }
  for (Family f : kFamilies) {
    const std::vector<Isa> cands = calibration_candidates(f);
    Calibration::Entry& e = c.entries[index_of(f)];
    e.isa = cands[0];
    if (cands.size() < 2) continue;
    double best = 0;
    for (size_t k = 0; k < 2; ++k) {
      std::vector<double>& t = times[index_of(f)][k];
      std::nth_element(t.begin(), t.begin() + kRounds / 2, t.end());
      const double median = t[kRounds / 2];
      e.seconds.emplace_back(cands[k], median);
      if (k == 0 || median < best) best = median, e.isa = cands[k];
    }
  }
  c.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
             .count();
  c.cpu_ms = thread_cpu_ms() - cpu_start;
  c.source = "measured in this process";
  return c;
}

// The cached calibration, if the file is well-formed, for this CPU and build, and names a
// candidate of each family that has several.
bool read_cache(const std::string& path, Calibration& c) {
  Flattener doc{read_file(path, 1 << 16)};
  if (doc.s.empty() || !doc.run()) return false;
  if (doc.out["cpu"] != cpu_model_key() || doc.out["build"] != library_build_id()) return false;
  for (Family f : kFamilies) {
    const std::vector<Isa> cands = calibration_candidates(f);
    Calibration::Entry& e = c.entries[index_of(f)];
    e.isa = cands[0];
    if (cands.size() < 2) continue;
    const std::string base = std::string("families.") + family_name(f);
    const std::string isa = doc.out[base + ".isa"];
    const auto named = std::find_if(cands.begin(), cands.end(),
                                    [&](Isa x) { return isa == isa_name(x); });
    if (named == cands.end()) return false;
    e.isa = *named;
    for (Isa x : cands) {
      const std::string text = doc.out[base + ".seconds." + isa_name(x)];
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !std::isfinite(v) || v <= 0) return false;
      e.seconds.emplace_back(x, v);
    }
  }
  c.source = "cache " + path;
  return true;
}

// Writes the file next to its final name and renames it over, so a reader never sees half.
std::string write_cache(const std::string& dir, const std::string& path, const Calibration& c) {
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) ::mkdir(dir.substr(0, slash).c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return "not written: cannot create " + tmp;
    out << "{\n  \"cpu\": " << quoted(cpu_model_key()) << ",\n  \"build\": "
        << quoted(library_build_id()) << ",\n  \"families\": {\n" << entries_json(c, "    ")
        << "\n  }\n}\n";
    if (!out.flush()) return "not written: cannot write " + tmp;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return "not written: cannot rename onto " + path;
  }
  return "";
}

Calibration load_or_measure() {
  const std::string dir = cache_dir();
  const std::string path =
      dir.empty() ? "" : dir + "/cpu_isa-" + [] {
        char buf[20];
        std::snprintf(buf, sizeof(buf), "%016llx",
                      static_cast<unsigned long long>(fnv1a(cpu_model_key())));
        return std::string(buf);
      }() + ".json";
  Calibration c;
  if (!path.empty() && read_cache(path, c)) {
    c.cache_path = path;
    return c;
  }
  c = measure();
  c.cache_path = path;
  c.cache_note = path.empty() ? "no cache directory (neither XDG_CACHE_HOME nor HOME is set)"
                              : write_cache(dir, path, c);
  return c;
}

}  // namespace

std::vector<Isa> calibration_candidates(Family f) {
  if (has_avx512_variant(f)) {
    if (cpu_supports(Isa::avx512)) return {Isa::avx512, Isa::avx2};
    const char* mode = std::getenv("CNNKERN_ISA_CALIBRATION");
    if (mode != nullptr && std::strcmp(mode, "emulated") == 0 &&
        cpu_supports(Isa::avx512_emulated))
      return {Isa::avx512_emulated, Isa::avx2};
  }
  const Isa best = best_isa();
  return {best == Isa::avx512 ? Isa::avx2 : best};
}

const Calibration& calibration() {
  static const Calibration c = load_or_measure();
  return c;
}

std::string cpu_model_key() {
  static const std::string key = [] {
    const std::string info = read_file("/proc/cpuinfo", 1 << 14);
    const std::string name = cpuinfo_field(info, "model name");
    if (name.empty()) return std::string("unknown cpu");
    return cpuinfo_field(info, "vendor_id") + " family " + cpuinfo_field(info, "cpu family") +
           " model " + cpuinfo_field(info, "model") + " stepping " +
           cpuinfo_field(info, "stepping") + ": " + name;
  }();
  return key;
}

// The size and modification time of the shared object holding this code: any rebuild
// changes them, and with them which kernels a cached choice was measured on.
std::string library_build_id() {
  static const std::string id = [] {
    Dl_info info{};
    struct stat st {};
    if (::dladdr(reinterpret_cast<void*>(&library_build_id), &info) == 0 ||
        info.dli_fname == nullptr || ::stat(info.dli_fname, &st) != 0)
      return std::string("unknown build");
    return std::to_string(static_cast<long long>(st.st_size)) + "-" +
           std::to_string(static_cast<long long>(st.st_mtime));
  }();
  return id;
}

std::string isa_report_json() {
  std::string fams;
  bool measured = false;
  for (Family f : kFamilies) {
    const IsaChoice ch = isa_choice(f);
    measured = measured || std::strcmp(ch.how, "measured") == 0;
    std::string cands, secs;
    for (Isa x : calibration_candidates(f))
      cands += (cands.empty() ? "" : ", ") + quoted(isa_name(x));
    for (const auto& s : ch.seconds)
      secs += (secs.empty() ? "" : ", ") + quoted(isa_name(s.first)) + ": " + number(s.second);
    fams += (fams.empty() ? "" : ",\n") + std::string("    ") + quoted(family_name(f)) +
            ": {\"isa\": " + quoted(isa_name(ch.isa)) + ", \"how\": " + quoted(ch.how) +
            ", \"candidates\": [" + cands + "], \"seconds\": {" + secs + "}}";
  }
  std::string out = "{\n  \"cpu\": " + quoted(cpu_model_key()) + ",\n  \"build\": " +
                    quoted(library_build_id()) + ",\n  \"rule\": " + quoted(isa_name(isa_rule()));
  if (measured) {
    const Calibration& c = calibration();
    out += ",\n  \"source\": " + quoted(c.source) + ",\n  \"calibration_ms\": " + number(c.ms) +
           ",\n  \"calibration_cpu_ms\": " + number(c.cpu_ms) +
           ",\n  \"cache\": " + quoted(c.cache_path) + ",\n  \"cache_note\": " +
           quoted(c.cache_note);
  }
  return out + ",\n  \"families\": {\n" + fams + "\n  }\n}\n";
}

}  // namespace cpu
}  // namespace cnnkern
