#include "formats/vhdx/vhdx_provider.h"

#include <array>
#include <cstring>
#include <string_view>

#include "formats/vhdx/vhdx_create.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_image.h"

namespace vdisk {
namespace {

constexpr std::array<std::string_view, 2> kVhdxExtensions = {".vhdx", ".avhdx"};

class VhdxProvider final : public ImageProvider<vhdx::VhdxImage> {
 public:
  VhdxProvider() : ImageProvider(DiskFormat::kVhdx, "VHDX", kVhdxExtensions, &vhdx::CreateVhdxImage) {}

  // §2.2.1: the file type identifier at offset 0 is never overwritten, so it alone decides.
  int Probe(const ProbeData& data) const override {
    const std::string_view signature = vhdx::kFileSignatureText;
    if (data.head.size() >= signature.size() &&
        std::memcmp(data.head.data(), signature.data(), signature.size()) == 0) {
      return 100;
    }
    return 0;
  }
};

}  // namespace

std::unique_ptr<Provider> MakeVhdxProvider() { return std::make_unique<VhdxProvider>(); }

}  // namespace vdisk
