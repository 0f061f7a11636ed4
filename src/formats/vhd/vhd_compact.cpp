// VhdImage::Compact (CompactVirtualDisk for VHD): the zero scan, block moves and the footer.
//
// Every step runs with the disk's I/O drained (CompactEnvironment::Exclusive), so no request
// holds a BAT entry the step changes: the lock-free "entries only go from unallocated to
// allocated" rule of vhd_image.h holds for everything that runs between steps.
//
// Crash safety (a process killed at any point leaves a file that opens and reads as before):
//  - Release: the block's bytes read as zeros (and, differencing, the parent reads zeros under
//    its present sectors), so the BAT sector that says "unallocated" changes no byte whether it
//    lands or not. The BAT is flushed before the space is used again.
//  - Move: the block (bitmap and data) is copied into a hole nothing references, flushed, then
//    the BAT sector points at the copy and is flushed. Until then the old copy is the one in use;
//    after it, the old space is unreferenced and only then may be cut off.
//  - Truncation: a footer copy is written at the new end and flushed, then the file is cut after
//    it. Before the cut the old end footer is the last sector; after it the new one.
#include <algorithm>
#include <cstring>
#include <map>
#include <string>

#include "base/bytes.h"
#include "formats/compaction.h"
#include "formats/vhd/vhd_image.h"

