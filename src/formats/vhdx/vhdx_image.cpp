#include "formats/vhdx/vhdx_image.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "base/bytes.h"
#include "formats/partition_table.h"
#include "formats/vhdx/vhdx_create.h"

namespace vdisk::vhdx {
namespace {

// Bits of one 4 KiB sector of a sector bitmap block.
constexpr std::uint64_t kBitsPerBitmapSector = kLogSectorSize * 8;
constexpr std::uint64_t kBitmapSectorsPerBlock = kSectorBitmapBlockSize / kLogSectorSize;

std::uint64_t BitmapKey(std::uint64_t chunk, std::uint64_t sector) {
  return chunk * kBitmapSectorsPerBlock + sector;
}

}  // namespace

// --- construction ------------------------------------------------------------------------------

VhdxImage::VhdxImage(std::unique_ptr<platform::File> file, const OpenOptions& options)
    : file_(std::move(file)),
      read_only_(options.read_only || !file_->writable()),
      write_hardening_(!options.no_write_hardening),
      ignore_relative_parent_locator_(options.ignore_relative_parent_locator),
      keep_data_write_guid_(options.keep_data_write_guid),
      reader_(*file_) {}

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

Status VhdxImage::UpdateHeadersLocked(const std::function<void(Header&)>& edit) {
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
                                  std::uint64_t count, bool set, bool& changed) {
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
      // §2.4: bit 0 of byte 0 is the first sector (LSB first). A whole byte already as wanted
      // is skipped.
      const std::uint8_t unchanged = set ? 0xFF : 0x00;
      if ((b % 8) == 0 && sector_end - bit >= 8 && bytes[b / 8] == unchanged) {
        bit += 7;
        continue;
      }
      const auto mask = static_cast<std::uint8_t>(1u << (b % 8));
      if (((bytes[b / 8] & mask) != 0) != set) {
        bytes[b / 8] = static_cast<std::uint8_t>(set ? bytes[b / 8] | mask : bytes[b / 8] & ~mask);
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
  VDISK_RETURN_IF_ERROR(StageBitmapBits(staged, block, bitmap_entry, first_sector, count, true, changed));
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
        StageBitmapBits(staged, block, bitmap_entry, within / ls, data.size() / ls, true, changed));
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

// --- smallest safe size ------------------------------------------------------------------------

Result<std::uint64_t> VhdxImage::SmallestSafeVirtualSize() const { return SmallestSafeSizeOf(*this); }

}  // namespace vdisk::vhdx
