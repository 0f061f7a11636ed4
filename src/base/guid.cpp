#include "base/guid.h"

#include <cstdio>
#include <random>

namespace vdisk {

Guid Guid::Random() {
  static thread_local std::random_device device;
  static thread_local std::mt19937_64 engine(
      (static_cast<std::uint64_t>(device()) << 32) ^ device());
  Guid g;
  for (std::size_t i = 0; i < 16; i += 8) {
    std::uint64_t v = engine();
    for (std::size_t j = 0; j < 8; ++j) g.bytes[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
  }
  g.bytes[7] = static_cast<std::uint8_t>((g.bytes[7] & 0x0F) | 0x40);  // version 4 (Data3 high nibble)
  g.bytes[8] = static_cast<std::uint8_t>((g.bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  return g;
}

std::string Guid::ToString() const {
  const auto& b = bytes;
  char text[40];
  std::snprintf(text, sizeof text,
                "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}", b[3],
                b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return text;
}

}  // namespace vdisk