namespace vdisk::vhd {
namespace {

// One zero-scan step reads at most this much before it commits what it found and lets I/O in.
constexpr std::uint64_t kScanStepBytes = 64ull << 20;

}  // namespace

Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> VhdImage::MetadataRanges() {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  ranges.emplace_back(0, kFooterSize);
  Footer footer;
  std::memcpy(&footer, footer_.data(), sizeof footer);
  const std::uint64_t header_offset = footer.data_offset.get();
  ranges.emplace_back(header_offset, header_offset + kDynamicHeaderSize);
  ranges.emplace_back(table_offset_,
                      table_offset_ + RoundUp(std::uint64_t{bat_.size()} * 4, kSectorSize));
  // Parent locator data is re-read: it may have moved since the image was opened.
  std::array<std::byte, kDynamicHeaderSize> bytes;
  VDISK_RETURN_IF_ERROR(file_->ReadAt(header_offset, bytes));
  DynamicHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  for (const ParentLocatorEntry& entry : header.parent_locators) {
    if (entry.platform_code.get() == 0) continue;
    const std::uint64_t offset = entry.platform_data_offset.get();
    const std::uint64_t length = entry.platform_data_length.get();
    std::uint64_t space = entry.platform_data_space.get();
    // The spec counts the space in sectors, Windows writes bytes: whichever covers the data.
    if (space < length) space *= kSectorSize;
    const std::uint64_t extent = std::min<std::uint64_t>(std::max(space, length), kMaxLocatorBytes);
    if (extent == 0) continue;
    ranges.emplace_back(offset, offset + RoundUp(extent, kSectorSize));
  }
  return ranges;
}

Result<CompactReport> VhdImage::Compact(const CompactOptions& options, CompactEnvironment& env) {
  compaction::Steps steps;
  steps.subtype = subtype_;
  steps.read_only = read_only_;
  steps.blocks = bat_.size();
  for (const auto& slot : bat_) steps.allocated += slot.load(std::memory_order_acquire) != kUnallocated;
  steps.release_zero_blocks = [&](std::uint64_t first, CompactReport& report,
                                  std::uint64_t& next) {
    std::uint32_t after = static_cast<std::uint32_t>(first);
    const Status status = ReleaseZeroBlocks(static_cast<std::uint32_t>(first),
                                            static_cast<std::uint32_t>(bat_.size()), env, report,
                                            after);
    next = after;
    return status;
  };
  steps.layout = [&]() -> Result<std::vector<compaction::LayoutItem>> {
    std::vector<compaction::LayoutItem> items;
    VDISK_ASSIGN_OR_RETURN(const auto metadata, MetadataRanges());
    for (const auto& [start, end] : metadata) items.push_back({start, end - start, 0, false});
    const std::uint64_t slot = std::uint64_t{bitmap_bytes_} + block_size_;
    for (std::uint32_t b = 0; b < bat_.size(); ++b) {
      const std::uint32_t entry = bat_[b].load(std::memory_order_acquire);
      if (entry != kUnallocated) items.push_back({BlockFileOffset(entry), slot, b, true});
    }
    return items;
  };
  // Blocks we allocate start their data on 4 KiB; an image laid out that way stays so. Others
  // (qemu packs blocks end to end) fill holes sector-aligned, which is what their holes fit.
  const bool aligned = is_4k_aligned();
  const std::uint32_t bitmap = bitmap_bytes_;
  steps.place = [aligned, bitmap](std::uint64_t cursor, std::uint64_t) {
    const std::uint64_t at = RoundUp(cursor, kSectorSize);
    return aligned ? RoundUp(at + bitmap, kDataAlignment) - bitmap : at;
  };
  steps.move = [&](const compaction::PlannedMove& move) {
    return MoveBlock(static_cast<std::uint32_t>(move.id), move.from, move.to);
  };
  steps.truncate = [&] { return TruncateAfterLastBlock(); };
  return compaction::Run(options, env, *file_, steps);
}

Status VhdImage::ReleaseZeroBlocks(std::uint32_t first, std::uint32_t end, CompactEnvironment& env,
                                   CompactReport& report, std::uint32_t& next) {
  std::vector<std::byte> buffer;
  std::vector<std::uint8_t> bitmap;
  std::vector<std::uint32_t> released;
  std::uint64_t read = 0;
  const bool differencing = subtype_ == DiskSubtype::kDifferencing;
  std::uint32_t block = first;
  for (; block < end && read < kScanStepBytes; ++block) {
    const std::uint32_t entry = bat_[block].load(std::memory_order_acquire);
    if (entry == kUnallocated) continue;
    ++report.blocks_scanned;
    const std::uint64_t virtual_start = std::uint64_t{block} * block_size_;
    const std::uint64_t bytes = std::min<std::uint64_t>(block_size_, size_ - virtual_start);
    const std::uint64_t data = BlockFileOffset(entry) + bitmap_bytes_;
    read += bytes;
    if (!differencing) {
      VDISK_ASSIGN_OR_RETURN(const bool zero, compaction::RangeIsZero(*file_, data, bytes, buffer));
      if (zero) released.push_back(block);
      continue;
    }
    // Differencing: the sectors the bitmap marks present must be zeros, and so must the parent
    // under them; the others read the parent before and after.
    bitmap.resize(bitmap_bytes_);
    VDISK_RETURN_IF_ERROR(
        file_->ReadAt(BlockFileOffset(entry), std::as_writable_bytes(std::span(bitmap))));
    auto present = [&](std::uint64_t s) { return ((bitmap[s / 8] >> (7 - s % 8)) & 1) != 0; };
    const std::uint64_t sectors = bytes / kSectorSize;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> runs;
    bool zero = true;
    for (std::uint64_t s = 0; s < sectors && zero;) {
      if (!present(s)) {
        ++s;
        continue;
      }
      std::uint64_t e = s + 1;
      while (e < sectors && present(e)) ++e;
      VDISK_ASSIGN_OR_RETURN(zero, compaction::RangeIsZero(*file_, data + s * kSectorSize,
                                                           (e - s) * kSectorSize, buffer));
      runs.emplace_back(s, e);
      s = e;
    }
    for (const auto& [s, e] : runs) {
      if (!zero) break;
      VDISK_ASSIGN_OR_RETURN(zero, env.BelowReadsZero(virtual_start + s * kSectorSize,
                                                      (e - s) * kSectorSize));
    }
    if (zero) released.push_back(block);
  }
  next = block;
  if (released.empty()) return Status::Ok();

  // The entries in memory first (nothing reads them while I/O is drained), then each BAT sector
  // once, from memory.
  for (const std::uint32_t b : released) bat_[b].store(kUnallocated, std::memory_order_release);
  std::uint32_t last_sector = kUnallocated;
  for (const std::uint32_t b : released) {
    const std::uint32_t sector = b / kBatEntriesPerSector;
    if (sector == last_sector) continue;
    last_sector = sector;
    VDISK_RETURN_IF_ERROR(WriteBatSector(b, kUnallocated));
  }
  if (differencing) {
    std::lock_guard lock(bitmap_mutex_);
    for (const std::uint32_t b : released) {
      if (auto it = bitmap_cache_.find(b); it != bitmap_cache_.end()) {
        cached_bitmap_bytes_ -= it->second.size();
        bitmap_cache_.erase(it);
      }
    }
  }
  report.blocks_released += released.size();
  // Durable before a move may put another block into the released space.
  return file_->Flush();
}

Status VhdImage::MoveBlock(std::uint32_t block, std::uint64_t from, std::uint64_t to) {
  std::lock_guard lock(allocation_mutex_);
  if (bat_[block].load(std::memory_order_acquire) != from / kSectorSize) return Status::Ok();
  const std::uint64_t slot = std::uint64_t{bitmap_bytes_} + block_size_;
  VDISK_ASSIGN_OR_RETURN(const platform::CopyMethod method, file_->CopyFrom(*file_, from, to, slot));
  (void)method;
  VDISK_RETURN_IF_ERROR(file_->Flush());
  const auto entry = static_cast<std::uint32_t>(to / kSectorSize);
  VDISK_RETURN_IF_ERROR(WriteBatSector(block, entry));
  VDISK_RETURN_IF_ERROR(file_->Flush());
  bat_[block].store(entry, std::memory_order_release);
  return Status::Ok();
}

Status VhdImage::TruncateAfterLastBlock() {
  VDISK_ASSIGN_OR_RETURN(const auto metadata, MetadataRanges());
  std::lock_guard lock(allocation_mutex_);
  std::uint64_t end = compaction::EndOfRanges(metadata);
  const std::uint64_t slot = std::uint64_t{bitmap_bytes_} + block_size_;
  for (const auto& entry : bat_) {
    const std::uint32_t e = entry.load(std::memory_order_acquire);
    if (e != kUnallocated) end = std::max(end, BlockFileOffset(e) + slot);
  }
  end = RoundUp(end, kSectorSize);
  if (end >= footer_offset_) return Status::Ok();
  VDISK_RETURN_IF_ERROR(file_->WriteAt(end, footer_));
  VDISK_RETURN_IF_ERROR(file_->Flush());
  VDISK_RETURN_IF_ERROR(file_->Resize(end + kFooterSize));
  VDISK_RETURN_IF_ERROR(file_->Flush());
  footer_offset_ = end;
  return Status::Ok();
}

}  // namespace vdisk::vhd
