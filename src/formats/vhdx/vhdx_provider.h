// VHDX ([MS-VHDX] Virtual Hard Disk v2): fixed, dynamic and differencing.
#pragma once

#include <memory>

#include "formats/registry/provider.h"

namespace vdisk {

std::unique_ptr<Provider> MakeVhdxProvider();

}  // namespace vdisk
