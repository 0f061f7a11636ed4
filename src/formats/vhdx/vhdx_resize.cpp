// VhdxImage::Resize: ResizeVirtualDisk and ExpandVirtualDisk for fixed and dynamic VHDX files.
//
// The Virtual Disk Size metadata item (MS-VHDX §2.6.2.2) says how large the disk is; it changes
// in one log entry (§2.3), the last step, so a process killed at any point leaves the old disk or
// the new one. A grow prepares everything the new size needs first, where the old size does not
// look:
//  (1) the last block's bytes past the old size read as zeros again (a shrink leaves data there):
//      zeroed in place when the block's file space covers them, else the block's data moves to a
//      new block at the end of the file and its BAT entry is journalled;
//  (2) BAT entries of the new blocks (§2.5): zero (NOT_PRESENT) for a dynamic disk, a new block
//      at the end of the file each (FULLY_PRESENT, the space reading as zeros) for a fixed one.
//      Entries past the old table's end are invisible to the old size, so they are journalled in
//      entries of a bounded size, with progress and cancellation between them. When the BAT
//      region is too small for the new table, a new region is written at the end of the file
//      (the old entries copied, the new ones after them) and the region tables (§2.2.3, both
//      copies) switch to it in the same log entry as the size;
//  (3) one log entry: the size item (and the region tables).
// A shrink is (3) alone; the entries past the new end stay until a later grow rewrites them in
// (2). The DataWriteGuid changes (BeginSession(true)): a differencing child of the old disk no
// longer matches, as ExpandVirtualDisk's documentation says of a chain.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "formats/vhdx/vhdx_image.h"

