// On-disk structures of ISO 9660 (ECMA-119, 3rd edition) and UDF (ECMA-167, 3rd edition, as
// profiled by OSTA UDF 2.60) that the ISO provider reads to learn a volume's size.
//
// Every multi-byte field is a byte array with an accessor, so the structs have no padding, need no
// alignment, and decode the same on any host. Each struct's size is checked at compile time and
// its fields cite the section that defines them. "BP" numbers in ECMA-119 are 1-based byte
// positions; "RBP" numbers in ECMA-167 are 0-based.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <gsl/gsl>
#include <span>
#include <string_view>
#include <type_traits>

namespace vdisk::iso {

// ECMA-119 6.1.2: a CD-ROM logical sector holds 2048 bytes. ECMA-167 2/8.4: the volume recognition
// sequence uses 2048-byte descriptors too, and UDF media written as .iso files use 2048-byte
// sectors (UDF 2.60 6.9 for DVD, 6.12 for CD).
inline constexpr std::uint32_t kSectorSize = 2048;
// ECMA-119 6.2.1 / ECMA-167 2/8.3: sectors 0..15 are the system area; the volume recognition
// sequence (ISO 9660's volume descriptor set among it) starts at sector 16, byte 32768.
inline constexpr std::uint64_t kFirstVolumeDescriptorSector = 16;
// ECMA-167 3/8.4.2.1: the first anchor point.
inline constexpr std::uint64_t kUdfAnchorSector = 256;

// --- Field encodings -----------------------------------------------------------------------------

// ECMA-119 7.2.1 / ECMA-167 1/7.1.3: 16-bit little-endian.
struct Le16 {
  std::array<std::uint8_t, 2> b;
  constexpr std::uint16_t value() const { return static_cast<std::uint16_t>(b[0] | (b[1] << 8)); }
};
// ECMA-119 7.3.1 / ECMA-167 1/7.1.5: 32-bit little-endian.
struct Le32 {
  std::array<std::uint8_t, 4> b;
  constexpr std::uint32_t value() const {
    return static_cast<std::uint32_t>(b[0]) | (static_cast<std::uint32_t>(b[1]) << 8) |
           (static_cast<std::uint32_t>(b[2]) << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  }
};
// ECMA-119 7.2.2: 16-bit big-endian.
struct Be16 {
  std::array<std::uint8_t, 2> b;
  constexpr std::uint16_t value() const { return static_cast<std::uint16_t>((b[0] << 8) | b[1]); }
};
// ECMA-119 7.3.2: 32-bit big-endian.
struct Be32 {
  std::array<std::uint8_t, 4> b;
  constexpr std::uint32_t value() const {
    return (static_cast<std::uint32_t>(b[0]) << 24) | (static_cast<std::uint32_t>(b[1]) << 16) |
           (static_cast<std::uint32_t>(b[2]) << 8) | static_cast<std::uint32_t>(b[3]);
  }
};
// ECMA-119 7.2.3: a 16-bit number recorded twice, little-endian then big-endian. The two copies
// must agree; a reader that trusts one without comparing cannot tell a damaged descriptor.
struct BothEndian16 {
  Le16 little;
  Be16 big;
  constexpr bool consistent() const { return little.value() == big.value(); }
};
// ECMA-119 7.3.3: the same for 32 bits.
struct BothEndian32 {
  Le32 little;
  Be32 big;
  constexpr bool consistent() const { return little.value() == big.value(); }
};

// --- ECMA-119: the volume descriptor set ---------------------------------------------------------

// ECMA-119 8.1.1: volume descriptor types.
enum class VolumeDescriptorType : std::uint8_t {
  kBootRecord = 0,       // 8.2
  kPrimary = 1,          // 8.4
  kSupplementary = 2,    // 8.5 (also the enhanced descriptor of ISO 9660:1999, version 2)
  kVolumePartition = 3,  // 8.6
  kSetTerminator = 255,  // 8.3
};

// ECMA-119 8.1 (and ECMA-167 2/9.1 for the descriptors of the extended area): the first seven
// bytes every volume structure descriptor starts with.
struct VolumeStructureDescriptorHeader {
  std::uint8_t type;                        // BP 1 (ECMA-167: structure type, 0)
  std::array<char, 5> standard_identifier;  // BP 2-6, e.g. "CD001", "BEA01"
  std::uint8_t version;                     // BP 7
};
static_assert(sizeof(VolumeStructureDescriptorHeader) == 7);

// ECMA-119 8.1.2 and ECMA-167 2/9.1.2, 3/9.1.2: standard identifiers.
inline constexpr std::string_view kIso9660Identifier = "CD001";      // ECMA-119 8.1.2
inline constexpr std::string_view kBeginExtendedArea = "BEA01";      // ECMA-167 2/9.2
inline constexpr std::string_view kTerminateExtendedArea = "TEA01";  // ECMA-167 2/9.3
inline constexpr std::string_view kBootDescriptor = "BOOT2";         // ECMA-167 2/9.4
inline constexpr std::string_view kNsr02 = "NSR02";  // ECMA-167 2nd edition 3/9.1 (UDF <= 1.50)
inline constexpr std::string_view kNsr03 = "NSR03";  // ECMA-167 3rd edition 3/9.1 (UDF >= 2.00)
inline constexpr std::string_view kCdw02 = "CDW02";  // ECMA-168

// ECMA-119 8.4: the primary volume descriptor. Only the fields up to the file structure version
// are spelled out; the provider reads the volume space size and the logical block size.
struct PrimaryVolumeDescriptor {
  VolumeStructureDescriptorHeader header;  // BP 1-7, type 1, "CD001", version 1 (8.4.1-8.4.3)
  std::uint8_t unused1;                    // BP 8
  std::array<char, 32> system_identifier;  // BP 9-40 (8.4.5)
  std::array<char, 32> volume_identifier;  // BP 41-72 (8.4.6)
  std::array<std::uint8_t, 8> unused2;     // BP 73-80
  BothEndian32 volume_space_size;          // BP 81-88 (8.4.8), in logical blocks
  std::array<std::uint8_t, 32> unused3;    // BP 89-120
  BothEndian16 volume_set_size;            // BP 121-124 (8.4.10)
  BothEndian16 volume_sequence_number;     // BP 125-128 (8.4.11)
  BothEndian16 logical_block_size;         // BP 129-132 (8.4.12), bytes
  BothEndian32 path_table_size;            // BP 133-140 (8.4.13)
  std::array<std::uint8_t, 16> path_table_locations;   // BP 141-156 (8.4.14-8.4.17)
  std::array<std::uint8_t, 34> root_directory_record;  // BP 157-190 (8.4.18)
  std::array<char, 128> volume_set_identifier;         // BP 191-318
  std::array<char, 128> publisher_identifier;          // BP 319-446
  std::array<char, 128> data_preparer_identifier;      // BP 447-574
  std::array<char, 128> application_identifier;        // BP 575-702
  std::array<char, 37> copyright_file_identifier;      // BP 703-739
  std::array<char, 37> abstract_file_identifier;       // BP 740-776
  std::array<char, 37> bibliographic_file_identifier;  // BP 777-813
  std::array<std::array<char, 17>, 4> dates;           // BP 814-881 (8.4.26-8.4.29)
  std::uint8_t file_structure_version;                 // BP 882 (8.4.31)
  std::uint8_t reserved1;                              // BP 883
  std::array<std::uint8_t, 512> application_use;       // BP 884-1395
  std::array<std::uint8_t, 653> reserved2;             // BP 1396-2048
};
static_assert(sizeof(PrimaryVolumeDescriptor) == kSectorSize);
static_assert(offsetof(PrimaryVolumeDescriptor, volume_space_size) == 80);
static_assert(offsetof(PrimaryVolumeDescriptor, logical_block_size) == 128);
static_assert(offsetof(PrimaryVolumeDescriptor, file_structure_version) == 881);

// --- ECMA-167 part 3: volume structure -----------------------------------------------------------

// ECMA-167 3/7.2.1: tag identifiers of the volume structure descriptors.
enum class UdfTagIdentifier : std::uint16_t {
  kPrimaryVolume = 1,                  // 3/10.1
  kAnchorVolumeDescriptorPointer = 2,  // 3/10.2
  kVolumeDescriptorPointer = 3,        // 3/10.3
  kImplementationUseVolume = 4,        // 3/10.4
  kPartition = 5,                      // 3/10.5
  kLogicalVolume = 6,                  // 3/10.6
  kUnallocatedSpace = 7,               // 3/10.8
  kTerminating = 8,                    // 3/10.9
};

// ECMA-167 3/7.2: the 16-byte tag every descriptor starts with.
struct UdfDescriptorTag {
  Le16 identifier;             // RBP 0 (3/7.2.1)
  Le16 descriptor_version;     // RBP 2 (3/7.2.2): 2 for NSR02 volumes, 3 for NSR03
  std::uint8_t checksum;       // RBP 4 (3/7.2.3): sum of bytes 0-3 and 5-15, modulo 256
  std::uint8_t reserved;       // RBP 5
  Le16 serial_number;          // RBP 6 (3/7.2.5)
  Le16 descriptor_crc;         // RBP 8 (3/7.2.6): CRC of crc_length bytes after the tag
  Le16 descriptor_crc_length;  // RBP 10 (3/7.2.7)
  Le32 location;               // RBP 12 (3/7.2.8): the sector the descriptor is recorded in
};
static_assert(sizeof(UdfDescriptorTag) == 16);

// ECMA-167 3/7.1: extent_ad, a byte length and a starting sector.
struct UdfExtent {
  Le32 length;    // bytes
  Le32 location;  // logical sector number
};
static_assert(sizeof(UdfExtent) == 8);

// ECMA-167 3/10.2: anchor volume descriptor pointer.
struct UdfAnchorVolumeDescriptorPointer {
  UdfDescriptorTag tag;                    // RBP 0, identifier 2
  UdfExtent main_sequence;                 // RBP 16: main volume descriptor sequence extent
  UdfExtent reserve_sequence;              // RBP 24: reserve volume descriptor sequence extent
  std::array<std::uint8_t, 480> reserved;  // RBP 32
};
static_assert(sizeof(UdfAnchorVolumeDescriptorPointer) == 512);

// ECMA-167 3/10.3: volume descriptor pointer, continuing the sequence elsewhere.
struct UdfVolumeDescriptorPointer {
  UdfDescriptorTag tag;                    // RBP 0, identifier 3
  Le32 sequence_number;                    // RBP 16
  UdfExtent next_extent;                   // RBP 20
  std::array<std::uint8_t, 484> reserved;  // RBP 28
};
static_assert(sizeof(UdfVolumeDescriptorPointer) == 512);

// ECMA-167 3/10.5: partition descriptor.
struct UdfPartitionDescriptor {
  UdfDescriptorTag tag;                                    // RBP 0, identifier 5
  Le32 sequence_number;                                    // RBP 16
  Le16 flags;                                              // RBP 20 (3/10.5.3)
  Le16 partition_number;                                   // RBP 22
  std::array<std::uint8_t, 32> contents;                   // RBP 24 (regid, e.g. "+NSR02")
  std::array<std::uint8_t, 128> contents_use;              // RBP 56
  Le32 access_type;                                        // RBP 184 (3/10.5.7)
  Le32 starting_location;                                  // RBP 188 (3/10.5.8), sector
  Le32 length;                                             // RBP 192 (3/10.5.9), sectors
  std::array<std::uint8_t, 32> implementation_identifier;  // RBP 196
  std::array<std::uint8_t, 128> implementation_use;        // RBP 228
  std::array<std::uint8_t, 156> reserved;                  // RBP 356
};
static_assert(sizeof(UdfPartitionDescriptor) == 512);
static_assert(offsetof(UdfPartitionDescriptor, starting_location) == 188);

// Decodes a struct from the start of `bytes`. The structs above hold only bytes, so any byte
// sequence is a valid object representation. REQUIRES: bytes.size() >= sizeof(T).
template <typename T>
T LoadStruct(std::span<const std::byte> bytes) {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) == 1);
  Expects(bytes.size() >= sizeof(T));
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

// ECMA-167 1/7.2.6 (used by 3/7.2.6): CRC-ITU-T, generator x^16 + x^12 + x^5 + 1, initial value
// 0, most significant bit first. The standard's example: bytes 70 6A 77 give 3299 (hex).
std::uint16_t UdfCrc(std::span<const std::byte> bytes);

// ECMA-167 3/7.2.3: the tag checksum over bytes 0-3 and 5-15 of `tag` (16 bytes).
std::uint8_t UdfTagChecksum(std::span<const std::byte, 16> tag);

}  // namespace vdisk::iso
