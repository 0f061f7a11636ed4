// VhdxImage::Compact (CompactVirtualDisk for VHDX): the zero scan, block moves, truncation.
//
// Every step runs with the disk's I/O drained (CompactEnvironment::Exclusive), so no request
// holds a BAT entry that the step changes, and every BAT and sector bitmap change goes through
// the log (vhdx_image.h), so a step lands whole or not at all.
//
// Crash safety (a process killed at any point leaves a file that opens, with replay, and reads
// as before):
//  - Release: a block whose bytes read as zeros becomes NOT_PRESENT (differencing: only where
//    the parent reads zeros under its present sectors, and its sector bitmap bits are cleared in
//    the same log entry; elsewhere a fully present block becomes PAYLOAD_BLOCK_ZERO, which reads
//    zeros without falling through, MS-VHDX §2.5.1.1). Either state reads as the block did.
//  - Move: the block is copied into a hole nothing references and flushed; then one log entry
//    points its BAT entry at the copy. Until the entry lands the old copy is in use; the old
//    space is reused or cut off only after later flushes.
//  - Truncation: the log session ends first (flush, LogGuid cleared), because a log entry's
//    FlushedFileOffset beyond the end of a cut file would make it look truncated (§2.3.3); then
//    the file is cut after the last block in use.
// The DataWriteGuid does not change (the virtual disk's content does not), so differencing
// children of this file stay linked to it.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "formats/compaction.h"
#include "formats/vhdx/vhdx_image.h"

namespace vdisk::vhdx {
namespace {

// One zero-scan step reads at most this much before it commits what it found and lets I/O in.
constexpr std::uint64_t kScanStepBytes = 128ull << 20;
// Sectors one zero-scan step may stage: its log entry stays well inside a 1 MiB log.
constexpr std::size_t kMaxStagedSectors = 48;

bool Present(std::uint8_t state) {
  return state == kPayloadFullyPresent || state == kPayloadPartiallyPresent;
}

}  // namespace

Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> VhdxImage::FixedRanges() const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  ranges.emplace_back(0, kHeaderSectionSize);
  if (log_length_ != 0) ranges.emplace_back(log_offset_, log_offset_ + log_length_);
  ranges.emplace_back(bat_offset_, bat_offset_ + bat_length_);
  ranges.emplace_back(metadata_offset_, metadata_offset_ + metadata_length_);
  // Regions this implementation does not know (optional ones open fine) stay where they are.
  std::vector<std::byte> table(kRegionTableSize);
  for (const std::uint64_t offset : {kRegionTable1Offset, kRegionTable2Offset}) {
    VDISK_RETURN_IF_ERROR(reader_.Read(offset, table));
    RegionTableHeader header;
    std::memcpy(&header, table.data(), sizeof header);
    if (header.signature.get() != kRegionTableSignature ||
        header.checksum.get() != Crc32cWithZeroedField(table, offsetof(RegionTableHeader, checksum)) ||
        header.entry_count.get() > kMaxRegionEntries) {
      continue;
    }
    for (std::uint32_t i = 0; i < header.entry_count.get(); ++i) {
      RegionTableEntry entry;
      std::memcpy(&entry, table.data() + sizeof(RegionTableHeader) + i * sizeof entry,
                  sizeof entry);
      ranges.emplace_back(entry.file_offset.get(), entry.file_offset.get() + entry.length.get());
    }
    break;
  }
  return ranges;
}