namespace vdisk::vhdx {
namespace {

// Sectors of BAT entries journalled per log entry (256 KiB of a 1 MiB log).
constexpr std::size_t kBatchSectors = 64;
constexpr std::uint64_t kCopyPiece = kMiB;


std::uint64_t LoadLe64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{std::to_integer<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

void StoreLe64(std::byte* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

}  // namespace

Status VhdxImage::Resize(std::uint64_t new_size, OperationControl& progress) {
  const std::string path = file_->path().string();
  VDISK_RETURN_IF_ERROR(CheckResize(*this, new_size, geometry_.logical_sector_size,
                                    kMaxVirtualSize, "64 TiB", progress));
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/true));
  std::lock_guard lock(update_mutex_);
  const Status status = ResizeLocked(new_size, progress);
  if (!status.ok() && status.code() != Code::kOperationAborted)
    return status.WithContext(path + ": resize");
  return status;
}

Status VhdxImage::ResizeLocked(std::uint64_t new_size, OperationControl& progress) {
  if (journal_failed_) {
    return Status(Code::kIoError,
                  "an earlier metadata update failed half-way; reopen the image to replay its log");
  }
  const bool harden = write_hardening_;
  auto flush = [&] { return harden ? file_->Flush() : Status::Ok(); };
  const BatGeometry old_g = geometry_;
  const BatGeometry new_g =
      BatGeometry::Compute(new_size, old_g.block_size, old_g.logical_sector_size, false);
  const std::uint64_t bs = old_g.block_size;
  const bool fixed = subtype_ == DiskSubtype::kFixed;

  std::uint32_t size_item = 0;
  bool have_size_item = false;
  for (const MetadataItem& item : metadata_.items) {
    if (!item.is_user() && item.id == kVirtualDiskSizeGuid && item.length >= 8) {
      size_item = item.offset;
      have_size_item = true;
    }
  }
  if (!have_size_item) return Status(Code::kInternal, "the Virtual Disk Size item is missing");

  // Space at the end of the file, reading as zeros.
  auto allocate = [&](std::uint64_t bytes) -> Result<std::uint64_t> {
    const std::uint64_t at = RoundUp(alloc_end_, kAlignment);
    const std::uint64_t end = at + bytes;
    if (end > physical_size_) {
      VDISK_RETURN_IF_ERROR(file_->Resize(end));
      physical_size_ = end;
    }
    alloc_end_ = end;
    return at;
  };

  std::uint64_t table_offset = bat_offset_;
  std::uint64_t table_length = bat_length_;
  StagedSectors staged;
  if (new_size > old_g.virtual_size) {
    // (1) The last block's tail.
    const std::uint64_t tail = old_g.virtual_size % bs;
    const std::uint64_t last = old_g.payload_blocks - 1;
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t last_entry, bat_->Get(old_g.PayloadIndex(last)));
    if (tail != 0 && BatState(last_entry) == kPayloadFullyPresent) {
      const std::uint64_t block = BatFileOffset(last_entry);
      const std::uint64_t owned = std::min<std::uint64_t>(bs, RoundUp(tail, kMiB));
      const std::uint64_t wanted = std::min<std::uint64_t>(bs, new_size - last * bs);
      std::vector<std::byte> buffer(static_cast<std::size_t>(std::min(kCopyPiece, bs)));
      if (wanted <= owned) {
        std::fill(buffer.begin(), buffer.end(), std::byte{0});
        for (std::uint64_t at = tail; at < wanted;) {
          const std::uint64_t n = std::min<std::uint64_t>(buffer.size(), wanted - at);
          VDISK_RETURN_IF_ERROR(
              file_->WriteAt(block + at, std::span(buffer).first(static_cast<std::size_t>(n))));
          at += n;
        }
        VDISK_RETURN_IF_ERROR(flush());
      } else {
        VDISK_ASSIGN_OR_RETURN(const std::uint64_t moved, allocate(bs));
        for (std::uint64_t at = 0; at < tail;) {
          const auto piece =
              std::span(buffer).first(static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), tail - at)));
          VDISK_RETURN_IF_ERROR(file_->ReadAt(block + at, piece));
          VDISK_RETURN_IF_ERROR(file_->WriteAt(moved + at, piece));
          at += piece.size();
        }
        VDISK_RETURN_IF_ERROR(flush());
        apply_unflushed_ = false;
        const std::uint64_t moved_entry = MakeBatEntry(kPayloadFullyPresent, moved);
        VDISK_RETURN_IF_ERROR(StageBatEntry(staged, old_g.PayloadIndex(last), moved_entry));
        VDISK_RETURN_IF_ERROR(Commit(staged));
        staged.clear();
        bat_->Set(old_g.PayloadIndex(last), moved_entry);
      }
    }
    if (progress.cancelled()) return ResizeCancelled(*file_);

    // (2) The new entries.
    const std::uint64_t group = new_g.chunk_ratio + 1;
    std::uint64_t first_new_block = 0;
    const std::uint64_t new_blocks = new_g.payload_blocks - old_g.payload_blocks;
    if (fixed && new_blocks > 0) {
      VDISK_ASSIGN_OR_RETURN(first_new_block, allocate(new_blocks * bs));
    }
    auto value_of = [&](std::uint64_t index) -> std::uint64_t {
      if ((index + 1) % group == 0 || !fixed) return 0;  // sector bitmap entry, or dynamic
      const std::uint64_t block = index - index / group;
      return MakeBatEntry(kPayloadFullyPresent, first_new_block + (block - old_g.payload_blocks) * bs);
    };
    const std::uint64_t first = old_g.entry_count;
    const std::uint64_t count = new_g.entry_count - first;
    const bool relocate = new_g.entry_count * 8 > bat_length_;
    if (relocate) {
      table_length = RoundUp(new_g.entry_count * 8, kMiB);
      VDISK_ASSIGN_OR_RETURN(table_offset, allocate(table_length));
      std::vector<std::byte> piece;
      for (std::uint64_t at = 0; at < table_length; at += kCopyPiece) {
        piece.assign(static_cast<std::size_t>(std::min(kCopyPiece, table_length - at)), std::byte{0});
        // Old entries, then the new ones, then zeros.
        const std::uint64_t old_bytes = first * 8;
        if (at < old_bytes) {
          const std::uint64_t n = std::min<std::uint64_t>(piece.size(), old_bytes - at);
          VDISK_RETURN_IF_ERROR(
              reader_.Read(bat_offset_ + at, std::span(piece).first(static_cast<std::size_t>(n))));
        }
        for (std::uint64_t i = std::max(first, at / 8);
             i < new_g.entry_count && i < (at + piece.size()) / 8; ++i) {
          StoreLe64(piece.data() + (i * 8 - at), value_of(i));
        }
        VDISK_RETURN_IF_ERROR(file_->WriteAt(table_offset + at, piece));
        progress.SetProgress(at / 8, table_length / 8 + 1);
        if (progress.cancelled()) return ResizeCancelled(*file_);
      }
      VDISK_RETURN_IF_ERROR(flush());
      apply_unflushed_ = false;
    } else {
      // Journalled in bounded entries; only entries that differ from what the file holds.
      std::vector<std::byte> current;
      for (std::uint64_t i = first; i < first + count;) {
        const std::uint64_t n = std::min<std::uint64_t>(kMiB / 8, first + count - i);
        current.resize(static_cast<std::size_t>(n * 8));
        VDISK_RETURN_IF_ERROR(reader_.Read(bat_offset_ + i * 8, current));
        for (std::uint64_t k = 0; k < n; ++k) {
          const std::uint64_t want = value_of(i + k);
          if (LoadLe64(current.data() + k * 8) != want)
            VDISK_RETURN_IF_ERROR(StageBatEntry(staged, i + k, want));
          if (staged.size() >= kBatchSectors) {
            VDISK_RETURN_IF_ERROR(Commit(staged));
            staged.clear();
            progress.SetProgress(i + k - first, count + 1);
            if (progress.cancelled()) return ResizeCancelled(*file_);
          }
        }
        i += n;
      }
    }
  }
  progress.SetProgress(1, 2);
  if (progress.cancelled()) return ResizeCancelled(*file_);

  // (3) The switch: the size item, with the region tables if the BAT moved.
  Le64 size_value;
  size_value.set(new_size);
  VDISK_RETURN_IF_ERROR(StageBytes(staged, metadata_offset_ + size_item,
                                   std::as_bytes(std::span(&size_value, 1))));
  if (table_offset != bat_offset_) {
    for (const std::uint64_t region_table : {kRegionTable1Offset, kRegionTable2Offset}) {
      std::vector<std::byte> table(kRegionTableSize);
      VDISK_RETURN_IF_ERROR(reader_.Read(region_table, table));
      auto header = LoadAs<RegionTableHeader>(table);
      bool found = false;
      if (header.signature.get() == kRegionTableSignature &&
          header.entry_count.get() <= kMaxRegionEntries) {
        for (std::uint32_t i = 0; i < header.entry_count.get(); ++i) {
          const std::size_t at = sizeof(RegionTableHeader) + i * sizeof(RegionTableEntry);
          auto entry = LoadAs<RegionTableEntry>(std::span(table).subspan(at));
          if (!(entry.guid == kBatRegionGuid)) continue;
          entry.file_offset.set(table_offset);
          entry.length.set(static_cast<std::uint32_t>(table_length));
          std::memcpy(table.data() + at, &entry, sizeof entry);
          found = true;
        }
      }
      if (!found) continue;  // a damaged copy stays damaged; Open uses the other one
      header.checksum.set(0);
      std::memcpy(table.data(), &header, sizeof header);
      header.checksum.set(Crc32cWithZeroedField(table, offsetof(RegionTableHeader, checksum)));
      std::memcpy(table.data(), &header, sizeof header);
      VDISK_RETURN_IF_ERROR(StageBytes(staged, region_table, std::span(table).first(kLogSectorSize)));
    }
  }
  if (LogEntryLength(staged.size(), 0) > log_length_) {
    return Status(Code::kNotSupported, "the size change of " + std::to_string(staged.size()) +
                                           " sectors does not fit in the " +
                                           std::to_string(log_length_) + "-byte log");
  }
  VDISK_RETURN_IF_ERROR(Commit(staged));

  // In memory, with I/O drained (Resize's contract).
  bat_offset_ = table_offset;
  bat_length_ = table_length;
  geometry_ = new_g;
  {
    std::lock_guard meta_lock(metadata_mutex_);
    metadata_.virtual_size = new_size;
  }
  bat_ = std::make_unique<VhdxBlockAllocationTable>(reader_, bat_offset_, new_g.entry_count,
                                                    kMaxResidentBatPages);
  progress.SetProgress(1, 1);
  return Status::Ok();
}

}  // namespace vdisk::vhdx
