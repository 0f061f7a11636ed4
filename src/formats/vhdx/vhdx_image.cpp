#include "formats/vhdx/vhdx_image.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "formats/partition_table.h"
#include "formats/vhdx/vhdx_create.h"

namespace vdisk::vhdx {
namespace {

// No VHDX file ends further out than this: 64 TiB of blocks plus their tables, with room to spare.
constexpr std::uint64_t kMaxFileEnd = 128 * kTiB;
// Bits of one 4 KiB sector of a sector bitmap block.
constexpr std::uint64_t kBitsPerBitmapSector = kLogSectorSize * 8;
constexpr std::uint64_t kBitmapSectorsPerBlock = kSectorBitmapBlockSize / kLogSectorSize;
constexpr std::uint64_t kHeaderOffsets[2] = {kHeader1Offset, kHeader2Offset};
constexpr std::uint64_t kRegionTableOffsets[2] = {kRegionTable1Offset, kRegionTable2Offset};

template <typename T>
T LoadAs(std::span<const std::byte> bytes, std::size_t offset = 0) {
  static_assert(std::is_trivially_copyable_v<T>);
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void Store(std::span<std::byte> bytes, std::size_t offset, const T& value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

Status Corrupt(std::string message) { return Status(Code::kFileCorrupt, std::move(message)); }

std::string HeaderName(int index) {
  return "header " + std::to_string(index + 1) + " at " + DescribeOffset(kHeaderOffsets[index]);
}

std::string RegionTableName(int index) {
  return "region table " + std::to_string(index + 1) + " at " +
         DescribeOffset(kRegionTableOffsets[index]);
}

// A stored locator path as a path on this OS: on POSIX, "\\?\" prefixes go and backslashes
// become slashes ("C:/x" stays relative there and simply will not exist).
std::filesystem::path LocatorToPath(std::string text) {
#ifndef _WIN32
  for (std::string_view prefix : {"\\\\?\\UNC\\", "\\\\?\\", "\\\\.\\"}) {
    if (text.starts_with(prefix)) {
      text.erase(0, prefix.size());
      if (prefix == "\\\\?\\UNC\\") text.insert(0, "\\\\");
      break;
    }
  }
  std::replace(text.begin(), text.end(), '\\', '/');
#endif
  return std::filesystem::path(std::u8string(text.begin(), text.end()));
}

std::uint64_t BitmapKey(std::uint64_t chunk, std::uint64_t sector) {
  return chunk * kBitmapSectorsPerBlock + sector;
}

}  // namespace

// --- open --------------------------------------------------------------------------------------

VhdxImage::VhdxImage(std::unique_ptr<platform::File> file, const OpenOptions& options)
    : file_(std::move(file)),
      read_only_(options.read_only || !file_->writable()),
      write_hardening_(!options.no_write_hardening),
      ignore_relative_parent_locator_(options.ignore_relative_parent_locator),
      keep_data_write_guid_(options.keep_data_write_guid),
      reader_(*file_) {}

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
    std::filesystem::path candidate = LocatorToPath(*value);
    if (relative) candidate = dir / candidate;
    candidate = candidate.lexically_normal();
    if (std::find(ref.candidates.begin(), ref.candidates.end(), candidate) == ref.candidates.end())
      ref.candidates.push_back(std::move(candidate));
  }
  parent_ = std::move(ref);
  return Status::Ok();
}

// --- identity ----------------------------------------------------------------------------------

std::uint32_t VhdxImage::physical_sector_size() const {
  std::lock_guard lock(metadata_mutex_);
  return metadata_.physical_sector_size;
}

// GET_VIRTUAL_DISK_INFO_IDENTIFIER: the DataWriteGuid, the one identifier a VHDX child records of
// its parent (parent_linkage, MS-VHDX §2.6.2.6). Microsoft's storage sample
// (Samples/Hyper-V/Storage/cpp/SetVirtualDiskInformation.cpp) compares a parent's IDENTIFIER with
// its child's PARENT_IDENTIFIER and refuses to re-point the child when they differ, so the two
// must be the same GUID; the Page 83 id, which GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID returns,
// is not recorded in the child.
Guid VhdxImage::unique_id() const { return data_write_guid(); }

Guid VhdxImage::virtual_disk_id() const {
  std::lock_guard lock(metadata_mutex_);
  return metadata_.page83;
}

std::optional<ParentReference> VhdxImage::parent() const {
  std::lock_guard lock(metadata_mutex_);
  return parent_;
}

Guid VhdxImage::data_write_guid() const {
  std::lock_guard lock(header_mutex_);
  return LoadAs<Header>(header_).data_write_guid;
}

Guid VhdxImage::file_write_guid() const {
  std::lock_guard lock(header_mutex_);
  return LoadAs<Header>(header_).file_write_guid;
}

Status VhdxImage::CheckParent(const Image& parent) const {
  const std::string child = file_->path().string();
  const std::string parent_path = parent.file().path().string();
  const auto* vhdx = dynamic_cast<const VhdxImage*>(&parent);
  if (vhdx == nullptr) {
    return Status(Code::kVhdChildParentIdMismatch,
                  child + ": parent " + parent_path + " is not a VHDX file");
  }
  std::vector<Guid> linkages;
  {
    std::lock_guard lock(metadata_mutex_);
    if (!metadata_.parent_locator) return Status::Ok();
    for (std::string_view key : {"parent_linkage", "parent_linkage2"}) {
      if (const std::string* v = metadata_.parent_locator->Find(key)) {
        if (auto g = ParseGuid(*v)) linkages.push_back(*g);
      }
    }
  }
  const Guid actual = vhdx->data_write_guid();
  if (std::find(linkages.begin(), linkages.end(), actual) == linkages.end()) {
    return Status(Code::kVhdChildParentIdMismatch,
                  child + ": parent " + parent_path + " has DataWriteGuid " + actual.ToString() +
                      ", the child's parent_linkage is " +
                      (linkages.empty() ? std::string("missing") : linkages.front().ToString()));
  }
  if (parent.virtual_size() != virtual_size()) {
    return Status(Code::kVhdChildParentSizeMismatch,
                  child + ": parent size " + std::to_string(parent.virtual_size()) +
                      " differs from " + std::to_string(virtual_size()));
  }
  if (parent.logical_sector_size() != logical_sector_size()) {
    return Status(Code::kVhdChildParentSizeMismatch,
                  child + ": parent logical sector size " +
                      std::to_string(parent.logical_sector_size()) + " differs from " +
                      std::to_string(logical_sector_size()));
  }
  return Status::Ok();
}

// --- headers and sessions ----------------------------------------------------------------------

template <typename Edit>
Status VhdxImage::UpdateHeadersLocked(Edit edit) {
  Header h = LoadAs<Header>(header_);
  edit(h);
  // §2.2.2.1: twice, so that both headers end up current and identical but for the number.
  for (int pass = 0; pass < 2; ++pass) {
    const int target = 1 - current_header_;
    h.sequence_number.set(LoadAs<Header>(header_).sequence_number.get() + 1);
    h.checksum.set(0);
    std::array<std::byte, kHeaderSize> bytes;
    std::memcpy(bytes.data(), &h, kHeaderSize);
    h.checksum.set(Crc32cWithZeroedField(bytes, offsetof(Header, checksum)));
    std::memcpy(bytes.data(), &h, kHeaderSize);
    VDISK_RETURN_IF_ERROR(file_->WriteAt(kHeaderOffsets[target], bytes));
    if (write_hardening_) VDISK_RETURN_IF_ERROR(file_->Flush());
    header_ = bytes;
    current_header_ = target;
  }
  return Status::Ok();
}

Status VhdxImage::BeginSession(bool user_data) {
  std::atomic<bool>& done = user_data ? data_session_ : file_session_;
  if (done.load(std::memory_order_acquire)) return Status::Ok();
  if (read_only_) {
    return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  }
  std::lock_guard lock(header_mutex_);
  if (done.load(std::memory_order_relaxed)) return Status::Ok();
  const bool new_file_guid = !file_session_.load(std::memory_order_relaxed);
  VDISK_RETURN_IF_ERROR(UpdateHeadersLocked([&](Header& h) {
    if (new_file_guid) h.file_write_guid = Guid::Random();
    if (user_data && !keep_data_write_guid_) h.data_write_guid = Guid::Random();
  }));
  file_session_.store(true, std::memory_order_release);
  if (user_data) data_session_.store(true, std::memory_order_release);
  return Status::Ok();
}

// --- journal -----------------------------------------------------------------------------------

Status VhdxImage::StageBytes(StagedSectors& staged, std::uint64_t file_offset,
                             std::span<const std::byte> bytes) {
  std::uint64_t at = file_offset;
  while (!bytes.empty()) {
    const std::uint64_t sector = RoundDown(at, kLogSectorSize);
    auto it = staged.find(sector);
    if (it == staged.end()) {
      std::vector<std::byte> content(kLogSectorSize);
      VDISK_RETURN_IF_ERROR(reader_.Read(sector, content));
      it = staged.emplace(sector, std::move(content)).first;
    }
    const std::size_t within = static_cast<std::size_t>(at - sector);
    const std::size_t n = std::min(bytes.size(), kLogSectorSize - within);
    std::memcpy(it->second.data() + within, bytes.data(), n);
    bytes = bytes.subspan(n);
    at += n;
  }
  return Status::Ok();
}

Status VhdxImage::StageBatEntry(StagedSectors& staged, std::uint64_t index, std::uint64_t value) {
  Le64 entry;
  entry.set(value);
  return StageBytes(staged, bat_offset_ + index * 8, std::as_bytes(std::span(&entry, 1)));
}

Status VhdxImage::StageBitmapBits(StagedSectors& staged, std::uint64_t block,
                                  std::uint64_t bitmap_entry, std::uint64_t first_sector,
                                  std::uint64_t count, bool& changed) {
  const std::uint64_t base = BatFileOffset(bitmap_entry);
  std::uint64_t bit =
      (block % geometry_.chunk_ratio) * geometry_.sectors_per_block() + first_sector;
  const std::uint64_t end = bit + count;
  changed = false;
  while (bit < end) {
    const std::uint64_t sector = bit / kBitsPerBitmapSector;
    const std::uint64_t sector_end = std::min(end, (sector + 1) * kBitsPerBitmapSector);
    const std::uint64_t offset = base + sector * kLogSectorSize;
    auto it = staged.find(offset);
    if (it == staged.end()) {
      std::vector<std::byte> content(kLogSectorSize);
      VDISK_RETURN_IF_ERROR(reader_.Read(offset, content));
      it = staged.emplace(offset, std::move(content)).first;
    }
    auto* bytes = reinterpret_cast<std::uint8_t*>(it->second.data());
    for (; bit < sector_end; ++bit) {
      const std::uint64_t b = bit % kBitsPerBitmapSector;
      // §2.4: bit 0 of byte 0 is the first sector (LSB first).
      if ((b % 8) == 0 && sector_end - bit >= 8 && bytes[b / 8] == 0xFF) {
        bit += 7;
        continue;
      }
      const auto mask = static_cast<std::uint8_t>(1u << (b % 8));
      if ((bytes[b / 8] & mask) == 0) {
        bytes[b / 8] = static_cast<std::uint8_t>(bytes[b / 8] | mask);
        changed = true;
      }
    }
  }
  return Status::Ok();
}

Status VhdxImage::EndLogSessionLocked() {
  if (write_hardening_) VDISK_RETURN_IF_ERROR(file_->Flush());
  apply_unflushed_ = false;
  std::lock_guard lock(header_mutex_);
  VDISK_RETURN_IF_ERROR(UpdateHeadersLocked([](Header& h) { h.log_guid = Guid{}; }));
  log_active_ = false;
  return Status::Ok();
}

Status VhdxImage::Commit(StagedSectors& staged) {
  if (staged.empty()) return Status::Ok();
  const std::string path = file_->path().string();
  if (journal_failed_) {
    return Status(Code::kIoError, path +
                                      ": an earlier metadata update failed half-way; reopen "
                                      "the image to replay its log");
  }
  if (log_length_ == 0) {
    return Status(Code::kNotSupported, path + ": the file has no log, so metadata cannot change");
  }
  std::vector<LogUpdate> updates;
  updates.reserve(staged.size());
  for (auto& [offset, data] : staged) updates.push_back(LogUpdate::Data(offset, data));
  const std::uint64_t length = LogEntryLength(updates.size(), 0);
  if (length > log_length_) {
    return Status(Code::kNotSupported, path + ": an update of " + std::to_string(updates.size()) +
                                           " sectors does not fit in the " +
                                           std::to_string(log_length_) + "-byte log");
  }
  // The previous entry stays intact until this one is complete (§2.3.1: space of the active
  // sequence is not reused); when the ring cannot hold both, end the log session first.
  if (log_active_ && last_entry_length_ + length > log_length_) {
    const Status status = EndLogSessionLocked();
    if (!status.ok()) {
      journal_failed_ = true;
      return status;
    }
  }
  if (!log_active_) {
    log_guid_ = Guid::Random();
    log_sequence_ = 1;
    log_head_ = 0;
    last_entry_length_ = 0;
  } else if (apply_unflushed_ && write_hardening_) {
    // Earlier entries leave the active sequence (this entry is its own tail): what they applied
    // must be durable first.
    VDISK_RETURN_IF_ERROR(file_->Flush());
  }
  apply_unflushed_ = false;
  const auto entry =
      BuildLogEntry(log_guid_, log_sequence_, log_head_, updates,
                    RoundDown(physical_size_, kAlignment), RoundUp(alloc_end_, kAlignment));
  const std::uint64_t first = std::min<std::uint64_t>(entry.size(), log_length_ - log_head_);
  VDISK_RETURN_IF_ERROR(file_->WriteAt(log_offset_ + log_head_,
                                       std::span(entry).first(static_cast<std::size_t>(first))));
  if (first < entry.size())
    VDISK_RETURN_IF_ERROR(file_->WriteAt(log_offset_, std::span(entry).subspan(first)));
  if (write_hardening_) VDISK_RETURN_IF_ERROR(file_->Flush());
  if (!log_active_) {
    // The header names the LogGuid only now that a valid entry carries it.
    std::lock_guard lock(header_mutex_);
    const Guid guid = log_guid_;
    const Status status = UpdateHeadersLocked([&](Header& h) { h.log_guid = guid; });
    if (!status.ok()) {
      journal_failed_ = true;
      return status;
    }
    log_active_ = true;
  }
  for (const LogUpdate& u : updates) {
    const Status status = file_->WriteAt(u.file_offset, u.data);
    if (!status.ok()) {
      journal_failed_ = true;
      return status;
    }
  }
  apply_unflushed_ = true;
  log_head_ = static_cast<std::uint32_t>((log_head_ + entry.size()) % log_length_);
  ++log_sequence_;
  last_entry_length_ = static_cast<std::uint32_t>(entry.size());
  return Status::Ok();
}

// --- map and read ------------------------------------------------------------------------------

Result<Extent> VhdxImage::Map(std::uint64_t offset, std::uint64_t length) {
  const std::uint64_t size = geometry_.virtual_size;
  if (offset >= size || length == 0) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": map of " +
                                               std::to_string(length) + " bytes at " +
                                               std::to_string(offset) + " outside the disk");
  }
  length = std::min(length, size - offset);
  const std::uint64_t bs = geometry_.block_size;
  std::uint64_t block = offset / bs;
  const std::uint64_t within = offset % bs;
  const std::uint64_t n = std::min(length, bs - within);
  VDISK_ASSIGN_OR_RETURN(std::uint64_t entry, bat_->Get(geometry_.PayloadIndex(block)));
  const std::uint8_t state = BatState(entry);

  if (state == kPayloadPartiallyPresent) {
    const std::uint32_t ls = geometry_.logical_sector_size;
    VDISK_ASSIGN_OR_RETURN(const auto run, BitmapRun(block, within / ls, (n + ls - 1) / ls));
    const std::uint64_t bytes = std::min(n, run.second * ls);
    if (run.first) return Extent{Extent::Kind::kData, bytes, BatFileOffset(entry) + within};
    return Extent{Extent::Kind::kParent, bytes, 0};
  }

  // Classifies a block that is not partially present.
  auto kind_of = [&](std::uint8_t s) {
    if (s == kPayloadFullyPresent) return Extent::Kind::kData;
    // §2.5.1.1: NOT_PRESENT falls through to the parent; ZERO, UNMAPPED and UNDEFINED read
    // as zeros, in a differencing file too.
    if (s == kPayloadNotPresent && geometry_.has_parent) return Extent::Kind::kParent;
    return Extent::Kind::kZero;
  };
  Extent extent{kind_of(state), n, 0};
  if (extent.kind == Extent::Kind::kData) extent.file_offset = BatFileOffset(entry) + within;
  // Following blocks that map the same way continue the extent.
  while (extent.length < length) {
    ++block;
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t next, bat_->Get(geometry_.PayloadIndex(block)));
    const std::uint8_t next_state = BatState(next);
    if (next_state == kPayloadPartiallyPresent || kind_of(next_state) != extent.kind) break;
    if (extent.kind == Extent::Kind::kData &&
        BatFileOffset(next) != extent.file_offset + extent.length) {
      break;
    }
    extent.length += std::min<std::uint64_t>(bs, length - extent.length);
  }
  return extent;
}

