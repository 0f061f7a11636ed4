#include "formats/vhd/vhd_format.h"

#include <algorithm>
#include <chrono>

#include "base/unicode.h"

namespace vdisk::vhd {
namespace {

// 2000-01-01 00:00:00 UTC in Unix time.
constexpr std::int64_t kVhdEpochUnixSeconds = 946684800;

std::uint16_t LoadUnit(std::span<const std::byte> bytes, std::size_t i, bool big_endian) {
  const auto a = std::to_integer<std::uint16_t>(bytes[2 * i]);
  const auto b = std::to_integer<std::uint16_t>(bytes[2 * i + 1]);
  return big_endian ? static_cast<std::uint16_t>((a << 8) | b)
                    : static_cast<std::uint16_t>((b << 8) | a);
}

void AppendUnit(std::vector<std::byte>& out, std::uint16_t unit, bool big_endian) {
  const auto hi = static_cast<std::byte>(unit >> 8);
  const auto lo = static_cast<std::byte>(unit & 0xFF);
  out.push_back(big_endian ? hi : lo);
  out.push_back(big_endian ? lo : hi);
}

}  // namespace

std::uint32_t ComputeChecksum(std::span<const std::byte> bytes, std::size_t checksum_offset) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i >= checksum_offset && i < checksum_offset + 4) continue;
    sum += std::to_integer<std::uint32_t>(bytes[i]);
  }
  return ~sum;
}

Geometry ComputeGeometry(std::uint64_t disk_size) {
  // The spec's algorithm, step by step: try 17 sectors per track with 4..16 heads, then 31, then
  // 63 with 16 heads; past 65535*16*63 sectors use 255 sectors per track.
  constexpr std::uint64_t kMaxSectors = 65535ull * 16 * 255;
  std::uint64_t total = std::min<std::uint64_t>(disk_size / kSectorSize, kMaxSectors);
  std::uint64_t sectors_per_track = 0;
  std::uint64_t heads = 0;
  std::uint64_t cylinder_times_heads = 0;
  if (total >= 65535ull * 16 * 63) {
    sectors_per_track = 255;
    heads = 16;
    cylinder_times_heads = total / sectors_per_track;
  } else {
    sectors_per_track = 17;
    cylinder_times_heads = total / sectors_per_track;
    heads = std::max<std::uint64_t>((cylinder_times_heads + 1023) / 1024, 4);
    if (cylinder_times_heads >= heads * 1024 || heads > 16) {
      sectors_per_track = 31;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
    if (cylinder_times_heads >= heads * 1024) {
      sectors_per_track = 63;
      heads = 16;
      cylinder_times_heads = total / sectors_per_track;
    }
  }
  Geometry g;
  g.cylinders = static_cast<std::uint16_t>(cylinder_times_heads / heads);
  g.heads = static_cast<std::uint8_t>(heads);
  g.sectors_per_track = static_cast<std::uint8_t>(sectors_per_track);
  return g;
}

std::uint32_t VhdTimestampNow() {
  const auto unix_seconds = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  const std::int64_t since_2000 = unix_seconds - kVhdEpochUnixSeconds;
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(since_2000, 0, 0xFFFFFFFF));
}

std::string Utf16ToUtf8(std::span<const std::byte> utf16, bool big_endian) {
  std::string out;
  const std::size_t units = utf16.size() / 2;
  for (std::size_t i = 0; i < units; ++i) {
    const std::uint16_t u = LoadUnit(utf16, i, big_endian);
    if (u == 0) break;
    if (u >= 0xD800 && u <= 0xDBFF && i + 1 < units) {
      const std::uint16_t low = LoadUnit(utf16, i + 1, big_endian);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        AppendUtf8(out, 0x10000 + ((char32_t{u} - 0xD800) << 10) + (low - 0xDC00));
        ++i;
        continue;
      }
    }
    AppendUtf8(out, (u >= 0xD800 && u <= 0xDFFF) ? kReplacementCharacter : char32_t{u});
  }
  return out;
}

std::vector<std::byte> Utf8ToUtf16(std::string_view utf8, bool big_endian) {
  std::vector<std::byte> out;
  out.reserve(utf8.size() * 2);
  for (std::size_t i = 0; i < utf8.size();) {
    const char32_t c = NextCodePoint(utf8, i);
    if (c >= 0x10000) {
      AppendUnit(out, static_cast<std::uint16_t>(0xD800 + ((c - 0x10000) >> 10)), big_endian);
      AppendUnit(out, static_cast<std::uint16_t>(0xDC00 + ((c - 0x10000) & 0x3FF)), big_endian);
    } else {
      AppendUnit(out, static_cast<std::uint16_t>(c), big_endian);
    }
  }
  return out;
}

}  // namespace vdisk::vhd
