#include "formats/iso/iso_volume.h"

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "formats/iso/iso_structures.h"

namespace vdisk::iso {
namespace {

// A UDF volume descriptor sequence longer than this (following volume descriptor pointers) is
// taken for a loop. ECMA-167 3/8.4.2 asks for 16 sectors; producers write about a dozen
// descriptors.
constexpr std::size_t kMaxSequenceDescriptors = 512;

Status Corrupt(const platform::File& file, const std::string& message) {
  return Status(Code::kFileCorrupt, file.path().string() + ": " + message);
}

std::string Str(std::uint64_t value) { return std::to_string(value); }

std::uint64_t SectorsFor(std::uint64_t bytes) { return (bytes + kSectorSize - 1) / kSectorSize; }

// --- ISO 9660 ------------------------------------------------------------------------------------

Result<VolumeGeometry> ReadIso9660Geometry(const platform::File& file, std::uint64_t file_size,
                                           const VolumeRecognition& vrs,
                                           std::span<const std::byte> from_sector_16) {
  if (!vrs.iso_terminator) {
    const std::uint64_t next = kFirstVolumeDescriptorSector + vrs.length;
    if (vrs.data_ended) {
      return Corrupt(file, "the file ends at byte " + Str(file_size) +
                               ", inside the ISO 9660 volume descriptor set and before its "
                               "terminator (ECMA-119 6.7.1, 8.3)");
    }
    if (vrs.limit_reached) {
      return Corrupt(file, "no ISO 9660 volume descriptor set terminator in sectors 16.." +
                               Str(next - 1) + " (ECMA-119 6.7.1, 8.3)");
    }
    return Corrupt(file, "the ISO 9660 volume descriptor set has no terminator: sector " +
                             Str(next) + " holds no volume descriptor (ECMA-119 6.7.1, 8.3)");
  }
  if (!vrs.primary) {
    return Corrupt(file,
                   "the ISO 9660 volume descriptor set has no primary volume descriptor "
                   "(ECMA-119 6.7.1.1)");
  }
  const std::uint64_t pvd_sector = kFirstVolumeDescriptorSector + *vrs.primary;
  const std::string pvd_name = "primary volume descriptor (sector " + Str(pvd_sector) + ")";
  const auto pvd =
      LoadStruct<PrimaryVolumeDescriptor>(from_sector_16.subspan(*vrs.primary * kSectorSize));
  if (pvd.header.version != 1) {
    return Corrupt(
        file, pvd_name + ": version " + Str(pvd.header.version) + ", expected 1 (ECMA-119 8.4.3)");
  }
  if (!pvd.volume_space_size.consistent()) {
    return Corrupt(file, pvd_name + ": volume space size is " +
                             Str(pvd.volume_space_size.little.value()) + " little-endian but " +
                             Str(pvd.volume_space_size.big.value()) +
                             " big-endian (ECMA-119 8.4.8, 7.3.3)");
  }
  if (!pvd.logical_block_size.consistent()) {
    return Corrupt(file, pvd_name + ": logical block size is " +
                             Str(pvd.logical_block_size.little.value()) + " little-endian but " +
                             Str(pvd.logical_block_size.big.value()) +
                             " big-endian (ECMA-119 8.4.12, 7.2.3)");
  }
  // ECMA-119 6.2.2: a logical block is 2^(n+9) bytes and no larger than the 2048-byte logical
  // sector, so 512, 1024 or 2048. Every producer we know writes 2048.
  const std::uint32_t block_size = pvd.logical_block_size.little.value();
  if (block_size != 512 && block_size != 1024 && block_size != 2048) {
    return Corrupt(file, pvd_name + ": logical block size " + Str(block_size) +
                             " is not 512, 1024 or 2048 (ECMA-119 6.2.2, 8.4.12)");
  }
  const std::uint32_t blocks = pvd.volume_space_size.little.value();
  if (blocks == 0) {
    return Corrupt(file, pvd_name + ": volume space size is 0 (ECMA-119 8.4.8)");
  }
  const std::uint64_t volume_bytes = std::uint64_t{blocks} * block_size;
  // The medium is whole 2048-byte sectors (ECMA-119 6.1.2); with smaller blocks the last sector
  // may be partly outside the volume space but is still part of the disk.
  const std::uint64_t size = SectorsFor(volume_bytes) * kSectorSize;
  const std::uint64_t descriptors_end =
      (kFirstVolumeDescriptorSector + *vrs.iso_terminator + 1) * kSectorSize;
  if (size < descriptors_end) {
    return Corrupt(file, pvd_name + ": the volume space of " + Str(blocks) + " blocks of " +
                             Str(block_size) +
                             " bytes ends before the volume descriptor set does, at byte " +
                             Str(descriptors_end) + " (ECMA-119 8.4.8)");
  }
  if (file_size < size) {
    return Corrupt(file, "the file is " + Str(file_size) + " bytes, shorter than the volume: " +
                             pvd_name + " gives " + Str(blocks) + " blocks of " + Str(block_size) +
                             " bytes (ECMA-119 8.4.8, 8.4.12)");
  }
  return VolumeGeometry{VolumeKind::kIso9660, size};
}

// --- UDF -----------------------------------------------------------------------------------------

// Checks the descriptor tag at the start of `sector`, read from sector `location` (ECMA-167
// 3/7.2). `expected` is the tag identifier wanted, if one is.
Status CheckTag(std::span<const std::byte> sector, std::uint64_t location,
                std::optional<UdfTagIdentifier> expected) {
  const auto tag = LoadStruct<UdfDescriptorTag>(sector);
  const std::string where = "descriptor tag in sector " + Str(location);
  const std::uint8_t checksum = UdfTagChecksum(sector.first<16>());
  if (tag.checksum != checksum) {
    return Status(Code::kFileCorrupt, where + ": checksum " + Str(tag.checksum) + ", computed " +
                                          Str(checksum) + " (ECMA-167 3/7.2.3)");
  }
  const std::uint16_t identifier = tag.identifier.value();
  if (expected && identifier != static_cast<std::uint16_t>(*expected)) {
    return Status(Code::kFileCorrupt, where + ": identifier " + Str(identifier) + ", expected " +
                                          Str(static_cast<std::uint16_t>(*expected)) +
                                          " (ECMA-167 3/7.2.1)");
  }
  const std::uint16_t version = tag.descriptor_version.value();
  if (version != 2 && version != 3) {
    return Status(Code::kFileCorrupt, where + ": descriptor version " + Str(version) +
                                          ", expected 2 or 3 (ECMA-167 3/7.2.2)");
  }
  if (tag.location.value() != location) {
    return Status(Code::kFileCorrupt, where + ": records location " + Str(tag.location.value()) +
                                          " (ECMA-167 3/7.2.8)");
  }
  const std::size_t crc_length = tag.descriptor_crc_length.value();
  if (crc_length > sector.size() - sizeof(UdfDescriptorTag)) {
    return Status(Code::kFileCorrupt, where + ": CRC length " + Str(crc_length) +
                                          " runs past the sector (ECMA-167 3/7.2.7)");
  }
  const std::uint16_t crc = UdfCrc(sector.subspan(sizeof(UdfDescriptorTag), crc_length));
  if (tag.descriptor_crc.value() != crc) {
    return Status(Code::kFileCorrupt, where + ": descriptor CRC " +
                                          Str(tag.descriptor_crc.value()) + ", computed " +
                                          Str(crc) + " (ECMA-167 3/7.2.6)");
  }
  return Status::Ok();
}

struct UdfPartition {
  std::uint16_t number = 0;
  std::uint64_t start = 0;   // sector
  std::uint64_t length = 0;  // sectors
};

Status CheckExtentInFile(const platform::File& file, std::uint64_t file_sectors,
                         const UdfExtent& extent, const std::string& name) {
  const std::uint64_t start = extent.location.value();
  const std::uint64_t end = start + SectorsFor(extent.length.value());
  if (extent.length.value() == 0) {
    return Corrupt(file, name + " is empty (ECMA-167 3/10.2.2, 3/10.2.3)");
  }
  if (end > file_sectors) {
    return Corrupt(file, name + " (sectors " + Str(start) + ".." + Str(end - 1) +
                             ") lies past the end of the file, which has " + Str(file_sectors) +
                             " sectors");
  }
  return Status::Ok();
}

// Reads a volume descriptor sequence (ECMA-167 3/8.4.2) and returns its partition descriptors.
// The sequence ends at a terminating descriptor, an unrecorded (all-zero) sector, or the end of
// its extent; a volume descriptor pointer continues it in another extent (3/10.3).
Result<std::vector<UdfPartition>> ReadPartitions(platform::File& file, std::uint64_t file_sectors,
                                                 UdfExtent extent, const std::string& name) {
  std::vector<UdfPartition> partitions;
  std::array<std::byte, kSectorSize> sector{};
  std::size_t budget = kMaxSequenceDescriptors;
  for (;;) {
    VDISK_RETURN_IF_ERROR(CheckExtentInFile(file, file_sectors, extent, name));
    const std::uint64_t start = extent.location.value();
    const std::uint64_t count = SectorsFor(extent.length.value());
    bool continued = false;
    for (std::uint64_t i = 0; i < count && !continued; ++i) {
      if (budget-- == 0) {
        return Corrupt(file, name + ": more than " + Str(kMaxSequenceDescriptors) +
                                 " descriptors (a loop of volume descriptor pointers?)");
      }
      const std::uint64_t location = start + i;
      VDISK_RETURN_IF_ERROR(file.ReadAt(location * kSectorSize, sector));
      if (AllZero(sector)) return partitions;
      const Status tag_ok = CheckTag(sector, location, std::nullopt);
      if (!tag_ok.ok()) return Corrupt(file, name + ": " + std::string(tag_ok.message()));
      switch (
          static_cast<UdfTagIdentifier>(LoadStruct<UdfDescriptorTag>(sector).identifier.value())) {
        case UdfTagIdentifier::kTerminating:
          return partitions;
        case UdfTagIdentifier::kVolumeDescriptorPointer:
          extent = LoadStruct<UdfVolumeDescriptorPointer>(sector).next_extent;
          continued = true;
          break;
        case UdfTagIdentifier::kPartition: {
          const auto pd = LoadStruct<UdfPartitionDescriptor>(sector);
          partitions.push_back(UdfPartition{pd.partition_number.value(),
                                            pd.starting_location.value(), pd.length.value()});
          break;
        }
        default:
          break;  // primary, logical volume, implementation use, unallocated space descriptors
      }
    }
    if (!continued) return partitions;
  }
}

// Finds a valid anchor volume descriptor pointer at sector 256, else at N or N - 256 where N is the
// file's last sector (ECMA-167 3/8.4.2.1: at least two of the three are recorded).
Result<UdfAnchorVolumeDescriptorPointer> ReadAnchor(platform::File& file,
                                                    std::uint64_t file_sectors) {
  if (file_sectors <= kUdfAnchorSector) {
    return Corrupt(file, "the file has " + Str(file_sectors) +
                             " sectors and ends before the UDF anchor volume descriptor pointer "
                             "at sector 256 (ECMA-167 3/8.4.2.1)");
  }
  const std::uint64_t last = file_sectors - 1;
  std::vector<std::uint64_t> candidates = {kUdfAnchorSector};
  if (last > kUdfAnchorSector) candidates.push_back(last);
  if (last - kUdfAnchorSector > kUdfAnchorSector) candidates.push_back(last - kUdfAnchorSector);
  std::array<std::byte, kSectorSize> sector{};
  Status first_error;
  for (const std::uint64_t location : candidates) {
    VDISK_RETURN_IF_ERROR(file.ReadAt(location * kSectorSize, sector));
    const Status tag_ok =
        CheckTag(sector, location, UdfTagIdentifier::kAnchorVolumeDescriptorPointer);
    if (tag_ok.ok()) return LoadStruct<UdfAnchorVolumeDescriptorPointer>(sector);
    if (first_error.ok()) first_error = tag_ok;
  }
  return Corrupt(file,
                 "no valid UDF anchor volume descriptor pointer at sector 256, N or N-256 "
                 "(ECMA-167 3/8.4.2.1, 3/10.2); at sector 256: " +
                     std::string(first_error.message()));
}

Result<VolumeGeometry> ReadUdfGeometry(platform::File& file, std::uint64_t file_size,
                                       const VolumeRecognition& vrs) {
  if (!vrs.extended_area_terminated) {
    return Corrupt(file,
                   "the UDF volume recognition sequence has BEA01 and NSR0x but no TEA01 "
                   "(ECMA-167 2/9.3)");
  }
  const std::uint64_t file_sectors = file_size / kSectorSize;
  VDISK_ASSIGN_OR_RETURN(const auto anchor, ReadAnchor(file, file_sectors));
  const std::string main_name = "the UDF main volume descriptor sequence";
  const std::string reserve_name = "the UDF reserve volume descriptor sequence";
  // Both sequences must be on the medium (ECMA-167 3/8.4.2); one past the end of the file means
  // the file was cut short.
  VDISK_RETURN_IF_ERROR(CheckExtentInFile(file, file_sectors, anchor.main_sequence, main_name));
  VDISK_RETURN_IF_ERROR(
      CheckExtentInFile(file, file_sectors, anchor.reserve_sequence, reserve_name));
  // The reserve sequence is a copy to fall back on when the main one is damaged (3/8.4.2).
  auto partitions = ReadPartitions(file, file_sectors, anchor.main_sequence, main_name);
  if (!partitions.ok() || partitions->empty()) {
    auto reserve = ReadPartitions(file, file_sectors, anchor.reserve_sequence, reserve_name);
    if (reserve.ok() && !reserve->empty()) {
      partitions = std::move(reserve);
    } else if (partitions.ok()) {
      return Corrupt(file,
                     "no partition descriptor in the UDF main or reserve volume "
                     "descriptor sequence (ECMA-167 3/10.5)");
    } else {
      return partitions.status();
    }
  }
  for (const UdfPartition& p : *partitions) {
    const std::uint64_t end = p.start + p.length;
    if (end > file_sectors) {
      return Corrupt(file, "UDF partition " + Str(p.number) + " (sectors " + Str(p.start) + ".." +
                               Str(end - 1) + ") lies past the end of the file, which " + "has " +
                               Str(file_sectors) + " sectors (ECMA-167 3/10.5)");
    }
  }
  return VolumeGeometry{VolumeKind::kUdf, file_sectors * kSectorSize};
}

}  // namespace

VolumeRecognition ScanVolumeRecognition(std::span<const std::byte> from_sector_16) {
  VolumeRecognition r;
  const std::size_t available = from_sector_16.size() / kSectorSize;
  const std::size_t count = std::min(available, kMaxRecognitionSectors);
  std::size_t i = 0;
  for (; i < count; ++i) {
    const auto header =
        LoadStruct<VolumeStructureDescriptorHeader>(from_sector_16.subspan(i * kSectorSize));
    const std::string_view id(header.standard_identifier.data(), header.standard_identifier.size());
    if (id == kIso9660Identifier) {
      // ECMA-119 6.7.1: the set ends at the first of one or more terminators.
      if (!r.iso_terminator) {
        ++r.iso_descriptors;
        const auto type = static_cast<VolumeDescriptorType>(header.type);
        if (type == VolumeDescriptorType::kPrimary && !r.primary) r.primary = i;
        if (type == VolumeDescriptorType::kSetTerminator) r.iso_terminator = i;
      }
      continue;
    }
    // ECMA-167 2/9.1: the other volume structure descriptors have structure type 0, version 1.
    if (header.type != 0 || header.version != 1) break;
    if (id == kBeginExtendedArea) {
      r.extended_area = true;
    } else if (id == kNsr02 || id == kNsr03) {
      // ECMA-167 3/9.1: recorded inside an extended area.
      if (r.extended_area && !r.extended_area_terminated) r.nsr = true;
    } else if (id == kTerminateExtendedArea) {
      if (r.extended_area) r.extended_area_terminated = true;
    } else if (id != kBootDescriptor && id != kCdw02) {
      break;  // ECMA-167 2/8.3: the first sector that holds no descriptor ends the sequence
    }
  }
  r.length = i;
  if (i == count) {
    r.limit_reached = count == kMaxRecognitionSectors;
    r.data_ended = !r.limit_reached;
  }
  return r;
}

Result<VolumeGeometry> ReadVolumeGeometry(platform::File& file) {
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t file_size, file.Size());
  const std::uint64_t first = kFirstVolumeDescriptorSector * kSectorSize;
  if (file_size < first + kSectorSize) {
    return Corrupt(file, "the file is " + Str(file_size) +
                             " bytes, too short for the volume descriptor at byte 32768 "
                             "(ECMA-119 6.7.1, ECMA-167 2/8.3)");
  }
  const std::uint64_t sectors =
      std::min<std::uint64_t>((file_size - first) / kSectorSize, kMaxRecognitionSectors);
  std::vector<std::byte> area(sectors * kSectorSize);
  VDISK_RETURN_IF_ERROR(file.ReadAt(first, area));
  const VolumeRecognition vrs = ScanVolumeRecognition(area);
  if (vrs.is_iso9660()) return ReadIso9660Geometry(file, file_size, vrs, area);
  if (vrs.is_udf()) return ReadUdfGeometry(file, file_size, vrs);
  return Corrupt(file,
                 "no ISO 9660 volume descriptor (CD001, ECMA-119 8.1) or UDF volume recognition "
                 "sequence (BEA01, NSR02/NSR03, ECMA-167 2/9) at byte 32768");
}

}  // namespace vdisk::iso