Status VhdxImage::ReadData(std::uint64_t file_offset, std::span<std::byte> out) {
  if (reader_.has_overlay()) return reader_.Read(file_offset, out);
  return file_->ReadAt(file_offset, out);
}

Result<std::pair<bool, std::uint64_t>> VhdxImage::BitmapRun(std::uint64_t block,
                                                            std::uint64_t first_sector,
                                                            std::uint64_t count) {
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t bitmap_entry,
                         bat_->Get(geometry_.BitmapIndex(block / geometry_.chunk_ratio)));
  if (BatState(bitmap_entry) != kBitmapPresent) {
    return Corrupt(file_->path().string() + ": payload block " + std::to_string(block) +
                   " is partially present but its sector bitmap block is not");
  }
  const std::uint64_t chunk = block / geometry_.chunk_ratio;
  std::uint64_t bit =
      (block % geometry_.chunk_ratio) * geometry_.sectors_per_block() + first_sector;
  const std::uint64_t end = bit + count;
  std::lock_guard lock(bitmap_mutex_);
  bool present = false;
  std::uint64_t run = 0;
  while (bit < end) {
    const std::uint64_t sector = bit / kBitsPerBitmapSector;
    const std::uint64_t key = BitmapKey(chunk, sector);
    auto it = bitmap_cache_.find(key);
    if (it == bitmap_cache_.end()) {
      std::vector<std::uint8_t> bits(kLogSectorSize);
      VDISK_RETURN_IF_ERROR(reader_.Read(BatFileOffset(bitmap_entry) + sector * kLogSectorSize,
                                         std::as_writable_bytes(std::span(bits))));
      while (bitmap_cache_.size() >= kMaxCachedBitmapSectors)
        bitmap_cache_.erase(bitmap_cache_.begin());
      it = bitmap_cache_.emplace(key, std::move(bits)).first;
    }
    const std::uint8_t* bytes = it->second.data();
    const std::uint64_t sector_end = std::min(end, (sector + 1) * kBitsPerBitmapSector);
    for (; bit < sector_end; ++bit) {
      const std::uint64_t b = bit % kBitsPerBitmapSector;
      const bool set = ((bytes[b / 8] >> (b % 8)) & 1) != 0;
      if (run == 0) present = set;
      if (set != present) return std::make_pair(present, run);
      if ((b % 8) == 0 && sector_end - bit >= 8 && bytes[b / 8] == (present ? 0xFF : 0x00)) {
        run += 8;
        bit += 7;
        continue;
      }
      ++run;
    }
  }
  return std::make_pair(present, run);
}