Result<CompactReport> VhdxImage::Compact(const CompactOptions& options, CompactEnvironment& env) {
  compaction::Steps steps;
  steps.subtype = subtype_;
  steps.read_only = read_only_;
  steps.blocks = geometry_.payload_blocks;
  for (std::uint64_t b = 0; b < steps.blocks; ++b) {
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(geometry_.PayloadIndex(b)));
    steps.allocated += Present(BatState(entry));
  }
  // MS-VHDX §2.2.2: a new FileWriteGuid before the first change; the DataWriteGuid stays.
  steps.begin_changes = [&] { return BeginSession(/*user_data=*/false); };
  steps.release_zero_blocks = [&](std::uint64_t first, CompactReport& report,
                                  std::uint64_t& next) {
    return ReleaseZeroBlocks(first, geometry_.payload_blocks, env, report, next);
  };
  steps.layout = [&]() -> Result<std::vector<compaction::LayoutItem>> {
    std::vector<compaction::LayoutItem> items;
    VDISK_ASSIGN_OR_RETURN(const auto fixed, FixedRanges());
    for (const auto& [start, end] : fixed) items.push_back({start, end - start, 0, false});
    std::uint64_t file_size = 0;
    {
      std::lock_guard lock(update_mutex_);
      file_size = physical_size_;
    }
    const std::uint64_t bs = geometry_.block_size;
    for (std::uint64_t b = 0; b < geometry_.payload_blocks; ++b) {
      const std::uint64_t index = geometry_.PayloadIndex(b);
      VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
      if (!Present(BatState(entry))) continue;
      const std::uint64_t at = BatFileOffset(entry);
      items.push_back({at, std::min(bs, file_size > at ? file_size - at : bs), index, true});
    }
    for (std::uint64_t c = 0; c < geometry_.bitmap_blocks; ++c) {
      const std::uint64_t index = geometry_.BitmapIndex(c);
      if (index >= geometry_.entry_count) break;
      VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
      if (BatState(entry) != kBitmapPresent) continue;
      items.push_back({BatFileOffset(entry), kSectorBitmapBlockSize, index, true});
    }
    return items;
  };
  steps.floor = kHeaderSectionSize;
  steps.place = [](std::uint64_t cursor, std::uint64_t) { return RoundUp(cursor, kAlignment); };
  steps.move = [&](const compaction::PlannedMove& move) {
    return MoveBlock(move.id, move.from, move.to, move.length);
  };
  steps.truncate = [&] { return TruncateAfterLastBlock(); };
  return compaction::Run(options, env, *file_, steps);
}

Status VhdxImage::ReleaseZeroBlocks(std::uint64_t first, std::uint64_t end, CompactEnvironment& env,
                                    CompactReport& report, std::uint64_t& next) {
  std::lock_guard lock(update_mutex_);
  const std::uint64_t bs = geometry_.block_size;
  const std::uint32_t ls = geometry_.logical_sector_size;
  std::vector<std::byte> buffer;
  StagedSectors staged;
  struct Change {
    std::uint64_t index;
    std::uint64_t entry;
    std::uint64_t block;
    std::uint64_t bitmap_entry;  // present sector bitmap block whose bits were cleared, or 0
  };
  std::vector<Change> changes;
  std::uint64_t read = 0;
  std::uint64_t block = first;
  for (; block < end && read < kScanStepBytes && staged.size() < kMaxStagedSectors; ++block) {
    const std::uint64_t index = geometry_.PayloadIndex(block);
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
    const std::uint8_t state = BatState(entry);
    if (!Present(state)) continue;
    ++report.blocks_scanned;
    const std::uint64_t virtual_start = block * bs;
    const std::uint64_t bytes = std::min(bs, geometry_.virtual_size - virtual_start);
    const std::uint64_t data = BatFileOffset(entry);
    read += bytes;
    // The runs of sectors this block holds: all of it, or what its bitmap marks present.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> runs;
    if (state == kPayloadPartiallyPresent) {
      const std::uint64_t sectors = bytes / ls;
      for (std::uint64_t s = 0; s < sectors;) {
        VDISK_ASSIGN_OR_RETURN(const auto run, BitmapRun(block, s, sectors - s));
        if (run.first) runs.emplace_back(s * ls, run.second * ls);
        s += std::max<std::uint64_t>(run.second, 1);
      }
    } else {
      runs.emplace_back(0, bytes);
    }
    bool zero = true;
    for (const auto& [at, n] : runs) {
      VDISK_ASSIGN_OR_RETURN(zero, compaction::RangeIsZero(*file_, data + at, n, buffer));
      if (!zero) break;
    }
    if (!zero) continue;
    bool below_zero = !geometry_.has_parent;
    if (geometry_.has_parent) {
      below_zero = true;
      for (const auto& [at, n] : runs) {
        VDISK_ASSIGN_OR_RETURN(below_zero, env.BelowReadsZero(virtual_start + at, n));
        if (!below_zero) break;
      }
    }
    Change change{index, 0, block, 0};
    if (below_zero) {
      change.entry = MakeBatEntry(kPayloadNotPresent, 0);
      if (geometry_.has_parent) {
        // A later partial allocation of this block sets only the bits it writes: bits left
        // set here would make it show its fresh zeros instead of the parent's sectors (equal
        // today, the parent reads zeros there, but not once the child is re-pointed).
        VDISK_ASSIGN_OR_RETURN(const std::uint64_t bitmap_entry,
                               bat_->Get(geometry_.BitmapIndex(block / geometry_.chunk_ratio)));
        if (BatState(bitmap_entry) == kBitmapPresent) {
          bool cleared = false;
          VDISK_RETURN_IF_ERROR(StageBitmapBits(staged, block, bitmap_entry, 0,
                                                geometry_.sectors_per_block(), false, cleared));
          change.bitmap_entry = bitmap_entry;
        }
      }
    } else if (state == kPayloadFullyPresent) {
      change.entry = MakeBatEntry(kPayloadZero, 0);
    } else {
      continue;  // a partial block over a parent that is not zero keeps shadowing it
    }
    VDISK_RETURN_IF_ERROR(StageBatEntry(staged, index, change.entry));
    changes.push_back(change);
  }
  next = block;
  if (changes.empty()) return Status::Ok();
  VDISK_RETURN_IF_ERROR(Commit(staged));
  for (const Change& change : changes) {
    if (change.bitmap_entry != 0) {
      CacheStagedBitmapSectors(staged, change.block / geometry_.chunk_ratio, change.bitmap_entry);
    }
    bat_->Set(change.index, change.entry);
    if (BatState(change.entry) == kPayloadZero) {
      ++report.blocks_zeroed;
    } else {
      ++report.blocks_released;
    }
  }
  // Durable before a move may put another block into the released space.
  VDISK_RETURN_IF_ERROR(file_->Flush());
  apply_unflushed_ = false;
  return Status::Ok();
}

