// What a structural check of an image file finds (vdisk check, VirtDiskCheckImage).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vdisk {

struct CheckFinding {
  enum class Kind { kCorruption, kLeak, kNote };
  Kind kind = Kind::kCorruption;
  std::string message;      // names the structure and its file offset
  std::uint64_t bytes = 0;  // kLeak: the space no structure uses
};

using CheckFindings = std::vector<CheckFinding>;

// Findings as a check collects them.
class CheckReport {
 public:
  void Corruption(std::string message) {
    findings_.push_back({CheckFinding::Kind::kCorruption, std::move(message), 0});
  }
  void Add(CheckFinding finding) { findings_.push_back(std::move(finding)); }
  CheckFindings Take() { return std::move(findings_); }

 private:
  CheckFindings findings_;
};

}  // namespace vdisk