void VhdxImage::CacheStagedBitmapSectors(const StagedSectors& staged, std::uint64_t chunk,
                                         std::uint64_t bitmap_entry) {
  const std::uint64_t base = BatFileOffset(bitmap_entry);
  std::lock_guard lock(bitmap_mutex_);
  for (const auto& [offset, data] : staged) {
    if (offset < base || offset >= base + kSectorBitmapBlockSize) continue;
    const std::uint64_t key = BitmapKey(chunk, (offset - base) / kLogSectorSize);
    std::vector<std::uint8_t> copy(kLogSectorSize);
    std::memcpy(copy.data(), data.data(), kLogSectorSize);
    bitmap_cache_[key] = std::move(copy);
  }
}

// --- write -------------------------------------------------------------------------------------

Status VhdxImage::Write(std::uint64_t offset, std::span<const std::byte> data) {
  return WritePayloadAt(offset, WritePayload(data));
}

Result<platform::CopyMethod> VhdxImage::WriteFromFile(std::uint64_t offset, std::uint64_t length,
                                                      platform::File& source,
                                                      std::uint64_t source_offset) {
  WritePayload::CopyTally tally;
  VDISK_RETURN_IF_ERROR(WritePayloadAt(offset, WritePayload(source, source_offset, length, tally)));
  return tally.buffered_bytes == 0 ? platform::CopyMethod::kKernel
                                   : platform::CopyMethod::kBuffered;
}

