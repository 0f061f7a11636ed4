// Helpers shared by the unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "support/file_bytes.h"

namespace vdisk_unit {

// A fresh directory under the system's temporary directory, removed with everything in it at
// destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("vdisk_unit_" + std::to_string(rd()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The whole content of a file (empty if it cannot be read), in one read.
using vdisk_testing::ReadWholeFile;

// Checks a read of [offset, offset + read.size()) that overlapped a write: each sector must read
// wholly as `before` or wholly as `after` (the range's content before and after the write), as
// from a disk. Returns "" if so, else names the first sector that does not and what it holds.
inline std::string FirstTornSector(std::span<const std::byte> read,
                                   std::span<const std::byte> before,
                                   std::span<const std::byte> after, std::uint64_t offset,
                                   std::size_t sector) {
  for (std::size_t s = 0; s + sector <= read.size(); s += sector) {
    if (std::memcmp(read.data() + s, before.data() + s, sector) == 0) continue;
    if (std::memcmp(read.data() + s, after.data() + s, sector) == 0) continue;
    std::size_t old_bytes = 0;
    std::size_t new_bytes = 0;
    for (std::size_t b = s; b < s + sector; ++b) {
      if (read[b] == before[b]) ++old_bytes;
      if (read[b] == after[b]) ++new_bytes;
    }
    return "sector " + std::to_string((offset + s) / sector) + " (byte " +
           std::to_string(offset + s) + ") reads neither wholly old nor wholly new: " +
           std::to_string(old_bytes) + " of its " + std::to_string(sector) +
           " bytes match the old data, " + std::to_string(new_bytes) + " the new";
  }
  return "";
}

}  // namespace vdisk_unit
