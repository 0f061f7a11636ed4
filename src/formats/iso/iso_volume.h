// Recognising an ISO 9660 or UDF volume and learning its size.
//
// Both standards begin at byte 32768 (sector 16) with a volume recognition sequence of 2048-byte
// descriptors (ECMA-119 6.7.1, ECMA-167 2/8.3): ISO 9660's volume descriptor set ("CD001" ...
// terminator), then, on a UDF volume, an extended area ("BEA01", "NSR02"/"NSR03", "TEA01").
//
// The size of the virtual disk:
//   * ISO 9660 (alone or bridged with UDF): the primary volume descriptor's volume space size
//     times its logical block size (ECMA-119 8.4.8, 8.4.12). Producers pad files beyond it
//     (genisoimage, for one), so a larger file is fine; a shorter one is truncated.
//   * UDF without ISO 9660: UDF records no volume size; its last sector N is the medium's
//     (ECMA-167 3/8.4.2.1), and for an image file the medium is the file. So the size is the file
//     size rounded down to whole sectors, as udfinfo reports it, after checking the anchor volume
//     descriptor pointer and that the volume descriptor sequences and partitions it leads to lie
//     inside the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "base/status.h"
#include "platform/file.h"

namespace vdisk::iso {

// What the volume recognition sequence from sector 16 holds.
struct VolumeRecognition {
  // ISO 9660 (ECMA-119 6.7.1). Indexes count sectors from sector 16.
  std::size_t iso_descriptors = 0;            // "CD001" descriptors up to the first terminator
  std::optional<std::size_t> primary;         // the first primary volume descriptor
  std::optional<std::size_t> iso_terminator;  // the first volume descriptor set terminator
  // UDF (ECMA-167 2/9.2, 2/9.3, 3/9.1).
  bool extended_area = false;             // "BEA01" seen
  bool nsr = false;                       // "NSR02" or "NSR03" inside the extended area
  bool extended_area_terminated = false;  // "TEA01" after "BEA01"
  // Descriptors recognised; the sector after them is the first that is not one.
  std::size_t length = 0;
  // The bytes ended before a sector that is not a descriptor (the sequence may go on).
  bool data_ended = false;
  // The scan stopped at kMaxRecognitionSectors.
  bool limit_reached = false;

  bool is_iso9660() const { return iso_descriptors > 0; }
  bool is_udf() const { return extended_area && nsr; }
};

// At most this many sectors are scanned (sectors 16..255): the UDF anchor at sector 256 bounds the
// sequence, and no producer writes more than a handful of descriptors.
inline constexpr std::size_t kMaxRecognitionSectors = 240;

// Scans the volume recognition sequence in `from_sector_16`, the bytes of the volume from byte
// 32768 on (as many as are at hand; only whole sectors count).
VolumeRecognition ScanVolumeRecognition(std::span<const std::byte> from_sector_16);

enum class VolumeKind {
  kIso9660,  // sized by the ISO 9660 primary volume descriptor (including ISO 9660 + UDF bridges)
  kUdf,      // UDF without ISO 9660
};

struct VolumeGeometry {
  VolumeKind kind = VolumeKind::kIso9660;
  std::uint64_t size = 0;  // bytes; > 0, a multiple of kSectorSize, and within the file
};

// Reads the volume structures of `file` and returns the volume's size.
// Fails with kFileCorrupt, naming the structure at fault, when the file is not an ISO 9660 or UDF
// volume, a structure is damaged or inconsistent, or the file is shorter than the volume; and with
// the file's own error when reading fails.
Result<VolumeGeometry> ReadVolumeGeometry(platform::File& file);

}  // namespace vdisk::iso
