#include "formats/vhd/vhd_provider.h"

#include <array>
#include <cstring>
#include <string_view>

#include "formats/vhd/vhd_create.h"
#include "formats/vhd/vhd_format.h"
#include "formats/vhd/vhd_image.h"

namespace vdisk {
namespace {

constexpr std::array<std::string_view, 2> kVhdExtensions = {".vhd", ".avhd"};

bool CookieAt(std::span<const std::byte> bytes, std::size_t offset) {
  const std::string_view cookie = vhd::kFooterCookie;
  return bytes.size() >= offset + cookie.size() &&
         std::memcmp(bytes.data() + offset, cookie.data(), cookie.size()) == 0;
}

class VhdProvider final : public ImageProvider<vhd::VhdImage> {
 public:
  VhdProvider() : ImageProvider(DiskFormat::kVhd, "VHD", kVhdExtensions, &vhd::CreateVhdImage) {}

  int Probe(const ProbeData& data) const override {
    const auto tail = data.tail;
    // The end footer (512 bytes, or 511 in old Virtual PC images) is what defines a VHD.
    if (tail.size() >= vhd::kFooterSize && CookieAt(tail, tail.size() - vhd::kFooterSize))
      return 100;
    if (tail.size() >= vhd::kOldFooterSize && CookieAt(tail, tail.size() - vhd::kOldFooterSize))
      return 100;
    // A dynamic image whose end footer is damaged still has its copy at offset 0.
    if (CookieAt(data.head, 0)) return 50;
    return 0;
  }
};

}  // namespace

std::unique_ptr<Provider> MakeVhdProvider() { return std::make_unique<VhdProvider>(); }

}  // namespace vdisk
