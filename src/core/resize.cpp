#include "core/resize.h"

#include <string>

#include "formats/partition_table.h"

namespace vdisk {

Result<std::uint64_t> SmallestSafeSize(VirtualDisk& disk) {
  const VirtualReader read = [&disk](std::uint64_t offset, std::span<std::byte> out) {
    return disk.Read(offset, out);
  };
  return SmallestSafeSize(read, disk.size(), disk.sector_size());
}

Status ResizeDisk(OpenDisk& open, const ResizeRequest& request, OperationControl& progress) {
  const std::string path = open.key().string();
  // ExpandVirtualDisk's documentation: "Expanding a virtual disk requires that the virtual disk
  // be detached during the operation"; Resize-VHD's (Hyper-V module): "the virtual hard disk
  // must not be attached when the operation is initiated". A mirror is such an operation in
  // progress on the disk. Windows answers ERROR_VHD_INVALID_STATE for an operation the disk's
  // state does not allow.
  if (open.attached() || open.handed_over()) {
    return Status(Code::kVhdInvalidState,
                  path + ": attached; a disk must be detached to change its size");
  }
  if (open.mirroring()) {
    return Status(Code::kVhdInvalidState,
                  path + ": being mirrored; its size cannot change until the mirror ends");
  }
  // Taken before the drain, which holds the lock disk() takes; no mirror can switch it meanwhile.
  const std::shared_ptr<VirtualDisk> active = open.disk();
  return open.Drained([&]() -> Status {
    VirtualDisk& disk = *active;
    Image& top = disk.top();
    // ExpandVirtualDisk's documentation: "valid only for fixed and expandable virtual disks".
    if (top.subtype() == DiskSubtype::kDifferencing) {
      return Status(Code::kVhdInvalidType,
                    path + ": a differencing disk cannot change its size; only fixed and dynamic "
                           "disks can");
    }
    if (disk.read_only()) return Status(Code::kAccessDenied, path + ": opened read-only");
    const std::uint64_t size = disk.size();
    const std::uint32_t sector = disk.sector_size();
    std::uint64_t target = request.new_size;
    std::uint64_t smallest = 0;
    if (request.to_smallest_safe || (!request.allow_unsafe && target < size)) {
      VDISK_ASSIGN_OR_RETURN(smallest, SmallestSafeSize(disk));
    }
    if (request.to_smallest_safe) {
      // Partitions end on sectors; a disk is a whole number of them.
      target = (smallest + sector - 1) / sector * sector;
      if (target >= size) {
        return Status(Code::kVhdAlreadyAtOrBelowMinimumVirtualSize,
                      path + ": already at its smallest safe size " + std::to_string(size) +
                          " (the partitions end at " + std::to_string(smallest) + ")");
      }
    } else {
      if (target == 0 || target % sector != 0) {
        return Status(Code::kInvalidParameter, path + ": new size " + std::to_string(target) +
                                                   " is not a whole number of " +
                                                   std::to_string(sector) + "-byte sectors");
      }
      if (request.grow_only && target <= size) {
        return Status(Code::kInvalidParameter,
                      path + ": new size " + std::to_string(target) +
                          " does not exceed the current size " + std::to_string(size) +
                          "; ExpandVirtualDisk only grows a disk");
      }
      if (!request.allow_unsafe && target < size && target < smallest) {
        return Status(Code::kVhdResizeWouldTruncateData,
                      path + ": new size " + std::to_string(target) +
                          " would cut off partitions, which end at " + std::to_string(smallest) +
                          " (RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE allows it)");
      }
    }
    return top.Resize(target, progress);
  });
}

}  // namespace vdisk