Status VhdxImage::WritePayloadAt(std::uint64_t offset, const WritePayload& data) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  const std::uint32_t ls = geometry_.logical_sector_size;
  if (offset % ls != 0 || data.size() % ls != 0 || offset > geometry_.virtual_size ||
      data.size() > geometry_.virtual_size - offset) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": write of " +
                                               std::to_string(data.size()) + " bytes at " +
                                               std::to_string(offset) +
                                               " is not sector aligned or ends past the disk");
  }
  if (data.empty()) return Status::Ok();
  // §2.2.2: DataWriteGuid changes before the first change a reader could see.
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/true));
  const std::uint64_t bs = geometry_.block_size;
  for (std::uint64_t done = 0; done < data.size();) {
    const std::uint64_t block = offset / bs;
    const std::uint64_t within = offset % bs;
    const std::uint64_t n = std::min<std::uint64_t>(data.size() - done, bs - within);
    const WritePayload piece = data.Sub(done, n);
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(geometry_.PayloadIndex(block)));
    const std::uint8_t state = BatState(entry);
    if (state == kPayloadFullyPresent || state == kPayloadPartiallyPresent) {
      VDISK_RETURN_IF_ERROR(WriteAllocated(block, entry, within, piece));
    } else {
      VDISK_RETURN_IF_ERROR(AllocateAndWrite(block, within, piece));
    }
    offset += n;
    done += n;
  }
  return Status::Ok();
}

