// VHDX on-disk structures, after Microsoft's "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format"
// ("the spec" below; section numbers are the spec's). All multi-byte fields are little-endian.
//
// File layout (§2.1): a 1 MiB header section, then 1 MiB aligned, non-overlapping objects in any
// order: the log, the BAT region, the metadata region, payload blocks and sector bitmap blocks.
//   0       file type identifier "vhdxfile" (§2.2.1)
//   64 KiB  header 1, 128 KiB header 2 (§2.2.2): the valid one with the higher sequence number
//   192 KiB region table 1, 256 KiB region table 2 (§2.2.3)
// What this implementation creates (vhdx_create.cpp), as Windows and qemu lay files out:
//   1 MiB log (1 MiB) | 2 MiB metadata region (1 MiB) | 3 MiB BAT (rounded up to 1 MiB) | blocks
//
// Interop quirks (who writes what), as observed or documented:
// | creator         | notes                                                                      |
// |-----------------|----------------------------------------------------------------------------|
// | Windows/Hyper-V | 32 MiB blocks (dynamic), LeaveBlocksAllocated on fixed files; replays and  |
// |                 | clears the log on every open                                               |
// | qemu 7.2        | 8/16/32 MiB blocks by size; `block_state_zero=on` (its default) writes     |
// |                 | ZERO BAT entries even in "fixed" files, which then grow on first write;    |
// |                 | handles 512-byte logical sectors only (refuses 4096 with ENOTSUP); cannot  |
// |                 | open differencing files; replays a dirty log only on read-write open; its  |
// |                 | read-only open (`qemu-img check` without -r) refuses such a file           |
// | libvhdi         | reads everything including differencing chains; never writes; parses       |
// |                 | parent_linkage only in the spec's lower case form ("{83ed0ec3-...}")       |
// This implementation accepts all of the above and writes what Windows writes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/guid.h"
#include "formats/image.h"

