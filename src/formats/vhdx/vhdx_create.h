// Creating VHDX files: fixed, dynamic and differencing, laid out as Windows lays them out
// (log at 1 MiB, metadata region at 2 MiB, BAT at 3 MiB, blocks after it).
#pragma once

#include <filesystem>
#include <memory>

#include "formats/image.h"
#include "base/status.h"
#include "formats/registry/provider.h"
#include "formats/vhdx/vhdx_metadata.h"

namespace vdisk::vhdx {

// Creates `path` (which must not exist) and returns it opened read-write. On failure no file is
// left behind. Defaults: 32 MiB blocks, 512-byte logical and 4096-byte physical sectors, a
// random page 83 identity. Fails with kInvalidParameter for a size that is 0, not a multiple of
// the logical sector or above 64 TiB, an unknown subtype, or a differencing disk without a VHDX
// parent; kVhdInvalidBlockSize for a block size that is not a power of two in 1..256 MiB;
// kUnsupportedSectorSize for sector sizes other than 512 or 4096.
Result<std::unique_ptr<Image>> CreateVhdxImage(const std::filesystem::path& path,
                                               const CreateOptions& options);

// The parent locator (§2.6.2.6.3) a child at `child_path` records for its parent at
// `parent_path`: parent_linkage (the parent's DataWriteGuid, lower case in braces), relative_path
// (".\name" or
// "..\dir\name", Windows separators) and absolute_win32_path ("\\?\" + the path on Windows; the
// absolute path with backslashes elsewhere).
Result<ParentLocator> MakeParentLocator(const std::filesystem::path& child_path,
                                        const std::filesystem::path& parent_path,
                                        const Guid& parent_data_write_guid);

}  // namespace vdisk::vhdx
