#include "base/bytes.h"

#include <cstdint>

namespace vdisk {

bool AllZero(std::span<const std::byte> bytes) {
  // 64 bytes a step: this runs over every byte the mirror copies and compaction scans.
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  const std::byte* p = bytes.data();
  for (; i + 64 <= n; i += 64) {
    std::uint64_t words[8];
    std::memcpy(words, p + i, 64);
    if ((words[0] | words[1] | words[2] | words[3] | words[4] | words[5] | words[6] | words[7]) !=
        0) {
      return false;
    }
  }
  for (; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

}  // namespace vdisk