namespace vdisk::vhdx {

// A little-endian integer stored as bytes: alignment 1 and no padding, so structs built from
// these have exactly the on-disk layout on every compiler without packing pragmas.
template <typename T>
class LittleEndian {
 public:
  T get() const noexcept {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (T{bytes_[i]} << (8 * i)));
    return v;
  }
  void set(T v) noexcept {
    for (std::size_t i = 0; i < sizeof(T); ++i) bytes_[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }

 private:
  std::array<std::uint8_t, sizeof(T)> bytes_{};
};
using Le16 = LittleEndian<std::uint16_t>;
using Le32 = LittleEndian<std::uint32_t>;
using Le64 = LittleEndian<std::uint64_t>;

// Guid has the on-disk (Windows memory) layout, so it can be a struct member directly.
static_assert(sizeof(Guid) == 16 && alignof(Guid) == 1);

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kTiB = kMiB * kMiB;

// §2.2: the header section and what it holds.
constexpr std::uint64_t kHeaderSectionSize = kMiB;
constexpr std::uint64_t kHeader1Offset = 64 * kKiB;
constexpr std::uint64_t kHeader2Offset = 128 * kKiB;
constexpr std::uint64_t kRegionTable1Offset = 192 * kKiB;
constexpr std::uint64_t kRegionTable2Offset = 256 * kKiB;
constexpr std::uint64_t kHeaderOffsets[2] = {kHeader1Offset, kHeader2Offset};
constexpr std::uint64_t kRegionTableOffsets[2] = {kRegionTable1Offset, kRegionTable2Offset};
constexpr std::size_t kHeaderSize = 4096;            // §2.2.2, CRC over all of it
constexpr std::size_t kRegionTableSize = 64 * 1024;  // §2.2.3, CRC over all of it
constexpr std::uint32_t kMaxRegionEntries = 2047;    // §2.2.3.1
// No VHDX file ends further out than this: 64 TiB of blocks plus their tables, with room to spare.
constexpr std::uint64_t kMaxFileEnd = 128 * kTiB;
// Every region, the log and every block are 1 MiB aligned (§2.1, §2.2.3.2).
constexpr std::uint64_t kAlignment = kMiB;

// §2.3: the log works in 4 KiB sectors.
constexpr std::size_t kLogSectorSize = 4096;
constexpr std::uint32_t kDefaultLogSize = kMiB;

// §2.6: the metadata region starts with a 64 KiB table; items lie at >= 64 KiB.
constexpr std::size_t kMetadataTableSize = 64 * 1024;
constexpr std::uint32_t kMaxMetadataEntries = 2047;      // §2.6.1.1
constexpr std::uint32_t kMaxUserMetadataEntries = 1024;  // §2.6.1.2 IsUser
constexpr std::uint32_t kMaxMetadataItemLength = kMiB;   // §2.6.1.2 Length
constexpr std::uint32_t kDefaultMetadataRegionSize = kMiB;

// §2.6.2.1 and §2.6.2.2.
constexpr std::uint32_t kMinBlockSize = kMiB;
constexpr std::uint32_t kMaxBlockSize = 256 * kMiB;
constexpr std::uint32_t kDefaultBlockSize = 32 * kMiB;  // what Windows creates
constexpr std::uint64_t kMaxVirtualSize = 64 * kTiB;

// §2.4: a sector bitmap block is 1 MiB and describes 2^23 logical sectors (a "chunk").
constexpr std::uint64_t kSectorBitmapBlockSize = kMiB;
constexpr std::uint64_t kSectorsPerBitmapBlock = std::uint64_t{1} << 23;

// Signatures, as the little-endian integers the spec gives.
constexpr std::uint64_t kFileSignature = 0x656C696678646876;      // "vhdxfile" (§2.2.1)
constexpr std::uint32_t kHeaderSignature = 0x64616568;            // "head" (§2.2.2)
constexpr std::uint32_t kRegionTableSignature = 0x69676572;       // "regi" (§2.2.3.1)
constexpr std::uint32_t kLogEntrySignature = 0x65676F6C;          // "loge" (§2.3.1.1)
constexpr std::uint32_t kZeroDescriptorSignature = 0x6F72657A;    // "zero" (§2.3.1.2)
constexpr std::uint32_t kDataDescriptorSignature = 0x63736564;    // "desc" (§2.3.1.3)
constexpr std::uint32_t kDataSectorSignature = 0x61746164;        // "data" (§2.3.1.4)
constexpr std::uint64_t kMetadataSignature = 0x617461646174656D;  // "metadata" (§2.6.1.1)
constexpr std::string_view kFileSignatureText = "vhdxfile";

// §2.2.2: the only versions this implementation (and the spec) knows.
constexpr std::uint16_t kVersion = 1;
constexpr std::uint16_t kLogVersion = 0;

// A GUID from its textual parts: MakeGuid(0x2DC27766, 0xF623, 0x4200, {0x9D, 0x64, ...}) is
// {2DC27766-F623-4200-9D64-...}.
constexpr Guid MakeGuid(std::uint32_t d1, std::uint16_t d2, std::uint16_t d3,
                        std::array<std::uint8_t, 8> d4) {
  Guid g;
  for (int i = 0; i < 4; ++i) g.bytes[i] = static_cast<std::uint8_t>(d1 >> (8 * i));
  for (int i = 0; i < 2; ++i) g.bytes[4 + i] = static_cast<std::uint8_t>(d2 >> (8 * i));
  for (int i = 0; i < 2; ++i) g.bytes[6 + i] = static_cast<std::uint8_t>(d3 >> (8 * i));
  for (int i = 0; i < 8; ++i) g.bytes[8 + i] = d4[i];
  return g;
}

// §2.2.3.2 Known regions (both required).
constexpr Guid kBatRegionGuid =
    MakeGuid(0x2DC27766, 0xF623, 0x4200, {0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08});
constexpr Guid kMetadataRegionGuid =
    MakeGuid(0x8B7CA206, 0x4790, 0x4B9A, {0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E});
// §2.6.2 Known metadata items.
constexpr Guid kFileParametersGuid =
    MakeGuid(0xCAA16737, 0xFA36, 0x4D43, {0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B});
constexpr Guid kVirtualDiskSizeGuid =
    MakeGuid(0x2FA54224, 0xCD1B, 0x4876, {0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8});
// "Virtual Disk ID" (§2.6.2.3), the SCSI page 83 identity of the disk.
constexpr Guid kPage83DataGuid =
    MakeGuid(0xBECA12AB, 0xB2E6, 0x4523, {0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46});
constexpr Guid kLogicalSectorSizeGuid =
    MakeGuid(0x8141BF1D, 0xA96F, 0x4709, {0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F});
constexpr Guid kPhysicalSectorSizeGuid =
    MakeGuid(0xCDA348C7, 0x445D, 0x4471, {0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56});
constexpr Guid kParentLocatorGuid =
    MakeGuid(0xA8D35F2D, 0xB30B, 0x454D, {0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C});
// §2.6.2.6.3 The VHDX parent locator type.
constexpr Guid kVhdxParentLocatorType =
    MakeGuid(0xB04AEFB7, 0xD19E, 0x4A81, {0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13});

// §2.2.1 File Type Identifier (the first 64 KiB hold this and reserved space).
struct FileIdentifier {
  Le64 signature;                         //   0 kFileSignature
  std::array<std::uint8_t, 512> creator;  //   8 UTF-16LE, optional, diagnostic only
};
static_assert(sizeof(FileIdentifier) == 520);

// §2.2.2 Headers (4 KiB each, at 64 KiB and 128 KiB).
struct Header {                             // offset
  Le32 signature;                           //    0 kHeaderSignature
  Le32 checksum;                            //    4 CRC-32C over 4 KiB, this field zero
  Le64 sequence_number;                     //    8 the valid header with the higher one is current
  Guid file_write_guid;                     //   16 changes before the first write of a session
  Guid data_write_guid;                     //   32 changes before the first user-visible change
  Guid log_guid;                            //   48 zero: the log is empty
  Le16 log_version;                         //   64 kLogVersion
  Le16 version;                             //   66 kVersion
  Le32 log_length;                          //   68 bytes, multiple of 1 MiB
  Le64 log_offset;                          //   72 bytes, multiple of 1 MiB
  std::array<std::uint8_t, 4016> reserved;  //   80 zeros
};
static_assert(sizeof(Header) == kHeaderSize);
static_assert(offsetof(Header, checksum) == 4);
static_assert(offsetof(Header, log_guid) == 48);
static_assert(offsetof(Header, log_offset) == 72);

// §2.2.3.1 Region Table Header, followed by entries; the table is 64 KiB.
struct RegionTableHeader {
  Le32 signature;    //  0 kRegionTableSignature
  Le32 checksum;     //  4 CRC-32C over 64 KiB, this field zero
  Le32 entry_count;  //  8 <= kMaxRegionEntries
  Le32 reserved;     // 12
};
static_assert(sizeof(RegionTableHeader) == 16);

// §2.2.3.2 Region Table Entry.
struct RegionTableEntry {
  Guid guid;         //  0
  Le64 file_offset;  // 16 multiple of 1 MiB, >= 1 MiB
  Le32 length;       // 24 multiple of 1 MiB
  Le32 required;     // 28 bit 0: refuse to open if this region is not understood
};
static_assert(sizeof(RegionTableEntry) == 32);

// §2.3.1.1 Entry Header, at the start of a log entry's first descriptor sector.
struct LogEntryHeader {
  Le32 signature;            //  0 kLogEntrySignature
  Le32 checksum;             //  4 CRC-32C over entry_length bytes, this field zero
  Le32 entry_length;         //  8 multiple of 4 KiB
  Le32 tail;                 // 12 log offset of the first entry of the sequence ending here
  Le64 sequence_number;      // 16 > 0, +1 per entry
  Le32 descriptor_count;     // 24
  Le32 reserved;             // 28
  Guid log_guid;             // 32 must equal the header's LogGuid
  Le64 flushed_file_offset;  // 48 the file is at least this long (multiple of 1 MiB)
  Le64 last_file_offset;     // 56 every structure fits below this (multiple of 1 MiB)
};
static_assert(sizeof(LogEntryHeader) == 64);

// §2.3.1.2 Zero Descriptor.
struct LogZeroDescriptor {
  Le32 signature;        //  0 kZeroDescriptorSignature
  Le32 reserved;         //  4
  Le64 zero_length;      //  8 multiple of 4 KiB
  Le64 file_offset;      // 16 multiple of 4 KiB
  Le64 sequence_number;  // 24 the entry's
};
static_assert(sizeof(LogZeroDescriptor) == 32);

// §2.3.1.3 Data Descriptor; its 4 KiB update is in the matching data sector.
struct LogDataDescriptor {
  Le32 signature;        //  0 kDataDescriptorSignature
  Le32 trailing_bytes;   //  4 bytes 4092..4095 of the update
  Le64 leading_bytes;    //  8 bytes 0..7 of the update
  Le64 file_offset;      // 16 multiple of 4 KiB
  Le64 sequence_number;  // 24 the entry's
};
static_assert(sizeof(LogDataDescriptor) == 32);
constexpr std::size_t kLogDescriptorSize = 32;
// The first descriptor sector holds the 64-byte header and 126 descriptors, later ones 128.
constexpr std::size_t kDescriptorsInFirstSector = (kLogSectorSize - 64) / kLogDescriptorSize;

// §2.3.1.4 Data Sector.
struct LogDataSector {
  Le32 signature;                       //    0 kDataSectorSignature
  Le32 sequence_high;                   //    4 high 32 bits of the entry's sequence number
  std::array<std::uint8_t, 4084> data;  //    8 bytes 8..4091 of the update
  Le32 sequence_low;                    // 4092 low 32 bits
};
static_assert(sizeof(LogDataSector) == kLogSectorSize);

// §2.6.1.1 Metadata Table Header.
struct MetadataTableHeader {
  Le64 signature;                          //  0 kMetadataSignature
  Le16 reserved;                           //  8
  Le16 entry_count;                        // 10 <= kMaxMetadataEntries
  std::array<std::uint8_t, 20> reserved2;  // 12
};
static_assert(sizeof(MetadataTableHeader) == 32);

// §2.6.1.2 Metadata Table Entry.
struct MetadataTableEntry {
  Guid item_id;    //  0
  Le32 offset;     // 16 from the start of the region; >= 64 KiB, or 0 with length 0
  Le32 length;     // 20 <= 1 MiB
  Le32 flags;      // 24 kMetadataIsUser | kMetadataIsVirtualDisk | kMetadataIsRequired
  Le32 reserved2;  // 28
};
static_assert(sizeof(MetadataTableEntry) == 32);
constexpr std::uint32_t kMetadataIsUser = 1u << 0;
constexpr std::uint32_t kMetadataIsVirtualDisk = 1u << 1;
constexpr std::uint32_t kMetadataIsRequired = 1u << 2;

// §2.6.2.1 File Parameters.
struct FileParameters {
  Le32 block_size;  // 0 1 MiB..256 MiB, power of two
  Le32 flags;       // 4 kLeaveBlocksAllocated | kHasParent
};
static_assert(sizeof(FileParameters) == 8);
constexpr std::uint32_t kLeaveBlocksAllocated = 1u << 0;
constexpr std::uint32_t kHasParent = 1u << 1;

// §2.6.2.6.1 Parent Locator Header, followed by KeyValueCount entries.
struct ParentLocatorHeader {
  Guid locator_type;     //  0 kVhdxParentLocatorType
  Le16 reserved;         // 16
  Le16 key_value_count;  // 18
};
static_assert(sizeof(ParentLocatorHeader) == 20);

// §2.6.2.6.2 Parent Locator Entry: offsets are from the start of the item; UTF-16LE strings.
struct ParentLocatorEntry {
  Le32 key_offset;    //  0
  Le32 value_offset;  //  4
  Le16 key_length;    //  8 bytes
  Le16 value_length;  // 10 bytes
};
static_assert(sizeof(ParentLocatorEntry) == 12);

// §2.5.1 BAT entry: state in bits 0..2, reserved bits 3..19, FileOffsetMB in bits 20..63.
enum PayloadState : std::uint8_t {  // §2.5.1.1
  kPayloadNotPresent = 0,
  kPayloadUndefined = 1,
  kPayloadZero = 2,
  kPayloadUnmapped = 3,
  kPayloadFullyPresent = 6,
  kPayloadPartiallyPresent = 7,
};
enum BitmapState : std::uint8_t {  // §2.5.1.2
  kBitmapNotPresent = 0,
  kBitmapPresent = 6,
};
constexpr std::uint64_t kBatStateMask = 0x7;
constexpr std::uint64_t kBatReservedMask = 0xFFFF8;  // bits 3..19
constexpr std::uint8_t BatState(std::uint64_t entry) {
  return static_cast<std::uint8_t>(entry & kBatStateMask);
}
// The entry's file offset in bytes (FileOffsetMB * 1 MiB).
constexpr std::uint64_t BatFileOffset(std::uint64_t entry) { return (entry >> 20) << 20; }
constexpr std::uint64_t MakeBatEntry(std::uint8_t state, std::uint64_t file_offset) {
  return ((file_offset >> 20) << 20) | state;
}

// How virtual offsets map onto BAT entries (§2.4, §2.5).
struct BatGeometry {
  std::uint64_t virtual_size = 0;
  std::uint32_t block_size = 0;
  std::uint32_t logical_sector_size = 0;
  bool has_parent = false;
  std::uint64_t chunk_ratio = 0;     // payload blocks per sector bitmap block
  std::uint64_t payload_blocks = 0;  // Ceil(virtual size / block size)
  std::uint64_t bitmap_blocks = 0;   // Ceil(payload blocks / chunk ratio)
  std::uint64_t entry_count = 0;     // BAT entries the table must hold (§2.5)

