// CompactDisk: CompactVirtualDisk over an open disk. The top image of the chain compacts itself
// (Image::Compact); this file gives it the disk's I/O path to drain between steps and reads the
// layers below it for the zero scan of a differencing image.
//
// Refused (as Windows does, see CompactDisk) while the disk is attached read-write or mirrored,
// and while another process's attach host serves it. A disk attached read-only compacts while
// its readers keep reading: each step waits for the reads in flight and holds new ones back only
// for its own duration.
#pragma once

#include <cstdint>
#include <functional>

#include "formats/image.h"
#include "core/open_disk.h"
#include "base/status.h"

namespace vdisk {

// The checks CompactDisk makes before it starts (see below), for a caller that answers them
// before going asynchronous.
Status CheckCompactable(OpenDisk& disk);

// Compacts the top image of `disk`. Fails, changing nothing, with kVhdInvalidState if the disk
// is attached read-write or a mirror runs on it (and keeps a mirror from starting until it
// ends), kDiskAlreadyOwned if an attach host serves it, kVhdInvalidType for a fixed disk,
// kWriteProtect if the disk is open read-only; with kOperationAborted when cancelled, leaving
// every step done so far in place and the disk consistent.
// Progress: blocks scanned, then moved.
Result<CompactReport> CompactDisk(OpenDisk& disk, const CompactOptions& options,
                                  OperationControl& control);

}  // namespace vdisk
