// ISO 9660 / UDF images, read-only.
#pragma once

#include <memory>

#include "formats/registry/provider.h"

namespace vdisk {

std::unique_ptr<Provider> MakeIsoProvider();

}  // namespace vdisk
