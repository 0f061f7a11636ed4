// Random write plans for the interop tests: sector- (or 4 KiB-) aligned offsets and lengths, a
// share of them straddling block boundaries, each carrying the seed of its pattern.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pattern.h"

namespace vdisk_interop {

struct PlannedWrite {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t seed = 0;
};

struct WritePlanSpec {
  std::uint64_t disk_size = 0;
  int count = 24;
  std::uint32_t align = 512;          // offsets and lengths are multiples of this
  std::uint32_t max_length = 512 << 10;
  std::uint64_t boundary = 2 << 20;   // every third write straddles a multiple of this
};

// The seed of a test: a hash of its name, or VIRTDISK_INTEROP_SEED when set, so that a failure
// can be replayed with the same numbers.
inline std::uint64_t SeedFor(std::string_view test_name) {
  if (const char* env = std::getenv("VIRTDISK_INTEROP_SEED"); env != nullptr && *env != 0)
    return std::strtoull(env, nullptr, 0);
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char c : test_name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

inline std::vector<PlannedWrite> PlanWrites(const WritePlanSpec& spec, std::mt19937_64& rng) {
  std::vector<PlannedWrite> plan;
  const std::uint64_t align = spec.align;
  const std::uint64_t max_units = std::max<std::uint64_t>(
      1, std::min<std::uint64_t>(spec.max_length, spec.disk_size) / align);
  for (int i = 0; i < spec.count; ++i) {
    PlannedWrite w;
    w.seed = rng();
    const std::uint64_t units = std::uniform_int_distribution<std::uint64_t>(1, max_units)(rng);
    w.length = static_cast<std::uint32_t>(units * align);
    const std::uint64_t boundaries = spec.disk_size / spec.boundary;
    if (i % 3 == 0 && units >= 2 && boundaries >= 1 &&
        boundaries * spec.boundary + align <= spec.disk_size) {
      // Straddle boundary k: start between 1 and units-1 alignment units before it.
      const std::uint64_t k = std::uniform_int_distribution<std::uint64_t>(1, boundaries)(rng);
      const std::uint64_t before =
          std::uniform_int_distribution<std::uint64_t>(1, units - 1)(rng) * align;
      w.offset = k * spec.boundary - before;
    } else {
      const std::uint64_t last = (spec.disk_size - w.length) / align;
      w.offset = std::uniform_int_distribution<std::uint64_t>(0, last)(rng) * align;
    }
    if (w.offset + w.length > spec.disk_size) w.offset = (spec.disk_size - w.length) / align * align;
    plan.push_back(w);
  }
  return plan;
}

inline std::vector<std::uint8_t> PatternOf(const PlannedWrite& w) {
  std::vector<std::uint8_t> data(w.length);
  FillPattern(w.seed, data);
  return data;
}

// Applies `w` to a model of the disk.
inline void Apply(std::vector<std::uint8_t>& model, const PlannedWrite& w) {
  FillPattern(w.seed, std::span(model).subspan(static_cast<std::size_t>(w.offset), w.length));
}

inline std::string Describe(const PlannedWrite& w) {
  return "write of " + std::to_string(w.length) + " bytes at " + std::to_string(w.offset) +
         " (seed " + std::to_string(w.seed) + ")";
}

}  // namespace vdisk_interop
