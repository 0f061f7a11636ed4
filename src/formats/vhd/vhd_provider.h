// VHD (Virtual Hard Disk Image Format Specification, 2006): fixed, dynamic and differencing.
#pragma once

#include <memory>

#include "formats/registry/provider.h"

namespace vdisk {

std::unique_ptr<Provider> MakeVhdProvider();

}  // namespace vdisk
