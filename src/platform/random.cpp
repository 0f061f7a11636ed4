#include "platform/random.h"

#include <vector>

namespace vdisk::platform {

Result<std::string> RandomHex(std::size_t bytes) {
  std::vector<std::byte> raw(bytes);
  VDISK_RETURN_IF_ERROR(FillRandom(raw));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * bytes);
  for (const std::byte b : raw) {
    const auto v = static_cast<unsigned>(b);
    text.push_back(kHex[v >> 4]);
    text.push_back(kHex[v & 15]);
  }
  return text;
}

}  // namespace vdisk::platform
