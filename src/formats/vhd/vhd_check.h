// Structural checks of a VHD file beyond what opening it validates: the redundant footer copy
// that an open tolerates when damaged, and file space that no structure uses.
#pragma once

#include "formats/image.h"
#include "formats/registry/check.h"

namespace vdisk::vhd {

// `image` is a VHD opened (read-only is enough) by the VHD provider; it read its structures from
// image.file(), which this reads again.
CheckFindings CheckVhdStructures(const Image& image);

}  // namespace vdisk::vhd