Status VhdxImage::WriteAllocated(std::uint64_t block, std::uint64_t entry, std::uint64_t within,
                                 const WritePayload& data) {
  VDISK_RETURN_IF_ERROR(data.WriteTo(*file_, BatFileOffset(entry) + within));
  if (BatState(entry) != kPayloadPartiallyPresent) return Status::Ok();
  // The bits go after the data, so that no reader sees a "present" sector before its data.
  const std::uint32_t ls = geometry_.logical_sector_size;
  const std::uint64_t count = data.size() / ls;
  // Rewrites of sectors already present need no journal entry (and no update lock).
  VDISK_ASSIGN_OR_RETURN(const auto run, BitmapRun(block, within / ls, count));
  if (run.first && run.second >= count) return Status::Ok();
  return MarkSectorsPresent(block, within / ls, count);
}

Status VhdxImage::MarkSectorsPresent(std::uint64_t block, std::uint64_t first_sector,
                                     std::uint64_t count) {
  std::lock_guard lock(update_mutex_);
  const std::uint64_t chunk = block / geometry_.chunk_ratio;
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t bitmap_entry, bat_->Get(geometry_.BitmapIndex(chunk)));
  if (BatState(bitmap_entry) != kBitmapPresent) {
    return Corrupt(file_->path().string() + ": payload block " + std::to_string(block) +
                   " is partially present but its sector bitmap block is not");
  }
  StagedSectors staged;
  bool changed = false;
  VDISK_RETURN_IF_ERROR(StageBitmapBits(staged, block, bitmap_entry, first_sector, count, changed));
  if (!changed) return Status::Ok();
  VDISK_RETURN_IF_ERROR(Commit(staged));
  CacheStagedBitmapSectors(staged, chunk, bitmap_entry);
  return Status::Ok();
}

