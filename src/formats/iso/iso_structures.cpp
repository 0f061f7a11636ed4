#include "formats/iso/iso_structures.h"

namespace vdisk::iso {
namespace {

// ECMA-167 1/7.2.6: CRC-ITU-T with generator 0x1021, one table entry per leading byte.
constexpr std::array<std::uint16_t, 256> MakeCrcTable() {
  std::array<std::uint16_t, 256> table{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = static_cast<std::uint16_t>(crc);
  }
  return table;
}
constexpr std::array<std::uint16_t, 256> kCrcTable = MakeCrcTable();

}  // namespace

std::uint16_t UdfCrc(std::span<const std::byte> bytes) {
  std::uint16_t crc = 0;
  for (const std::byte b : bytes) {
    const auto index = static_cast<std::uint8_t>((crc >> 8) ^ std::to_integer<std::uint8_t>(b));
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrcTable[index]);
  }
  return crc;
}

std::uint8_t UdfTagChecksum(std::span<const std::byte, 16> tag) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < tag.size(); ++i) {
    if (i != offsetof(UdfDescriptorTag, checksum)) sum += std::to_integer<unsigned>(tag[i]);
  }
  return static_cast<std::uint8_t>(sum);
}

}  // namespace vdisk::iso
