// DiskExportTarget: an opened virtual disk (OpenDisk) as an NBD export's target.
//
// Reads, writes and flushes go through OpenDisk, so a running mirror (which intercepts
// OpenDisk::Write) sees every write that arrives through the export, and a mirror break that
// switches the active disk switches the export with it. The disk only takes whole logical
// sectors; NBD clients may send any alignment, so an unaligned write becomes a read-modify-write
// of the sectors it touches. Every write holds a lock on its sector range for its duration, so
// two unaligned writes into one sector (or an unaligned write and an aligned one) never undo
// each other.
//
// Allocation (NBD_CMD_BLOCK_STATUS, base:allocation) comes from the images' maps, top first: a
// range some layer holds as data is allocated; a layer that maps it as zeros, or no layer at
// all, makes it a hole that reads as zeros; "not here" in a differencing layer falls through to
// the next one.
//
// ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE: the export can be a window of the disk; offsets
// are then relative to the window's start.
//
// Thread safety: as ExportTarget, every method may be called concurrently.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "attach/export_target.h"
#include "core/open_disk.h"

namespace vdisk::attach {

struct DiskExportOptions {
  // The export refuses writes even if the disk takes them (ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY).
  // A disk opened read-only always gives a read-only export.
  bool read_only = false;
  // Expose only [offset, offset + length) of the disk.
  struct Range {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };
  std::optional<Range> restricted_range;
};

class DiskExportTarget final : public ExportTarget {
 public:
  // Fails with kInvalidParameter if the restricted range is empty, not a multiple of the disk's
  // logical sector size at both ends, or reaches past the end of the disk.
  // REQUIRES: disk != nullptr.
  static Result<std::unique_ptr<DiskExportTarget>> Create(std::shared_ptr<OpenDisk> disk,
                                                          const DiskExportOptions& options);

  DiskExportTarget(std::shared_ptr<OpenDisk> disk, std::uint64_t base, std::uint64_t size,
                   std::uint32_t sector_size, bool read_only);

  std::uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  // Minimum: the logical sector size; preferred: 4 KiB (or the sector size if larger);
  // maximum: 32 MiB.
  BlockSizeConstraints block_size() const override;

  Status Read(std::uint64_t offset, std::span<std::byte> out) override;
  Status Write(std::uint64_t offset, std::span<const std::byte> data) override;
  Status Flush() override;
  // No format can discard yet: a no-op.
  Status Trim(std::uint64_t offset, std::uint64_t length) override;
  // Writes zeros where the range does not already read as zeros (everywhere with `no_hole`).
  Status WriteZeroes(std::uint64_t offset, std::uint64_t length, bool no_hole) override;
  Result<std::vector<AllocationExtent>> BlockStatus(std::uint64_t offset,
                                                    std::uint64_t length) override;

  const std::shared_ptr<OpenDisk>& disk() const { return disk_; }
  std::uint32_t sector_size() const { return sector_size_; }

  // At most this many extents in one BlockStatus answer (the NBD spec lets a server answer
  // part of a range; clients ask again from where the answer ended).
  static constexpr std::size_t kMaxExtents = 16384;

 private:
  // Exclusive locks on byte ranges of the disk; a lock waits for every overlapping one.
  class RangeLock {
   public:
    void Lock(std::uint64_t begin, std::uint64_t end);
    void Unlock(std::uint64_t begin, std::uint64_t end);

   private:
    std::mutex mutex_;
    std::condition_variable released_;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> held_;
  };

  Status CheckRange(std::uint64_t offset, std::uint64_t length, const char* what) const;
  std::uint64_t AlignDown(std::uint64_t v) const { return v - v % sector_size_; }
  std::uint64_t AlignUp(std::uint64_t v) const { return AlignDown(v + sector_size_ - 1); }

  const std::shared_ptr<OpenDisk> disk_;
  const std::uint64_t base_;  // the window's first byte on the disk
  const std::uint64_t size_;
  const std::uint32_t sector_size_;
  const bool read_only_;
  RangeLock write_lock_;
};

}  // namespace vdisk::attach