Status VhdxImage::AllocateAndWrite(std::uint64_t block, std::uint64_t within,
                                   const WritePayload& data) {
  std::unique_lock lock(update_mutex_);
  const std::uint64_t index = geometry_.PayloadIndex(block);
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
  const std::uint8_t state = BatState(entry);
  if (state == kPayloadFullyPresent || state == kPayloadPartiallyPresent) {
    lock.unlock();  // another writer allocated it meanwhile
    return WriteAllocated(block, entry, within, data);
  }
  if (journal_failed_) {
    return Status(Code::kIoError, file_->path().string() +
                                      ": an earlier metadata update failed half-way; reopen the "
                                      "image to replay its log");
  }
  const std::uint64_t bs = geometry_.block_size;
  const std::uint64_t block_bytes =
      std::min<std::uint64_t>(bs, geometry_.virtual_size - block * bs);
  const bool whole = within == 0 && data.size() == block_bytes;
  // A differencing block that was NOT_PRESENT keeps reading the parent where it is not written;
  // any other state reads as zeros there, which the fresh space gives.
  const bool partial = geometry_.has_parent && state == kPayloadNotPresent && !whole;
  const std::uint32_t ls = geometry_.logical_sector_size;

  const std::uint64_t payload_offset = RoundUp(alloc_end_, kAlignment);
  std::uint64_t new_end = payload_offset + bs;
  const std::uint64_t chunk = block / geometry_.chunk_ratio;
  const std::uint64_t bitmap_index = geometry_.BitmapIndex(chunk);
  std::uint64_t bitmap_entry = 0;
  bool new_bitmap = false;
  if (partial) {
    VDISK_ASSIGN_OR_RETURN(bitmap_entry, bat_->Get(bitmap_index));
    if (BatState(bitmap_entry) != kBitmapPresent) {
      bitmap_entry = MakeBatEntry(kBitmapPresent, new_end);
      new_end += kSectorBitmapBlockSize;
      new_bitmap = true;
    }
  }
  if (new_end > kMaxFileEnd) {
    return Status(
        Code::kVhdBlockAllocationFailure,
        file_->path().string() + ": no room for a block at " + std::to_string(payload_offset));
  }
  // New space at the end of the file reads as zeros: the rest of the block needs no writing.
  if (new_end > physical_size_) {
    VDISK_RETURN_IF_ERROR(file_->Resize(new_end));
    physical_size_ = new_end;
  }
  // From here the space is handed out even if the rest fails, so it is never handed out twice.
  alloc_end_ = new_end;
  VDISK_RETURN_IF_ERROR(data.WriteTo(*file_, payload_offset + within));
  // Data durable before the BAT points at it (this flush also makes the sectors that earlier
  // entries applied durable, which Commit would otherwise flush on its own).
  if (write_hardening_) {
    VDISK_RETURN_IF_ERROR(file_->Flush());
    apply_unflushed_ = false;
  }

  StagedSectors staged;
  const std::uint64_t new_entry =
      MakeBatEntry(partial ? kPayloadPartiallyPresent : kPayloadFullyPresent, payload_offset);
  VDISK_RETURN_IF_ERROR(StageBatEntry(staged, index, new_entry));
  if (partial) {
    if (new_bitmap) VDISK_RETURN_IF_ERROR(StageBatEntry(staged, bitmap_index, bitmap_entry));
    bool changed = false;
    VDISK_RETURN_IF_ERROR(
        StageBitmapBits(staged, block, bitmap_entry, within / ls, data.size() / ls, changed));
  }
  VDISK_RETURN_IF_ERROR(Commit(staged));
  if (partial) {
    CacheStagedBitmapSectors(staged, chunk, bitmap_entry);
    if (new_bitmap) bat_->Set(bitmap_index, bitmap_entry);
  }
  // Published last: no thread writes into the block before the file references it.
  bat_->Set(index, new_entry);
  return Status::Ok();
}

Status VhdxImage::Flush() {
  if (read_only_) return Status::Ok();
  return file_->Flush();
}

// --- metadata operations -----------------------------------------------------------------------

