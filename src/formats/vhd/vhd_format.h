// VHD on-disk structures, after Microsoft's "Virtual Hard Disk Image Format Specification"
// (version 1.0, October 2006; "the spec" below). All multi-byte fields are big-endian.
//
// File layouts (spec "Overview of Virtual Hard Disk Image Types"):
//   fixed:        [data: current_size bytes][footer]
//   dynamic/diff: [footer copy][dynamic header][BAT][parent locator data][blocks...][footer]
// A block is a sector bitmap (one bit per 512-byte sector, MSB first, padded to a sector) followed
// by block_size bytes of data.
//
// Interop quirks (who writes what), as observed or documented:
// | creator        | creator app | size readers should use     | notes                            |
// |----------------|-------------|-----------------------------|----------------------------------|
// | Hyper-V/Windows| "win "      | current_size                | locator data space in bytes      |
// | Virtual PC     | "vpc "      | CHS geometry                | may write a 511-byte footer      |
// | qemu (default) | "qemu"      | CHS geometry (rounded up)   | sets whole bitmaps to 0xFF       |
// | qemu force_size| "qem2"      | current_size                |                                  |
// | Disk2vhd       | "d2v "      | current_size                |                                  |
// | XenServer      | "tap\0"     | current_size                |                                  |
// This implementation always uses current_size, and writes "win " so that other readers do too.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vdisk::vhd {

// A big-endian integer stored as bytes: alignment 1 and no padding, so structs built from these
// have exactly the on-disk layout on every compiler without packing pragmas.
template <typename T>
class BigEndian {
 public:
  T get() const noexcept {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>((v << 8) | bytes_[i]);
    return v;
  }
  void set(T v) noexcept {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      bytes_[sizeof(T) - 1 - i] = static_cast<std::uint8_t>(v >> (8 * i));
  }

 private:
  std::array<std::uint8_t, sizeof(T)> bytes_{};
};
using Be16 = BigEndian<std::uint16_t>;
using Be32 = BigEndian<std::uint32_t>;
using Be64 = BigEndian<std::uint64_t>;

constexpr std::uint32_t kSectorSize = 512;
// Payload blocks start their data on this boundary (this library's writer; readers accept any).
constexpr std::uint64_t kDataAlignment = 4096;
// Locator data longer than this is not a path; such locators are ignored.
constexpr std::uint32_t kMaxLocatorBytes = 64 * 1024;
constexpr std::uint32_t kBatEntriesPerSector = kSectorSize / 4;
constexpr std::size_t kFooterSize = 512;
// Virtual PC before 2004 wrote a footer without the last reserved byte.
constexpr std::size_t kOldFooterSize = 511;
constexpr std::size_t kDynamicHeaderSize = 1024;
constexpr std::uint32_t kUnallocated = 0xFFFFFFFF;  // BAT entry of a block not in the file
constexpr std::uint64_t kFixedDataOffset = ~std::uint64_t{0};
// 2040 GiB: the largest disk Windows and qemu accept (spec "Hard Disk Footer Format", Current Size
// and the 32-bit BAT sector numbers).
constexpr std::uint64_t kMaxDiskSize = std::uint64_t{2040} << 30;
constexpr std::uint32_t kDefaultBlockSize = 2u << 20;
constexpr std::uint32_t kSmallBlockSize = 512u << 10;  // Virtual Server's block size
// Accepted on open: any power of two in [kMinBlockSize, kMaxBlockSize].
constexpr std::uint32_t kMinBlockSize = 512;
constexpr std::uint32_t kMaxBlockSize = 256u << 20;

constexpr std::string_view kFooterCookie = "conectix";
constexpr std::string_view kDynamicHeaderCookie = "cxsparse";
// Spec "File Format Version" / "Header Version": major 1, minor 0.
constexpr std::uint32_t kVersion = 0x00010000;
constexpr std::uint32_t kFeatureReserved = 0x2;  // spec "Features": always set
// What this implementation writes as creator (spec "Creator Application/Version/Host OS").
constexpr std::string_view kCreatorApplication = "win ";
constexpr std::uint32_t kCreatorVersion = 0x000a0000;
constexpr std::string_view kCreatorHostOs = "Wi2k";

// Spec "Disk Type".
enum class DiskType : std::uint32_t { kNone = 0, kFixed = 2, kDynamic = 3, kDifferencing = 4 };

