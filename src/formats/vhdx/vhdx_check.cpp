#include "formats/vhdx/vhdx_check.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "formats/vhdx/vhdx_format.h"
#include "platform/file.h"

namespace vdisk::vhdx {
namespace {

std::string KiB(std::uint64_t offset) { return std::to_string(offset / kKiB) + " KiB"; }

}  // namespace

CheckFindings CheckVhdxStructures(const Image& image) {
  CheckReport report;
  platform::File& file = image.file();
  auto size = file.Size();
  if (!size.ok()) {
    report.Corruption("cannot read the file's size");
    return report.Take();
  }

  // §2.2.2: two headers; the valid one with the higher sequence number is current.
  std::optional<Header> current;
  for (auto [number, offset] : {std::pair{1, kHeader1Offset}, std::pair{2, kHeader2Offset}}) {
    std::vector<std::byte> bytes(kHeaderSize);
    if (!file.ReadAt(offset, bytes).ok()) {
      report.Corruption("cannot read header " + std::to_string(number) + " at " + KiB(offset));
      continue;
    }
    const auto header = LoadAs<Header>(bytes);
    std::string problem;
    if (header.signature.get() != kHeaderSignature) {
      problem = "no 'head' signature";
    } else if (Crc32cWithZeroedField(bytes, offsetof(Header, checksum)) != header.checksum.get()) {
      problem = "bad checksum";
    }
    if (!problem.empty()) {
      report.Corruption("header " + std::to_string(number) + " at " + KiB(offset) + ": " + problem +
                        "; the other header is in use (--repair rewrites it)");
      continue;
    }
    if (!current || header.sequence_number.get() > current->sequence_number.get()) current = header;
  }
  if (!current) return report.Take();  // the open would have refused; nothing more to check
  if (current->log_guid != Guid{}) {
    report.Corruption(
        "the log holds entries not yet replayed (header log GUID set): the file was not "
        "closed cleanly (--repair replays the log)");
  }

  struct Used {
    std::uint64_t begin, end;
    std::string what;
  };
  std::vector<Used> used;
  used.push_back({0, kHeaderSectionSize, "header section"});
  const std::uint64_t log_offset = current->log_offset.get();
  used.push_back({log_offset, log_offset + current->log_length.get(), "log"});

  // §2.2.3: two region tables, identical when intact.
  std::optional<std::vector<std::byte>> regions;
  for (auto [number, offset] :
       {std::pair{1, kRegionTable1Offset}, std::pair{2, kRegionTable2Offset}}) {
    std::vector<std::byte> bytes(kRegionTableSize);
    if (!file.ReadAt(offset, bytes).ok()) {
      report.Corruption("cannot read region table " + std::to_string(number) + " at " +
                        KiB(offset));
      continue;
    }
    const auto table = LoadAs<RegionTableHeader>(bytes);
    std::string problem;
    if (table.signature.get() != kRegionTableSignature) {
      problem = "no 'regi' signature";
    } else if (Crc32cWithZeroedField(bytes, offsetof(RegionTableHeader, checksum)) !=
               table.checksum.get()) {
      problem = "bad checksum";
    } else if (regions && *regions != bytes) {
      problem = "differs from region table 1";
    }
    if (!problem.empty()) {
      report.Corruption("region table " + std::to_string(number) + " at " + KiB(offset) + ": " +
                        problem + (number == 1 ? "; region table 2 is in use" : "") +
                        " (--repair rewrites it)");
      continue;
    }
    if (!regions) regions = std::move(bytes);
  }
  if (!regions) return report.Take();

  std::uint64_t bat_offset = 0, bat_length = 0, metadata_offset = 0;
  const auto table = LoadAs<RegionTableHeader>(*regions);
  for (std::uint32_t i = 0; i < std::min(table.entry_count.get(), kMaxRegionEntries); ++i) {
    const auto entry = LoadAs<RegionTableEntry>(
        *regions, sizeof(RegionTableHeader) + i * sizeof(RegionTableEntry));
    const std::uint64_t begin = entry.file_offset.get();
    const std::uint64_t end = begin + entry.length.get();
    if (entry.guid == kBatRegionGuid) {
      bat_offset = begin;
      bat_length = entry.length.get();
      used.push_back({begin, end, "BAT region"});
    } else if (entry.guid == kMetadataRegionGuid) {
      metadata_offset = begin;
      used.push_back({begin, end, "metadata region"});
    } else {
      used.push_back({begin, end, "region " + std::to_string(i)});
    }
  }

  // §2.5: payload blocks and sector bitmap blocks that the BAT points at. The block size is the
  // file parameters item's (§2.6.2.1; a fixed disk reports none through the Image).
  std::uint32_t block_size = image.block_size();
  if (block_size == 0) {
    std::vector<std::byte> table_bytes(kMetadataTableSize);
    if (!file.ReadAt(metadata_offset, table_bytes).ok()) {
      report.Corruption("cannot read the metadata table at " + KiB(metadata_offset));
      return report.Take();
    }
    const auto header = LoadAs<MetadataTableHeader>(table_bytes);
    for (std::uint32_t i = 0;
         i < std::min<std::uint32_t>(header.entry_count.get(), kMaxMetadataEntries); ++i) {
      const auto item = LoadAs<MetadataTableEntry>(
          table_bytes, sizeof(MetadataTableHeader) + i * sizeof(MetadataTableEntry));
      if (item.item_id != kFileParametersGuid) continue;
      std::vector<std::byte> parameters(4);
      if (file.ReadAt(metadata_offset + item.offset.get(), parameters).ok()) {
        block_size = LoadAs<Le32>(parameters).get();
      }
    }
    if (block_size < kMinBlockSize || block_size > kMaxBlockSize) return report.Take();
  }
  const auto geometry =
      BatGeometry::Compute(image.virtual_size(), block_size, image.logical_sector_size(),
                           image.subtype() == DiskSubtype::kDifferencing);
  const std::uint64_t entries = std::min(geometry.entry_count, bat_length / 8);
  std::vector<std::byte> bat(entries * 8);
  if (!file.ReadAt(bat_offset, bat).ok()) {
    report.Corruption("cannot read the BAT at " + KiB(bat_offset));
    return report.Take();
  }
  for (std::uint64_t i = 0; i < entries; ++i) {
    const std::uint64_t entry = LoadAs<Le64>(bat, i * 8).get();
    const bool bitmap = (i + 1) % (geometry.chunk_ratio + 1) == 0;
    const std::uint8_t state = BatState(entry);
    const bool has_data = bitmap
                              ? state == kBitmapPresent
                              : state == kPayloadFullyPresent || state == kPayloadPartiallyPresent;
    if (!has_data) continue;
    const std::uint64_t begin = BatFileOffset(entry);
    const std::uint64_t length = bitmap ? kSectorBitmapBlockSize : block_size;
    const std::string what =
        (bitmap ? "sector bitmap block of BAT entry " : "payload block of BAT entry ") +
        std::to_string(i);
    if (begin + length > *size) {
      report.Corruption(what + " at " + std::to_string(begin) + " runs past the end of the file (" +
                        std::to_string(*size) + " bytes)");
      continue;
    }
    used.push_back({begin, begin + length, what});
  }

  std::sort(used.begin(), used.end(),
            [](const Used& a, const Used& b) { return a.begin < b.begin; });
  std::uint64_t end = 0;
  for (std::size_t i = 0; i < used.size(); ++i) {
    if (i > 0 && used[i].begin < used[i - 1].end) {
      report.Corruption(used[i].what + " at " + std::to_string(used[i].begin) + " overlaps " +
                        used[i - 1].what + " at " + std::to_string(used[i - 1].begin));
    }
    end = std::max(end, used[i].end);
  }
  // Structures are 1 MiB aligned (§2.2.3.2, §2.5): a file may end anywhere inside the last MiB.
  // Space after the last structure is room for new blocks, as Windows and qemu leave it (VHDX
  // writers grow the file ahead of need): a note, not a leak.
  end = (end + kAlignment - 1) / kAlignment * kAlignment;
  if (*size > end) {
    report.Add({CheckFinding::Kind::kNote,
                std::to_string(*size - end) + " bytes after offset " + std::to_string(end) +
                    " are not in use yet (room for new blocks)",
                0});
  }
  return report.Take();
}

}  // namespace vdisk::vhdx