Result<std::uint32_t> VhdxImage::PlaceItem(std::vector<MetadataItem>& items, const Guid& id,
                                           bool is_user, std::uint32_t flags,
                                           std::uint32_t length) {
  std::size_t index = items.size();
  std::size_t user_items = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].id == id && items[i].is_user() == is_user) index = i;
    if (items[i].is_user()) ++user_items;
  }
  if (index == items.size()) {
    if (items.size() >= kMaxMetadataEntries || (is_user && user_items >= kMaxUserMetadataEntries)) {
      return Status(Code::kDiskFull, file_->path().string() +
                                         ": the metadata table is full (2047 items, of them at "
                                         "most 1024 user items)");
    }
  }
  std::uint32_t offset = 0;
  if (length != 0) {
    // The old item's space may be reused: the whole update is one atomic log entry.
    const auto place = FindMetadataSpace(items, index, length, metadata_length_);
    if (!place) {
      return Status(Code::kDiskFull, file_->path().string() + ": the " +
                                         std::to_string(metadata_length_) +
                                         "-byte metadata region has no free range of " +
                                         std::to_string(length) + " bytes");
    }
    offset = *place;
  }
  if (index == items.size()) {
    items.push_back({id, offset, length, flags});
  } else {
    items[index].offset = offset;
    items[index].length = length;
    items[index].flags = flags;
  }
  return offset;
}

Status VhdxImage::CommitMetadata(
    std::vector<MetadataItem> items,
    std::span<const std::pair<std::uint32_t, std::vector<std::byte>>> payload) {
  StagedSectors staged;
  // Only the table sectors that change.
  const auto table = SerializeMetadataTable(items);
  std::vector<std::byte> current(kMetadataTableSize);
  VDISK_RETURN_IF_ERROR(reader_.Read(metadata_offset_, current));
  for (std::size_t s = 0; s < kMetadataTableSize; s += kLogSectorSize) {
    if (std::memcmp(table.data() + s, current.data() + s, kLogSectorSize) != 0) {
      staged.emplace(
          metadata_offset_ + s,
          std::vector<std::byte>(table.begin() + static_cast<std::ptrdiff_t>(s),
                                 table.begin() + static_cast<std::ptrdiff_t>(s + kLogSectorSize)));
    }
  }
  for (const auto& [offset, bytes] : payload)
    VDISK_RETURN_IF_ERROR(StageBytes(staged, metadata_offset_ + offset, bytes));
  if (LogEntryLength(staged.size(), 0) > log_length_) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": a metadata update of " +
                                               std::to_string(staged.size()) +
                                               " sectors does not fit in the " +
                                               std::to_string(log_length_) + "-byte log");
  }
  VDISK_RETURN_IF_ERROR(Commit(staged));
  std::lock_guard lock(metadata_mutex_);
  metadata_.items = std::move(items);
  return Status::Ok();
}

Status VhdxImage::WriteSystemItem(const Guid& id, std::span<const std::byte> bytes) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  for (const MetadataItem& item : metadata_.items) {
    if (item.is_user() || !(item.id == id)) continue;
    StagedSectors staged;
    VDISK_RETURN_IF_ERROR(
        StageBytes(staged, metadata_offset_ + item.offset,
                   bytes.first(std::min<std::size_t>(bytes.size(), item.length))));
    return Commit(staged);
  }
  return Status(Code::kInternal, "metadata item " + MetadataItemName(id) + " missing");
}

// SET_VIRTUAL_DISK_INFO_IDENTIFIER sets what IDENTIFIER returns, the DataWriteGuid, through the
// two-header protocol. A child that recorded the old one no longer matches (as on VHD).
Status VhdxImage::SetUniqueId(const Guid& id) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  // The session's own first-write change must not replace the id afterwards.
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/true));
  std::lock_guard lock(header_mutex_);
  return UpdateHeadersLocked([&](Header& h) { h.data_write_guid = id; });
}

Status VhdxImage::SetVirtualDiskId(const Guid& id) {
  VDISK_RETURN_IF_ERROR(WriteSystemItem(kPage83DataGuid, std::as_bytes(std::span(id.bytes))));
  std::lock_guard lock(metadata_mutex_);
  metadata_.page83 = id;
  return Status::Ok();
}

Status VhdxImage::SetPhysicalSectorSize(std::uint32_t bytes) {
  if ((bytes != 512 && bytes != 4096) || bytes < geometry_.logical_sector_size) {
    return Status(Code::kInvalidParameter,
                  "physical sector size " + std::to_string(bytes) +
                      " must be 512 or 4096 and at least the logical sector size " +
                      std::to_string(geometry_.logical_sector_size));
  }
  Le32 value;
  value.set(bytes);
  VDISK_RETURN_IF_ERROR(
      WriteSystemItem(kPhysicalSectorSizeGuid, std::as_bytes(std::span(&value, 1))));
  std::lock_guard lock(metadata_mutex_);
  metadata_.physical_sector_size = bytes;
  return Status::Ok();
}

