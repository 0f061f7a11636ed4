#include "formats/vhdx/vhdx_format.h"

#include <cstring>

namespace vdisk::vhdx {
namespace {

constexpr std::uint32_t kCastagnoliReflected = 0x82F63B78;

// Slicing-by-8 tables: kTables[0] is the classic byte table; kTables[k][b] is the CRC of byte b
// followed by k zero bytes, so eight bytes fold in with eight lookups.
struct Crc32cTables {
  std::uint32_t t[8][256];
};

constexpr Crc32cTables MakeTables() {
  Crc32cTables tables{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t crc = b;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ ((crc & 1) ? kCastagnoliReflected : 0);
    tables.t[0][b] = crc;
  }
  for (std::uint32_t b = 0; b < 256; ++b) {
    for (int k = 1; k < 8; ++k) {
      const std::uint32_t prev = tables.t[k - 1][b];
      tables.t[k][b] = (prev >> 8) ^ tables.t[0][prev & 0xFF];
    }
  }
  return tables;
}

constexpr Crc32cTables kTables = MakeTables();

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::uint32_t Crc32cUpdate(std::uint32_t crc, std::span<const std::byte> bytes) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
  std::size_t n = bytes.size();
  while (n >= 8) {
    const std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) |
                                    (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24));
    crc = kTables.t[7][lo & 0xFF] ^ kTables.t[6][(lo >> 8) & 0xFF] ^
          kTables.t[5][(lo >> 16) & 0xFF] ^ kTables.t[4][lo >> 24] ^ kTables.t[3][p[4]] ^
          kTables.t[2][p[5]] ^ kTables.t[1][p[6]] ^ kTables.t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ kTables.t[0][(crc ^ *p++) & 0xFF];
  return crc;
}

std::uint32_t Crc32c(std::span<const std::byte> bytes) { return ~Crc32cUpdate(kCrc32cInit, bytes); }

std::uint32_t Crc32cWithZeroedField(std::span<const std::byte> bytes, std::size_t checksum_offset) {
  static constexpr std::array<std::byte, 4> kZeros{};
  std::uint32_t crc = Crc32cUpdate(kCrc32cInit, bytes.first(checksum_offset));
  crc = Crc32cUpdate(crc, kZeros);
  crc = Crc32cUpdate(crc, bytes.subspan(checksum_offset + 4));
  return ~crc;
}

std::optional<Guid> ParseGuid(std::string_view text) {
  if (text.size() == 38 && text.front() == '{' && text.back() == '}') text = text.substr(1, 36);
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' ||
      text[23] != '-') {
    return std::nullopt;
  }
  std::array<std::uint8_t, 16> be{};  // the 32 hex digits in text order
  std::size_t nibble = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) continue;
    const int v = HexValue(text[i]);
    if (v < 0) return std::nullopt;
    be[nibble / 2] = static_cast<std::uint8_t>(be[nibble / 2] | (v << (nibble % 2 ? 0 : 4)));
    ++nibble;
  }
  // Data1..Data3 are little-endian in memory, Data4 is bytes in order.
  Guid g;
  const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) g.bytes[i] = be[order[i]];
  return g;
}

std::string DescribeOffset(std::uint64_t offset) {
  if (offset != 0 && offset % kMiB == 0) return std::to_string(offset / kMiB) + " MiB";
  if (offset != 0 && offset % kKiB == 0) return std::to_string(offset / kKiB) + " KiB";
  return "offset " + std::to_string(offset);
}

std::string MetadataItemName(const Guid& id) {
  if (id == kFileParametersGuid) return "File Parameters";
  if (id == kVirtualDiskSizeGuid) return "Virtual Disk Size";
  if (id == kPage83DataGuid) return "Page 83 Data";
  if (id == kLogicalSectorSizeGuid) return "Logical Sector Size";
  if (id == kPhysicalSectorSizeGuid) return "Physical Sector Size";
  if (id == kParentLocatorGuid) return "Parent Locator";
  return id.ToString();
}

BatGeometry BatGeometry::Compute(std::uint64_t virtual_size, std::uint32_t block_size,
                                 std::uint32_t logical_sector_size, bool has_parent) {
  BatGeometry g;
  g.virtual_size = virtual_size;
  g.block_size = block_size;
  g.logical_sector_size = logical_sector_size;
  g.has_parent = has_parent;
  // §2.4: chunk ratio = 2^23 * logical sector size / block size (>= 16 for valid values).
  g.chunk_ratio = kSectorsPerBitmapBlock * logical_sector_size / block_size;
  g.payload_blocks = (virtual_size + block_size - 1) / block_size;
  g.bitmap_blocks = (g.payload_blocks + g.chunk_ratio - 1) / g.chunk_ratio;
  // §2.5: a dynamic or fixed table ends with the last payload entry; a differencing table with
  // the sector bitmap entry of the last chunk.
  g.entry_count = has_parent ? g.bitmap_blocks * (g.chunk_ratio + 1)
                             : g.payload_blocks + (g.payload_blocks - 1) / g.chunk_ratio;
  return g;
}

}  // namespace vdisk::vhdx
