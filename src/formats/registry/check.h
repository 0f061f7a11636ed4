// What a structural check of an image file finds (vdisk check, VirtDiskCheckImage).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vdisk {

struct CheckFinding {
  enum class Kind { kCorruption, kLeak, kNote };
  Kind kind = Kind::kCorruption;
  std::string message;     // names the structure and its file offset
  std::uint64_t bytes = 0; // kLeak: the space no structure uses
};

using CheckFindings = std::vector<CheckFinding>;

}  // namespace vdisk
