// The write sequence of the crash writer, shared with the test that checks its results: the
// i-th write of a seed is the same in both processes (same binary, same standard library), so
// the test knows the write that may have been in flight when the writer was killed.
#pragma once

#include <cstdint>
#include <random>

#include "pattern.h"

namespace vdisk_interop {

struct CrashWrite {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t seed = 0;
};

// 4 KiB .. 256 KiB writes, 4 KiB aligned (so that libvhdi can read differencing results), at
// random offsets of a disk of `disk_size` bytes; a third of them straddle a 2 MiB boundary.
class CrashPlan {
 public:
  static constexpr std::uint32_t kAlign = 4096;
  static constexpr std::uint32_t kMaxLength = 256 << 10;
  static constexpr std::uint64_t kBlock = 2 << 20;

  CrashPlan(std::uint64_t seed, std::uint64_t disk_size) : rng_(seed), disk_size_(disk_size) {}

  CrashWrite Next() {
    CrashWrite w;
    w.seed = rng_();
    const std::uint64_t units =
        std::uniform_int_distribution<std::uint64_t>(1, kMaxLength / kAlign)(rng_);
    w.length = static_cast<std::uint32_t>(units * kAlign);
    const std::uint64_t blocks = disk_size_ / kBlock;
    if (count_++ % 3 == 0 && units >= 2 && blocks >= 2) {
      const std::uint64_t k = std::uniform_int_distribution<std::uint64_t>(1, blocks - 1)(rng_);
      w.offset = k * kBlock -
                 std::uniform_int_distribution<std::uint64_t>(1, units - 1)(rng_) * kAlign;
    } else {
      const std::uint64_t last = (disk_size_ - w.length) / kAlign;
      w.offset = std::uniform_int_distribution<std::uint64_t>(0, last)(rng_) * kAlign;
    }
    return w;
  }

 private:
  std::mt19937_64 rng_;
  std::uint64_t disk_size_;
  std::uint64_t count_ = 0;
};

}  // namespace vdisk_interop
