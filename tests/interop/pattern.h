// Deterministic pseudo-random bytes shared by the interop tests and the crash writer: a write is
// fully described by (offset, length, seed), so a journal of those three numbers is enough to
// rebuild what the disk must hold.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace vdisk_interop {

// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and every seed gives a distinct stream.
inline std::uint64_t SplitMix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Fills `out` with the stream of `seed`. Every 512-byte sector differs from every other one of
// the same write, so a sector written at the wrong place is caught.
inline void FillPattern(std::uint64_t seed, std::span<std::uint8_t> out) {
  std::uint64_t state = seed;
  std::size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    const std::uint64_t v = SplitMix64(state);
    std::memcpy(out.data() + i, &v, 8);
  }
  if (i < out.size()) {
    const std::uint64_t v = SplitMix64(state);
    std::memcpy(out.data() + i, &v, out.size() - i);
  }
}

}  // namespace vdisk_interop
