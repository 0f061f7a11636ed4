// ExportTarget: what an NBD export serves, as the server (nbd_server.h) sees it.
//
// A byte-addressed device of fixed size. The server checks every request against size() and
// read_only() before it calls the target, so a target sees only in-range requests, and writes
// only when it is writable; it must still accept any alignment (NBD clients may send 1-byte
// requests). DiskExportTarget (disk_export_target.h) serves an opened virtual disk; the unit
// tests serve memory.
//
// Thread safety: every method may be called concurrently from several connection threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

namespace vdisk::attach {

// One run of the base:allocation metadata context (NBD_CMD_BLOCK_STATUS).
struct AllocationExtent {
  std::uint64_t length = 0;  // bytes; > 0
  bool hole = false;         // NBD_STATE_HOLE: no storage behind it
  bool zero = false;         // NBD_STATE_ZERO: reads as zeros
  friend bool operator==(const AllocationExtent&, const AllocationExtent&) = default;
};

// NBD_INFO_BLOCK_SIZE ("Block size constraints" of the NBD spec). The defaults are the spec's
// defaults for a server that advertises nothing, with the maximum the server accepts.
struct BlockSizeConstraints {
  std::uint32_t minimum = 1;          // power of 2, at most 64 KiB
  std::uint32_t preferred = 4096;     // power of 2, at least max(minimum, 512)
  std::uint32_t maximum = 32u << 20;  // a multiple of minimum
};

class ExportTarget {
 public:
  virtual ~ExportTarget() = default;

  // Bytes the export exposes.
  virtual std::uint64_t size() const = 0;
  // Writes, trims and write-zeroes are refused (EPERM) without reaching the target.
  virtual bool read_only() const = 0;
  virtual BlockSizeConstraints block_size() const { return {}; }

  // REQUIRES for all ranged calls: offset + length <= size().
  virtual Status Read(std::uint64_t offset, std::span<std::byte> out) = 0;
  virtual Status Write(std::uint64_t offset, std::span<const std::byte> data) = 0;
  // Makes every completed write durable.
  virtual Status Flush() = 0;
  // A hint that the range is no longer needed; it may be ignored (the default).
  virtual Status Trim(std::uint64_t offset, std::uint64_t length) {
    (void)offset;
    (void)length;
    return Status::Ok();
  }
  // Makes the range read as zeros. `no_hole` (NBD_CMD_FLAG_NO_HOLE): the range must end up
  // allocated; without it the target may leave or make holes.
  virtual Status WriteZeroes(std::uint64_t offset, std::uint64_t length, bool no_hole) = 0;
  // Allocation of [offset, offset+length), in order from `offset`. May cover less than
  // `length` (at least one extent) but never more. REQUIRES: length > 0.
  virtual Result<std::vector<AllocationExtent>> BlockStatus(std::uint64_t offset,
                                                            std::uint64_t length) = 0;
};

}  // namespace vdisk::attach
