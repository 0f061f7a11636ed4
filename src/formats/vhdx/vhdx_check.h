// Structural checks of a VHDX file beyond what opening it validates: the second header and
// region table that an open tolerates when damaged, a log left to replay, and file space that
// no structure uses.
#pragma once

#include "formats/image.h"
#include "formats/registry/check.h"

namespace vdisk::vhdx {

// `image` is a VHDX opened (read-only is enough) by the VHDX provider; it read its structures
// from image.file(), which this reads again.
CheckFindings CheckVhdxStructures(const Image& image);

}  // namespace vdisk::vhdx
