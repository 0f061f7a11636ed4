#include "attach/disk_export_target.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <gsl/gsl>

namespace vdisk::attach {
namespace {

// Write-zeroes writes through a buffer of at most this many zeros; chunks start on multiples of
// it, so only the ends of an unaligned request need a read-modify-write.
constexpr std::uint64_t kZeroChunk = 1u << 20;

// Allocation of the disk range at `pos` (absolute, sector aligned) for at most `limit` bytes,
// walking the chain top first. The answer covers at least one sector (or `limit`, if less).
Result<AllocationExtent> Classify(const VirtualDisk& disk, std::uint64_t pos, std::uint64_t limit) {
  std::uint64_t length = limit;
  for (const auto& image : disk.chain()) {
    VDISK_ASSIGN_OR_RETURN(const Extent extent, image->Map(pos, length));
    length = std::min(length, extent.length);
    switch (extent.kind) {
      case Extent::Kind::kData:
        return AllocationExtent{length, false, false};
      case Extent::Kind::kZero:
        return AllocationExtent{length, true, true};
      case Extent::Kind::kParent:
        break;  // the next layer decides
    }
  }
  // No layer holds it (the base's "parent" ranges, or a chain opened without parents).
  return AllocationExtent{length, true, true};
}

}  // namespace

void DiskExportTarget::RangeLock::Lock(std::uint64_t begin, std::uint64_t end) {
  std::unique_lock lock(mutex_);
  released_.wait(lock, [&] {
    return std::none_of(held_.begin(), held_.end(),
                        [&](const auto& r) { return r.first < end && begin < r.second; });
  });
  held_.emplace_back(begin, end);
}

void DiskExportTarget::RangeLock::Unlock(std::uint64_t begin, std::uint64_t end) {
  {
    std::lock_guard lock(mutex_);
    const auto it = std::find(held_.begin(), held_.end(), std::make_pair(begin, end));
    if (it != held_.end()) held_.erase(it);
  }
  released_.notify_all();
}

Result<std::unique_ptr<DiskExportTarget>> DiskExportTarget::Create(
    std::shared_ptr<OpenDisk> disk, const DiskExportOptions& options) {
  Expects(disk != nullptr);
  const std::shared_ptr<VirtualDisk> active = disk->disk();
  const std::uint64_t disk_size = active->size();
  const std::uint32_t sector = active->sector_size();
  const std::string name = disk->key().string();
  std::uint64_t base = 0;
  std::uint64_t size = disk_size;
  if (options.restricted_range) {
    const auto& range = *options.restricted_range;
    if (range.length == 0 || range.offset % sector != 0 || range.length % sector != 0 ||
        range.offset > disk_size || range.length > disk_size - range.offset) {
      return Status(Code::kInvalidParameter,
                    name + ": restricted range of " + std::to_string(range.length) + " bytes at " +
                        std::to_string(range.offset) + " is empty, not a multiple of the " +
                        std::to_string(sector) + "-byte sector, or outside the " +
                        std::to_string(disk_size) + "-byte disk");
    }
    base = range.offset;
    size = range.length;
  }
  return std::make_unique<DiskExportTarget>(std::move(disk), base, size, sector,
                                            options.read_only || active->read_only());
}

DiskExportTarget::DiskExportTarget(std::shared_ptr<OpenDisk> disk, std::uint64_t base,
                                   std::uint64_t size, std::uint32_t sector_size, bool read_only)
    : disk_(std::move(disk)),
      base_(base),
      size_(size),
      sector_size_(sector_size),
      read_only_(read_only) {}

BlockSizeConstraints DiskExportTarget::block_size() const {
  BlockSizeConstraints c;
  c.minimum = sector_size_;
  c.preferred = std::max<std::uint32_t>(4096, sector_size_);
  c.maximum = 32u << 20;
  return c;
}

Status DiskExportTarget::CheckRange(std::uint64_t offset, std::uint64_t length,
                                    const char* what) const {
  if (offset > size_ || length > size_ - offset) {
    return Status(Code::kInvalidParameter, disk_->key().string() + ": " + what + " of " +
                                               std::to_string(length) + " bytes at " +
                                               std::to_string(offset) + " ends past the " +
                                               std::to_string(size_) + "-byte export");
  }
  return Status::Ok();
}

Status DiskExportTarget::Read(std::uint64_t offset, std::span<std::byte> out) {
  VDISK_RETURN_IF_ERROR(CheckRange(offset, out.size(), "read"));
  if (out.empty()) return Status::Ok();
  const std::uint64_t begin = base_ + offset;
  const std::uint64_t end = begin + out.size();
  if (begin % sector_size_ == 0 && end % sector_size_ == 0) return disk_->Read(begin, out);
  // Unaligned: read the sectors it touches and copy the part asked for.
  const std::uint64_t first = AlignDown(begin);
  std::vector<std::byte> sectors(AlignUp(end) - first);
  VDISK_RETURN_IF_ERROR(disk_->Read(first, sectors));
  std::memcpy(out.data(), sectors.data() + (begin - first), out.size());
  return Status::Ok();
}

Status DiskExportTarget::Write(std::uint64_t offset, std::span<const std::byte> data) {
  if (read_only_) {
    return Status(Code::kWriteProtect, disk_->key().string() + ": the export is read-only");
  }
  VDISK_RETURN_IF_ERROR(CheckRange(offset, data.size(), "write"));
  if (data.empty()) return Status::Ok();
  const std::uint64_t begin = base_ + offset;
  const std::uint64_t end = begin + data.size();
  const std::uint64_t first = AlignDown(begin);
  const std::uint64_t last = AlignUp(end);
  write_lock_.Lock(first, last);
  const auto unlock = gsl::finally([&] { write_lock_.Unlock(first, last); });
  if (first == begin && last == end) return disk_->Write(begin, data);

  // Read-modify-write of the partial sectors at either end.
  std::vector<std::byte> sectors(last - first);
  const std::span<std::byte> buffer(sectors);
  if (begin != first) {
    VDISK_RETURN_IF_ERROR(disk_->Read(first, buffer.first(sector_size_)));
  }
  if (end != last) {
    VDISK_RETURN_IF_ERROR(disk_->Read(last - sector_size_, buffer.last(sector_size_)));
  }
  std::memcpy(sectors.data() + (begin - first), data.data(), data.size());
  return disk_->Write(first, sectors);
}

Status DiskExportTarget::Flush() { return disk_->Flush(); }

Status DiskExportTarget::Trim(std::uint64_t offset, std::uint64_t length) {
  if (read_only_) {
    return Status(Code::kWriteProtect, disk_->key().string() + ": the export is read-only");
  }
  return CheckRange(offset, length, "trim");
}

Status DiskExportTarget::WriteZeroes(std::uint64_t offset, std::uint64_t length, bool no_hole) {
  if (read_only_) {
    return Status(Code::kWriteProtect, disk_->key().string() + ": the export is read-only");
  }
  VDISK_RETURN_IF_ERROR(CheckRange(offset, length, "write-zeroes"));
  const std::vector<std::byte> zeros(gsl::narrow<std::size_t>(std::min(length, kZeroChunk)));
  auto write_zeros = [&](std::uint64_t from, std::uint64_t to) -> Status {
    while (from < to) {
      const std::uint64_t next = std::min(to, (from / kZeroChunk + 1) * kZeroChunk);
      VDISK_RETURN_IF_ERROR(
          Write(from, std::span(zeros).first(gsl::narrow<std::size_t>(next - from))));
      from = next;
    }
    return Status::Ok();
  };
  if (no_hole) return write_zeros(offset, offset + length);
  // Ranges that already read as zeros stay as they are (holes stay holes).
  std::uint64_t pos = offset;
  const std::uint64_t end = offset + length;
  while (pos < end) {
    VDISK_ASSIGN_OR_RETURN(const auto extents, BlockStatus(pos, end - pos));
    for (const AllocationExtent& extent : extents) {
      if (!extent.zero) VDISK_RETURN_IF_ERROR(write_zeros(pos, pos + extent.length));
      pos += extent.length;
    }
  }
  return Status::Ok();
}

Result<std::vector<AllocationExtent>> DiskExportTarget::BlockStatus(std::uint64_t offset,
                                                                    std::uint64_t length) {
  VDISK_RETURN_IF_ERROR(CheckRange(offset, length, "block status"));
  if (length == 0) {
    return Status(Code::kInvalidParameter, disk_->key().string() + ": empty block status");
  }
  const std::shared_ptr<VirtualDisk> disk = disk_->disk();
  std::vector<AllocationExtent> extents;
  std::uint64_t pos = base_ + offset;
  const std::uint64_t end = pos + length;
  while (pos < end) {
    const std::uint64_t aligned = AlignDown(pos);
    VDISK_ASSIGN_OR_RETURN(AllocationExtent run, Classify(*disk, aligned, end - aligned));
    const std::uint64_t run_end = std::min(end, aligned + run.length);
    if (run_end <= pos) {
      return Status(Code::kInternal, disk_->key().string() + ": the map at " +
                                         std::to_string(aligned) + " does not advance");
    }
    run.length = run_end - pos;
    if (!extents.empty() && extents.back().hole == run.hole && extents.back().zero == run.zero) {
      extents.back().length += run.length;
    } else {
      if (extents.size() == kMaxExtents) break;
      extents.push_back(run);
    }
    pos = run_end;
  }
  return extents;
}

}  // namespace vdisk::attach