Status VhdxImage::SetParentLocation(const std::filesystem::path& parent_path, const Image& parent) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  if (!metadata_.has_parent) {
    return Status(
        Code::kInvalidParameter,
        file_->path().string() + " is not a differencing disk: it has no parent to locate");
  }
  const auto* vhdx = dynamic_cast<const VhdxImage*>(&parent);
  if (vhdx == nullptr) {
    return Status(Code::kInvalidParameter,
                  parent_path.string() + ": the parent of a VHDX must be a VHDX");
  }
  VDISK_ASSIGN_OR_RETURN(ParentLocator locator,
                         MakeParentLocator(file_->path(), parent_path, vhdx->data_write_guid()));
  const auto bytes = SerializeParentLocator(locator);
  if (bytes.size() > kMaxMetadataItemLength) {
    return Status(Code::kInvalidParameter, parent_path.string() + ": path too long for a locator");
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  {
    std::lock_guard lock(update_mutex_);
    std::vector<MetadataItem> items = metadata_.items;
    VDISK_ASSIGN_OR_RETURN(const std::uint32_t offset,
                           PlaceItem(items, kParentLocatorGuid, false, kMetadataIsRequired,
                                     static_cast<std::uint32_t>(bytes.size())));
    const std::pair<std::uint32_t, std::vector<std::byte>> payload[] = {{offset, bytes}};
    VDISK_RETURN_IF_ERROR(CommitMetadata(std::move(items), payload));
    std::lock_guard meta_lock(metadata_mutex_);
    metadata_.parent_locator = std::move(locator);
  }
  return BuildParentReference();
}

Result<std::vector<Guid>> VhdxImage::ListUserMetadata() const {
  std::lock_guard lock(metadata_mutex_);
  std::vector<Guid> ids;
  for (const MetadataItem& item : metadata_.items) {
    if (item.is_user()) ids.push_back(item.id);
  }
  return ids;
}

Result<std::vector<std::byte>> VhdxImage::GetUserMetadata(const Guid& id) const {
  // Serialised with updates, which may rewrite the space of a replaced item.
  std::lock_guard update_lock(update_mutex_);
  MetadataItem found;
  bool have = false;
  {
    std::lock_guard lock(metadata_mutex_);
    for (const MetadataItem& item : metadata_.items) {
      if (item.is_user() && item.id == id) {
        found = item;
        have = true;
      }
    }
  }
  if (!have) {
    return Status(Code::kNotFound,
                  file_->path().string() + ": no user metadata item " + id.ToString());
  }
  std::vector<std::byte> bytes(found.length);
  if (found.length != 0)
    VDISK_RETURN_IF_ERROR(reader_.Read(metadata_offset_ + found.offset, bytes));
  return bytes;
}

Status VhdxImage::SetUserMetadata(const Guid& id, std::span<const std::byte> data) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  if (data.size() > kMaxMetadataItemLength) {
    return Status(Code::kInvalidParameter, "user metadata item of " + std::to_string(data.size()) +
                                               " bytes exceeds the 1 MiB limit of a VHDX item");
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  std::vector<MetadataItem> items = metadata_.items;
  VDISK_ASSIGN_OR_RETURN(
      const std::uint32_t offset,
      PlaceItem(items, id, true, kMetadataIsUser, static_cast<std::uint32_t>(data.size())));
  std::vector<std::pair<std::uint32_t, std::vector<std::byte>>> payload;
  if (!data.empty()) payload.emplace_back(offset, std::vector<std::byte>(data.begin(), data.end()));
  return CommitMetadata(std::move(items), payload);
}

Status VhdxImage::DeleteUserMetadata(const Guid& id) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  {
    std::lock_guard lock(metadata_mutex_);
    const bool exists =
        std::any_of(metadata_.items.begin(), metadata_.items.end(),
                    [&](const MetadataItem& i) { return i.is_user() && i.id == id; });
    if (!exists) {
      return Status(Code::kNotFound,
                    file_->path().string() + ": no user metadata item " + id.ToString());
    }
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  std::vector<MetadataItem> items = metadata_.items;
  const auto it = std::find_if(items.begin(), items.end(),
                               [&](const MetadataItem& i) { return i.is_user() && i.id == id; });
  if (it == items.end()) {
    return Status(Code::kNotFound,
                  file_->path().string() + ": no user metadata item " + id.ToString());
  }
  items.erase(it);
  return CommitMetadata(std::move(items), {});
}

// --- smallest safe size ------------------------------------------------------------------------

Result<std::uint64_t> VhdxImage::SmallestSafeVirtualSize() const { return SmallestSafeSizeOf(*this); }

}  // namespace vdisk::vhdx