Status VhdxImage::MoveBlock(std::uint64_t index, std::uint64_t from, std::uint64_t to,
                            std::uint64_t length) {
  std::lock_guard lock(update_mutex_);
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
  const std::uint8_t state = BatState(entry);
  const bool bitmap = geometry_.has_parent && (index + 1) % (geometry_.chunk_ratio + 1) == 0;
  if (!(bitmap ? state == kBitmapPresent : Present(state)) || BatFileOffset(entry) != from) {
    return Status::Ok();  // changed since the plan
  }
  VDISK_ASSIGN_OR_RETURN(const platform::CopyMethod method,
                         file_->CopyFrom(*file_, from, to, length));
  (void)method;
  // The copy is durable before the BAT points at it (and the sectors earlier entries applied
  // are durable with it).
  VDISK_RETURN_IF_ERROR(file_->Flush());
  apply_unflushed_ = false;
  StagedSectors staged;
  const std::uint64_t moved = MakeBatEntry(state, to);
  VDISK_RETURN_IF_ERROR(StageBatEntry(staged, index, moved));
  VDISK_RETURN_IF_ERROR(Commit(staged));
  bat_->Set(index, moved);
  return Status::Ok();
}

Status VhdxImage::TruncateAfterLastBlock() {
  VDISK_ASSIGN_OR_RETURN(const auto fixed, FixedRanges());
  std::lock_guard lock(update_mutex_);
  std::uint64_t end = compaction::EndOfRanges(fixed);
  for (std::uint64_t index = 0; index < geometry_.entry_count; ++index) {
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t entry, bat_->Get(index));
    const bool bitmap = (index + 1) % (geometry_.chunk_ratio + 1) == 0;
    const std::uint8_t state = BatState(entry);
    if (bitmap ? (geometry_.has_parent && state == kBitmapPresent) : Present(state)) {
      end = std::max(end, BatFileOffset(entry) +
                              (bitmap ? kSectorBitmapBlockSize : geometry_.block_size));
    }
  }
  end = RoundUp(end, kAlignment);
  if (end >= physical_size_) return Status::Ok();
  if (journal_failed_) {
    return Status(Code::kIoError, file_->path().string() +
                                      ": an earlier metadata update failed half-way; reopen the "
                                      "image to replay its log");
  }
  // §2.2.2: a new FileWriteGuid before the file changes (a no-op after a scan or a move).
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  if (log_active_) VDISK_RETURN_IF_ERROR(EndLogSessionLocked());
  VDISK_RETURN_IF_ERROR(file_->Resize(end));
  VDISK_RETURN_IF_ERROR(file_->Flush());
  physical_size_ = end;
  alloc_end_ = end;
  return Status::Ok();
}

}  // namespace vdisk::vhdx
