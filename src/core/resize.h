// ResizeDisk: ResizeVirtualDisk and ExpandVirtualDisk over an OpenDisk.
//
// Decides the new size (the request's, or the smallest safe size the partition table allows),
// refuses what Windows refuses, and has the top image change its size (Image::Resize) with the
// disk's I/O drained: no request of any handle runs meanwhile, and each one after it sees the new
// size.
#pragma once

#include <cstdint>

#include "core/disk_operation.h"
#include "formats/image.h"
#include "core/open_disk.h"
#include "base/status.h"

namespace vdisk {

struct ResizeRequest {
  std::uint64_t new_size = 0;     // bytes; 0 with to_smallest_safe
  bool allow_unsafe = false;      // RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE
  bool to_smallest_safe = false;  // RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE
  bool grow_only = false;         // ExpandVirtualDisk: the new size must exceed the current one
};

// Fails, leaving the disk as it was, with:
//  kVhdInvalidState while the disk is attached, handed over to an attach host or mirrored;
//  kVhdInvalidType for a differencing disk;
//  kInvalidParameter for a size that is not a whole number of sectors, or (grow_only) not larger
//    than the disk;
//  kVhdResizeWouldTruncateData for a shrink into a partition without allow_unsafe;
//  kVhdAlreadyAtOrBelowMinimumVirtualSize for to_smallest_safe when nothing can be cut;
//  kOperationAborted when `progress` asks to stop (the image keeps its old size);
//  or the image's error.
Status ResizeDisk(OpenDisk& open, const ResizeRequest& request, OperationControl& progress);

// The smallest size that keeps every partition of `disk` (read through its whole chain).
Result<std::uint64_t> SmallestSafeSize(VirtualDisk& disk);

}  // namespace vdisk
