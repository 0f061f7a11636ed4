// VhdxImage::Open: the headers, the log replay (MS-VHDX §2.3.3), the region table, the metadata
// and the parent reference of a file being opened; each structure is validated before use.
#include "formats/vhdx/vhdx_image.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "base/bytes.h"
#include "formats/locator_path.h"
#include "formats/partition_table.h"
#include "formats/vhdx/vhdx_create.h"

namespace vdisk::vhdx {
namespace {

std::string HeaderName(int index) {
  return "header " + std::to_string(index + 1) + " at " + DescribeOffset(kHeaderOffsets[index]);
}

std::string RegionTableName(int index) {
  return "region table " + std::to_string(index + 1) + " at " +
         DescribeOffset(kRegionTableOffsets[index]);
}

}  // namespace

Result<std::unique_ptr<VhdxImage>> VhdxImage::Open(std::unique_ptr<platform::File> file,
                                                   const OpenOptions& options) {
  if (file == nullptr) return Status(Code::kInvalidParameter, "VHDX open without a file");
  const std::string path = file->path().string();
  std::unique_ptr<VhdxImage> image(new VhdxImage(std::move(file), options));
  const Status status = image->Load();
  if (!status.ok()) return status.WithContext(path);
  return image;
}

VhdxImage::~VhdxImage() {
  if (read_only_) return;
  std::lock_guard lock(update_mutex_);
  if (!log_active_ || journal_failed_) return;
  // A clean log for the next reader (§2.2.2 LogGuid): everything applied is made durable first.
  if (!file_->Flush().ok()) return;
  std::lock_guard header_lock(header_mutex_);
  (void)UpdateHeadersLocked([](Header& h) { h.log_guid = Guid{}; });
}

Status VhdxImage::Load() {
  VDISK_ASSIGN_OR_RETURN(std::uint64_t file_size, file_->Size());
  if (file_size < kHeaderSectionSize) {
    return Corrupt("the file is " + std::to_string(file_size) +
                   " bytes, smaller than the 1 MiB VHDX header section");
  }
  std::array<std::byte, 8> signature;
  VDISK_RETURN_IF_ERROR(file_->ReadAt(0, signature));
  if (LoadAs<Le64>(signature).get() != kFileSignature) {
    return Corrupt("file type identifier at 0: signature \"vhdxfile\" missing");
  }
  VDISK_RETURN_IF_ERROR(ReadHeaders());
  // The log region must lie inside the file, after the header section (§2.2.2 LogOffset).
  if (log_length_ != 0 &&
      (log_offset_ % kAlignment != 0 || log_length_ % kAlignment != 0 ||
       log_offset_ < kHeaderSectionSize || log_offset_ + log_length_ > file_size)) {
    return Corrupt(
        HeaderName(current_header_) + ": log at " + std::to_string(log_offset_) + " of " +
        std::to_string(log_length_) +
        " bytes is not 1 MiB aligned inside the file after the header section (file of " +
        std::to_string(file_size) + " bytes)");
  }
  VDISK_RETURN_IF_ERROR(ReplayLog(file_size));
  VDISK_RETURN_IF_ERROR(ReadRegionTable(file_size));

  VDISK_ASSIGN_OR_RETURN(metadata_, ParseMetadata(
                                        [this](std::uint64_t offset, std::span<std::byte> out) {
                                          return reader_.Read(metadata_offset_ + offset, out);
                                        },
                                        metadata_length_));
  subtype_ = metadata_.has_parent               ? DiskSubtype::kDifferencing
             : metadata_.leave_blocks_allocated ? DiskSubtype::kFixed
                                                : DiskSubtype::kDynamic;
  geometry_ = BatGeometry::Compute(metadata_.virtual_size, metadata_.block_size,
                                   metadata_.logical_sector_size, metadata_.has_parent);
  if (bat_length_ / 8 < geometry_.entry_count) {
    return Corrupt("region table: the BAT region of " + std::to_string(bat_length_) +
                   " bytes cannot hold the " + std::to_string(geometry_.entry_count) +
                   " entries of a " + std::to_string(geometry_.virtual_size) + "-byte disk in " +
                   std::to_string(geometry_.block_size) + "-byte blocks");
  }

  std::vector<ReservedRange> reserved = {
      {bat_offset_, bat_offset_ + bat_length_, "the BAT region"},
      {metadata_offset_, metadata_offset_ + metadata_length_, "the metadata region"},
  };
  if (log_length_ != 0) reserved.push_back({log_offset_, log_offset_ + log_length_, "the log"});
  VDISK_ASSIGN_OR_RETURN(const BatValidation validation,
                         ValidateBat(reader_, bat_offset_, geometry_, file_size, reserved));
  bat_ = std::make_unique<VhdxBlockAllocationTable>(reader_, bat_offset_, geometry_.entry_count,
                                                    kMaxResidentBatPages);
  physical_size_ = file_size;
  alloc_end_ = RoundUp(
      std::max({file_size, validation.used_end, bat_offset_ + bat_length_,
                metadata_offset_ + metadata_length_, log_offset_ + std::uint64_t{log_length_}}),
      kAlignment);
  return BuildParentReference();
}

Status VhdxImage::ReadHeaders() {
  std::array<std::array<std::byte, kHeaderSize>, 2> bytes;
  std::string problems[2];
  bool valid[2] = {false, false};
  for (int i = 0; i < 2; ++i) {
    VDISK_RETURN_IF_ERROR(file_->ReadAt(kHeaderOffsets[i], bytes[i]));
    const auto h = LoadAs<Header>(bytes[i]);
    if (h.signature.get() != kHeaderSignature) {
      problems[i] = HeaderName(i) + ": signature \"head\" missing";
      continue;
    }
    const std::uint32_t crc = Crc32cWithZeroedField(bytes[i], offsetof(Header, checksum));
    if (crc != h.checksum.get()) {
      problems[i] = HeaderName(i) + ": CRC-32C mismatch (stored " +
                    std::to_string(h.checksum.get()) + ", computed " + std::to_string(crc) + ")";
      continue;
    }
    valid[i] = true;
  }
  if (!valid[0] && !valid[1]) {
    return Corrupt("both headers are invalid: " + problems[0] + "; " + problems[1]);
  }
  int current = valid[0] ? 0 : 1;
  if (valid[0] && valid[1] &&
      LoadAs<Header>(bytes[1]).sequence_number.get() >
          LoadAs<Header>(bytes[0]).sequence_number.get()) {
    current = 1;
  }
  const auto h = LoadAs<Header>(bytes[current]);
  if (h.version.get() != kVersion) {
    return Status(Code::kVhdUnsupportedVersion, HeaderName(current) + ": version " +
                                                    std::to_string(h.version.get()) + " is not 1");
  }
  if (h.log_version.get() != kLogVersion && !h.log_guid.is_zero()) {
    return Status(Code::kVhdUnsupportedVersion, HeaderName(current) + ": log version " +
                                                    std::to_string(h.log_version.get()) +
                                                    " is not 0, and the log needs replay");
  }
  std::lock_guard lock(header_mutex_);
  header_ = bytes[current];
  current_header_ = current;
  log_offset_ = h.log_offset.get();
  log_length_ = h.log_length.get();
  return Status::Ok();
}

Status VhdxImage::ReplayLog(std::uint64_t& file_size) {
  Guid log_guid;
  {
    std::lock_guard lock(header_mutex_);
    log_guid = LoadAs<Header>(header_).log_guid;
  }
  if (log_guid.is_zero()) return Status::Ok();  // §2.2.2: an empty log
  if (log_length_ == 0) {
    return Corrupt(HeaderName(current_header_) + ": LogGuid " + log_guid.ToString() +
                   " is set but the log is empty");
  }
  std::vector<std::byte> log(log_length_);
  VDISK_RETURN_IF_ERROR(file_->ReadAt(log_offset_, log));
  LogScan scan = FindActiveSequence(log, log_guid);
  log.clear();
  log.shrink_to_fit();
  if (!scan.active) {
    return Corrupt("log: no valid log sequence for LogGuid " + log_guid.ToString() +
                   (scan.first_problem.empty() ? std::string(" (no log entries)")
                                               : " (" + scan.first_problem + ")"));
  }
  const LogSequence& sequence = *scan.active;
  if (file_size < sequence.flushed_file_offset) {
    return Corrupt("log: the file is " + std::to_string(file_size) +
                   " bytes, shorter than the FlushedFileOffset " +
                   std::to_string(sequence.flushed_file_offset) +
                   " of its head entry: it has been truncated");
  }
  if (sequence.last_file_offset > kMaxFileEnd) {
    return Corrupt("log: LastFileOffset " + std::to_string(sequence.last_file_offset) +
                   " of the head entry is beyond any VHDX file");
  }
  const std::uint64_t logical_end = std::max(file_size, sequence.last_file_offset);
  for (const LogUpdate& u : sequence.updates) {
    const std::uint64_t length = u.zero_length != 0 ? u.zero_length : kLogSectorSize;
    const std::uint64_t end = u.file_offset + length;
    const std::string what = "log: an update of " + std::to_string(length) + " bytes at " +
                             std::to_string(u.file_offset);
    if (u.file_offset < kRegionTable1Offset) {
      return Corrupt(what + " would overwrite the file identifier or the headers");
    }
    if (u.file_offset < log_offset_ + log_length_ && log_offset_ < end) {
      return Corrupt(what + " would overwrite the log");
    }
    if (end > logical_end || end < u.file_offset) {
      return Corrupt(what + " ends past the LastFileOffset " +
                     std::to_string(sequence.last_file_offset) + " of the head entry");
    }
  }
  replayed_log_ = true;

  if (read_only_) {
    // §5 <5>: a read-only open replays in memory; the file stays as it is.
    LogOverlay overlay;
    for (const LogUpdate& u : sequence.updates) overlay.Apply(u);
    reader_.SetOverlay(std::move(overlay), file_size, logical_end);
    file_size = logical_end;
    return Status::Ok();
  }

  // §2.2.2: a new FileWriteGuid before log playback changes the file.
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::uint64_t size = file_size;
  std::vector<std::byte> zeros;
  for (const LogUpdate& u : sequence.updates) {
    if (u.zero_length == 0) {
      VDISK_RETURN_IF_ERROR(file_->WriteAt(u.file_offset, u.data));
      size = std::max(size, u.file_offset + kLogSectorSize);
      continue;
    }
    const std::uint64_t end = u.file_offset + u.zero_length;
    for (std::uint64_t at = u.file_offset; at < std::min(end, size);) {
      const std::uint64_t n = std::min<std::uint64_t>(kMiB, std::min(end, size) - at);
      zeros.resize(static_cast<std::size_t>(n));
      VDISK_RETURN_IF_ERROR(file_->WriteAt(at, zeros));
      at += n;
    }
    if (end > size) {
      VDISK_RETURN_IF_ERROR(file_->Resize(end));
      size = end;
    }
  }
  // §2.3.3: the file is at least as long as the head entry's LastFileOffset.
  if (size < sequence.last_file_offset) {
    VDISK_RETURN_IF_ERROR(file_->Resize(sequence.last_file_offset));
    size = sequence.last_file_offset;
  }
  if (write_hardening_) VDISK_RETURN_IF_ERROR(file_->Flush());
  {
    std::lock_guard lock(header_mutex_);
    VDISK_RETURN_IF_ERROR(UpdateHeadersLocked([](Header& h) { h.log_guid = Guid{}; }));
  }
  file_size = size;
  return Status::Ok();
}

Status VhdxImage::ReadRegionTable(std::uint64_t file_size) {
  std::vector<std::byte> table(kRegionTableSize);
  std::string problems[2];
  int used = -1;
  for (int i = 0; i < 2 && used < 0; ++i) {
    VDISK_RETURN_IF_ERROR(reader_.Read(kRegionTableOffsets[i], table));
    const auto header = LoadAs<RegionTableHeader>(table);
    if (header.signature.get() != kRegionTableSignature) {
      problems[i] = RegionTableName(i) + ": signature \"regi\" missing";
      continue;
    }
    const std::uint32_t crc = Crc32cWithZeroedField(table, offsetof(RegionTableHeader, checksum));
    if (crc != header.checksum.get()) {
      problems[i] = RegionTableName(i) + ": CRC-32C mismatch (stored " +
                    std::to_string(header.checksum.get()) + ", computed " + std::to_string(crc) +
                    ")";
      continue;
    }
    if (header.entry_count.get() > kMaxRegionEntries) {
      problems[i] = RegionTableName(i) + ": " + std::to_string(header.entry_count.get()) +
                    " entries, at most 2047 allowed";
      continue;
    }
    used = i;
  }
  if (used < 0) {
    return Corrupt("both region tables are invalid: " + problems[0] + "; " + problems[1]);
  }
  struct Region {
    Guid id;
    std::uint64_t offset;
    std::uint64_t length;
    std::string name;
  };
  std::vector<Region> regions;
  const std::uint32_t count = LoadAs<RegionTableHeader>(table).entry_count.get();
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto e = LoadAs<RegionTableEntry>(table, sizeof(RegionTableHeader) + i * 32);
    Region r{e.guid, e.file_offset.get(), e.length.get(), {}};
    const bool known = r.id == kBatRegionGuid || r.id == kMetadataRegionGuid;
    r.name = r.id == kBatRegionGuid        ? "the BAT region"
             : r.id == kMetadataRegionGuid ? "the metadata region"
                                           : "region " + r.id.ToString();
    const std::string where = "region table: " + r.name;
    if (!known && (e.required.get() & 1) != 0) {
      return Status(Code::kNotSupported, "region table: region " + r.id.ToString() +
                                             " is marked required but is not known");
    }
    for (const Region& other : regions) {
      if (other.id == r.id) return Corrupt(where + " appears twice");
    }
    if (r.offset % kAlignment != 0 || r.length % kAlignment != 0 || r.offset < kHeaderSectionSize ||
        (known && r.length == 0)) {
      return Corrupt(where + " at " + std::to_string(r.offset) + ", " + std::to_string(r.length) +
                     " bytes, is not a non-empty 1 MiB aligned range after the header section");
    }
    if (r.offset + r.length > file_size) {
      return Corrupt(where + " at " + DescribeOffset(r.offset) + ", " + std::to_string(r.length) +
                     " bytes, ends past the end of the file (" + std::to_string(file_size) +
                     " bytes)");
    }
    if (log_length_ != 0 && r.offset < log_offset_ + log_length_ &&
        log_offset_ < r.offset + r.length) {
      return Corrupt(where + " at " + DescribeOffset(r.offset) + " overlaps the log at " +
                     DescribeOffset(log_offset_));
    }
    for (const Region& other : regions) {
      if (r.offset < other.offset + other.length && other.offset < r.offset + r.length) {
        return Corrupt(where + " at " + DescribeOffset(r.offset) + " overlaps " + other.name +
                       " at " + DescribeOffset(other.offset));
      }
    }
    regions.push_back(std::move(r));
  }
  bool have_bat = false;
  bool have_metadata = false;
  for (const Region& r : regions) {
    if (r.id == kBatRegionGuid) {
      bat_offset_ = r.offset;
      bat_length_ = r.length;
      have_bat = true;
    } else if (r.id == kMetadataRegionGuid) {
      metadata_offset_ = r.offset;
      metadata_length_ = r.length;
      have_metadata = true;
    }
  }
  if (!have_bat) return Corrupt("region table: the BAT region is missing");
  if (!have_metadata) return Corrupt("region table: the metadata region is missing");
  return Status::Ok();
}

Status VhdxImage::BuildParentReference() {
  std::lock_guard lock(metadata_mutex_);
  parent_.reset();
  if (!metadata_.has_parent || !metadata_.parent_locator) return Status::Ok();
  const ParentLocator& locator = *metadata_.parent_locator;
  ParentReference ref;
  ref.parent_id = ParseGuid(*locator.Find("parent_linkage")).value_or(Guid{});
  const std::filesystem::path dir = file_->path().parent_path();
  // The brief's order: relative, then absolute, then volume path.
  for (std::string_view key : {"relative_path", "absolute_win32_path", "volume_path"}) {
    const std::string* value = locator.Find(key);
    if (value == nullptr || value->empty()) continue;
    ref.stored_locations.push_back(*value);
    const bool relative = key == "relative_path";
    if (relative && ignore_relative_parent_locator_) continue;
    std::filesystem::path candidate = FromLocatorText(*value);
    if (relative) candidate = dir / candidate;
    candidate = candidate.lexically_normal();
    if (std::find(ref.candidates.begin(), ref.candidates.end(), candidate) == ref.candidates.end())
      ref.candidates.push_back(std::move(candidate));
  }
  parent_ = std::move(ref);
  return Status::Ok();
}

}  // namespace vdisk::vhdx
