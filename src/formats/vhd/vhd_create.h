// Creating VHD files: fixed, dynamic and differencing, laid out as Windows lays them out.
#pragma once

#include <filesystem>
#include <memory>

#include "formats/image.h"
#include "base/status.h"
#include "formats/registry/provider.h"

namespace vdisk::vhd {

// Creates `path` (which must not exist) and returns it opened read-write. On failure no file is
// left behind. Fails with kInvalidParameter for a size that is 0, not a multiple of 512 or above
// 2040 GiB, a block size other than 512 KiB or 2 MiB (2 MiB only for fixed disks), or a
// differencing disk without a VHD parent of the same size; with kUnsupportedSectorSize for
// 4096-byte sectors.
Result<std::unique_ptr<Image>> CreateVhdImage(const std::filesystem::path& path,
                                              const CreateOptions& options);

}  // namespace vdisk::vhd
