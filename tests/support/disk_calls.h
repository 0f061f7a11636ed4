// Opening images through the core in the unit tests, with a failure that names the file.
// Header-only: for programs linked with the core.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string_view>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"

namespace vdisk_testing {

// Opens `path` through `registry` (read-only unless `read_only` is false).
inline vdisk::Result<std::unique_ptr<vdisk::VirtualDisk>> OpenImage(
    const vdisk::ProviderRegistry& registry, const std::filesystem::path& path,
    bool read_only = true, bool ignore_relative_parent_locator = false) {
  vdisk::DiskOpenRequest request;
  request.path = path;
  request.options.read_only = read_only;
  request.options.ignore_relative_parent_locator = ignore_relative_parent_locator;
  return vdisk::VirtualDisk::Open(registry, request);
}

// The disk of `result`, or nullptr after a test failure that says "`what` `path`: why".
inline std::unique_ptr<vdisk::VirtualDisk> Must(
    vdisk::Result<std::unique_ptr<vdisk::VirtualDisk>> result, std::string_view what,
    const std::filesystem::path& path) {
  if (!result.ok()) {
    ADD_FAILURE() << what << " " << path << ": " << result.status().message();
    return nullptr;
  }
  return std::move(result).value();
}

}  // namespace vdisk_testing