// Spec "Hard Disk Footer Format" (512 bytes, at the end of every file; dynamic and differencing
// files keep a copy at offset 0).
struct Footer {                             // offset
  std::array<char, 8> cookie;               //   0 "conectix"
  Be32 features;                            //   8 kFeatureReserved; bit 0: temporary disk
  Be32 file_format_version;                 //  12 kVersion
  Be64 data_offset;                         //  16 dynamic header offset; all ones if fixed
  Be32 time_stamp;                          //  24 seconds since 2000-01-01 00:00:00 UTC
  std::array<char, 4> creator_application;  //  28 e.g. "win ", "vpc ", "qemu"
  Be32 creator_version;                     //  32
  std::array<char, 4> creator_host_os;      //  36 "Wi2k" or "Mac "
  Be64 original_size;                       //  40 size at creation, bytes
  Be64 current_size;                        //  48 size now, bytes
  Be16 cylinders;                           //  56 "Disk Geometry": cylinders,
  std::uint8_t heads;                       //  58   heads,
  std::uint8_t sectors_per_track;           //  59   sectors per track
  Be32 disk_type;                           //  60 DiskType
  Be32 checksum;                            //  64 one's complement of the byte sum, field 0
  std::array<std::uint8_t, 16> unique_id;   //  68
  std::uint8_t saved_state;                 //  84 1: the disk is in a saved state
  std::array<std::uint8_t, 427> reserved;   //  85 zeros
};
static_assert(sizeof(Footer) == kFooterSize);
static_assert(offsetof(Footer, data_offset) == 16);
static_assert(offsetof(Footer, current_size) == 48);
static_assert(offsetof(Footer, disk_type) == 60);
static_assert(offsetof(Footer, checksum) == 64);
static_assert(offsetof(Footer, unique_id) == 68);
static_assert(offsetof(Footer, saved_state) == 84);

// Spec "Dynamic Disk Header Format", Parent Locator Entries (24 bytes each, 8 of them).
struct ParentLocatorEntry {
  Be32 platform_code;  // kPlatformW2ru, kPlatformW2ku, ... or 0 (unused)
  // The spec says "number of 512-byte sectors"; Windows writes the size in bytes (a multiple of
  // 512). Readers here use only the length and offset.
  Be32 platform_data_space;
  Be32 platform_data_length;  // bytes of locator data
  Be32 reserved;
  Be64 platform_data_offset;  // absolute file offset of the locator data
};
static_assert(sizeof(ParentLocatorEntry) == 24);

// Platform codes (spec "Parent Locator Entries").
constexpr std::uint32_t kPlatformW2ru = 0x57327275;  // "W2ru": relative path, UTF-16LE
constexpr std::uint32_t kPlatformW2ku = 0x57326B75;  // "W2ku": absolute path, UTF-16LE

// Spec "Dynamic Disk Header Format" (1024 bytes, at the footer's data_offset).
struct DynamicHeader {                                // offset
  std::array<char, 8> cookie;                         //    0 "cxsparse"
  Be64 data_offset;                                   //    8 unused, all ones
  Be64 table_offset;                                  //   16 absolute file offset of the BAT
  Be32 header_version;                                //   24 kVersion
  Be32 max_table_entries;                             //   28 BAT entries (blocks)
  Be32 block_size;                                    //   32 data bytes per block, no bitmap
  Be32 checksum;                                      //   36 as the footer's, over 1024 bytes
  std::array<std::uint8_t, 16> parent_unique_id;      //   40 the parent footer's unique id
  Be32 parent_time_stamp;                             //   56 the parent footer's time stamp
  Be32 reserved1;                                     //   60
  std::array<std::uint8_t, 512> parent_unicode_name;  //   64 UTF-16BE, NUL-terminated if short
  std::array<ParentLocatorEntry, 8> parent_locators;  //  576
  std::array<std::uint8_t, 256> reserved2;            //  768 zeros
};
static_assert(sizeof(DynamicHeader) == kDynamicHeaderSize);
static_assert(offsetof(DynamicHeader, checksum) == 36);
static_assert(offsetof(DynamicHeader, parent_unique_id) == 40);
static_assert(offsetof(DynamicHeader, parent_unicode_name) == 64);
static_assert(offsetof(DynamicHeader, parent_locators) == 576);

constexpr std::size_t kFooterChecksumOffset = offsetof(Footer, checksum);
constexpr std::size_t kDynamicHeaderChecksumOffset = offsetof(DynamicHeader, checksum);

// Spec "Checksum": one's complement of the sum of all bytes, the 4 checksum bytes taken as 0.
std::uint32_t ComputeChecksum(std::span<const std::byte> bytes, std::size_t checksum_offset);

// Spec appendix "CHS Calculation", capped at 65535 cylinders, 16 heads, 255 sectors per track.
struct Geometry {
  std::uint16_t cylinders = 0;
  std::uint8_t heads = 0;
  std::uint8_t sectors_per_track = 0;
  friend bool operator==(const Geometry&, const Geometry&) = default;
};
Geometry ComputeGeometry(std::uint64_t disk_size);

// Seconds since 2000-01-01 00:00:00 UTC, the VHD epoch (spec "Time Stamp").
std::uint32_t VhdTimestampNow();

// Bytes of the sector bitmap in front of each block: one bit per sector, padded to a sector.
constexpr std::uint32_t BitmapBytes(std::uint32_t block_size) {
  const std::uint32_t sectors = block_size / kSectorSize;
  const std::uint32_t bytes = (sectors + 7) / 8;
  return (bytes + kSectorSize - 1) / kSectorSize * kSectorSize;
}

constexpr bool IsPowerOfTwo(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// UTF-16 (little- or big-endian code units) <-> UTF-8. Decoding stops at the first NUL unit;
// unpaired surrogates become U+FFFD. Encoding replaces invalid UTF-8 with U+FFFD.
std::string Utf16ToUtf8(std::span<const std::byte> utf16, bool big_endian);
std::vector<std::byte> Utf8ToUtf16(std::string_view utf8, bool big_endian);

}  // namespace vdisk::vhd
