// Merge: the work of MergeVirtualDisk, over the differencing chain of an OpenDisk.
//
// What Windows documents (MergeVirtualDisk, "Remarks", learn.microsoft.com/windows/win32/api/
// virtdisk/nf-virtdisk-mergevirtualdisk) and what this does:
//  - The target image is changed to hold the data the chain shows from the source level down:
//    for every sector that some image from the source to just above the target holds, the
//    target gets what a read from the source level returns ("essentially a copy operation";
//    "the parent disk being merged into is changed to represent the same data that was kept in
//    the child"). Sectors no merged image holds stay as the target has them.
//  - "If the merge operation is interrupted, the child disk is still usable. The
//    MergeVirtualDisk function can be rerun to complete the merge": the merged images are never
//    written; the target receives only sectors that an image above it covers, so the chain reads
//    the same at every point, and a rerun copies the same bytes again. A VHDX target keeps its
//    DataWriteGuid (OpenOptions::keep_data_write_guid), so the children's parent_linkage stays
//    valid and the chain opens after a crash.
//  - "MergeVirtualDisk does not delete any invalid disks, nor does it automatically reconnect any
//    differencing relationships": the merged-away files stay on disk, untouched. Other children
//    of the target are no longer valid (they now read its merged data), as the page says.
//  - Version 2 with a source below the top (MergeSourceDepth > 1) merges images in the middle of
//    the chain of a disk in use (Windows 8's "live merge"); the image right above the source is
//    then re-pointed to the target (its parent locators and parent id, SetParentLocation), as the
//    last step, so that the opened chain skips the merged-away images. A crash before that step
//    leaves the old chain, which reads the same; a rerun completes it.
//
// Handles: after the merge every handle of the OpenDisk sees the chain as it opens now (the
// relinked chain for a middle merge; the same files for a merge from the top, whose merged
// images the docs call invalid but which still read the same data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/open_disk.h"
#include "base/status.h"
#include "formats/registry/registry.h"

namespace vdisk {

// Levels of the chain: 0 is the top image (depth 1 in MERGE_VIRTUAL_DISK_PARAMETERS).
struct MergeRequest {
  std::size_t source_level = 0;  // the first image whose data moves
  std::size_t target_level = 1;  // the image that receives it
};

// Checks `request` against `disk`'s chain: kInvalidParameter (naming the depths) unless
// source_level < target_level < chain length.
Status CheckMerge(const VirtualDisk& disk, const MergeRequest& request);

// Merges as described above. Reopens the OpenDisk with the target (and, for a middle merge, the
// image above the source) writable, copies, relinks, and reopens it as it was asked for. Fails
// with the Reopen errors (attached: kDiskAlreadyOwned; mirror: kVhdInvalidState; busy:
// kSharingViolation), kOperationAborted when cancelled (the chain reads as before), or the I/O
// error that stopped it (the chain reads as before; rerun to complete).
Status MergeDisk(OpenDisk& disk, const ProviderRegistry& registry, const MergeRequest& request,
                 OperationControl& control);

// SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH below the top: re-points the image at `level`
// (0 is the top) of the disk's chain to `parent_path` (Image::SetParentLocation), reopening the
// disk with that image writable (OpenDisk::Reopen's refusals) and then as it was asked for.
// kInvalidParameter if the chain has no differencing image at `level`.
Status RepointLevel(OpenDisk& disk, const ProviderRegistry& registry, std::size_t level,
                    const std::filesystem::path& parent_path);

// The copy step alone, over an opened chain whose target image is writable (tests and the
// crash harness use it to stop at chosen points). Progress is reported in bytes of the disk.
Status CopyMergedData(VirtualDisk& chain, const MergeRequest& request,
                      OperationControl& control);

}  // namespace vdisk
