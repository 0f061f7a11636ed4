// ProviderRegistry: DiskFormat (VIRTUAL_STORAGE_TYPE.DeviceId) -> Provider, and format detection.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "formats/registry/provider.h"

namespace vdisk {

class ProviderRegistry {
 public:
  void Register(std::unique_ptr<Provider> provider);
  // The provider for `format`, or nullptr.
  const Provider* Find(DiskFormat format) const;
  // DEVICE_UNKNOWN, as Windows resolves it: the file extension picks the provider; when the
  // extension is missing, unknown, or names a format whose probe rejects the content, the best
  // scoring probe wins. Fails with kNotVirtualDisk if nothing recognises the file.
  Result<const Provider*> Detect(const std::filesystem::path& path, platform::File& file) const;

  const std::vector<std::unique_ptr<Provider>>& providers() const { return providers_; }

 private:
  std::vector<std::unique_ptr<Provider>> providers_;
};

// Registers VHD, VHDX and ISO, cheapest probes first.
void RegisterBuiltinProviders(ProviderRegistry& registry);
// The process-wide registry with the built-in providers.
const ProviderRegistry& BuiltinProviders();

constexpr std::size_t kProbeHeadBytes = 64 * 1024;
constexpr std::size_t kProbeTailBytes = 512;

}  // namespace vdisk