  // REQUIRES: block size and logical sector size valid, virtual size > 0.
  static BatGeometry Compute(std::uint64_t virtual_size, std::uint32_t block_size,
                             std::uint32_t logical_sector_size, bool has_parent);
  std::uint64_t PayloadIndex(std::uint64_t block) const { return block + block / chunk_ratio; }
  std::uint64_t BitmapIndex(std::uint64_t chunk) const {
    return chunk * (chunk_ratio + 1) + chunk_ratio;
  }
  std::uint64_t sectors_per_block() const { return block_size / logical_sector_size; }
};

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as §2 prescribes for every checksum.
// Crc32cUpdate continues a running CRC (start with kCrc32cInit, finish with ~crc).
constexpr std::uint32_t kCrc32cInit = 0xFFFFFFFF;
std::uint32_t Crc32cUpdate(std::uint32_t crc, std::span<const std::byte> bytes);
std::uint32_t Crc32c(std::span<const std::byte> bytes);
// The CRC of `bytes` with the 4 bytes at `checksum_offset` taken as zero.
std::uint32_t Crc32cWithZeroedField(std::span<const std::byte> bytes, std::size_t checksum_offset);

// Parses "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}" (braces optional, any case).
std::optional<Guid> ParseGuid(std::string_view text);

// "N KiB" / "N MiB" / "N bytes" for messages.
std::string DescribeOffset(std::uint64_t offset);
// "File Parameters", "Page 83 Data", ... or the GUID.
std::string MetadataItemName(const Guid& id);

// kFileCorrupt with `message`, which names the structure and says what is wrong with it.
inline Status Corrupt(std::string message) { return Status(Code::kFileCorrupt, std::move(message)); }

constexpr bool IsPowerOfTwo(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
constexpr std::uint64_t RoundDown(std::uint64_t v, std::uint64_t a) { return v / a * a; }

}  // namespace vdisk::vhdx
