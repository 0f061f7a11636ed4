#include "formats/registry/registry.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace vdisk {
namespace {

std::string LowerExtension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

}  // namespace

void ProviderRegistry::Register(std::unique_ptr<Provider> provider) {
  providers_.push_back(std::move(provider));
}

const Provider* ProviderRegistry::Find(DiskFormat format) const {
  for (const auto& p : providers_)
    if (p->format() == format) return p.get();
  return nullptr;
}

Result<const Provider*> ProviderRegistry::Detect(const std::filesystem::path& path,
                                                 platform::File& file) const {
  VDISK_ASSIGN_OR_RETURN(const std::uint64_t size, file.Size());
  std::vector<std::byte> head(std::min<std::uint64_t>(size, kProbeHeadBytes));
  std::vector<std::byte> tail(std::min<std::uint64_t>(size, kProbeTailBytes));
  VDISK_RETURN_IF_ERROR(file.ReadAt(0, head));
  VDISK_RETURN_IF_ERROR(file.ReadAt(size - tail.size(), tail));
  const ProbeData data{head, tail, size};

  const std::string ext = LowerExtension(path);
  const Provider* by_extension = nullptr;
  for (const auto& p : providers_) {
    const auto exts = p->extensions();
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) by_extension = p.get();
  }
  if (by_extension != nullptr && by_extension->Probe(data) > 0) return by_extension;
  const Provider* best = nullptr;
  int best_score = 0;
  for (const auto& p : providers_) {
    const int score = p->Probe(data);
    if (score > best_score) {
      best = p.get();
      best_score = score;
    }
  }
  // Content that no probe recognises under a known extension goes to that extension's
  // provider, whose open names what is wrong (e.g. a VHD without its footer).
  if (best == nullptr && by_extension != nullptr) return by_extension;
  if (best == nullptr) {
    return Status(Code::kNotVirtualDisk,
                  path.string() + ": not a virtual disk (no provider recognises its content)");
  }
  return best;
}

const ProviderRegistry& BuiltinProviders() {
  static const ProviderRegistry registry = [] {
    ProviderRegistry r;
    RegisterBuiltinProviders(r);
    return r;
  }();
  return registry;
}

}  // namespace vdisk
