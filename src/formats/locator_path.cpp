#include "formats/locator_path.h"

#include <algorithm>
#include <string_view>

namespace vdisk {

std::string ToLocatorText(const std::filesystem::path& path) {
  const std::u8string u8 = path.generic_u8string();
  std::string text(u8.begin(), u8.end());
  std::replace(text.begin(), text.end(), '/', '\\');
  return text;
}

std::filesystem::path FromLocatorText(std::string text) {
#ifndef _WIN32
  for (std::string_view prefix : {"\\\\?\\UNC\\", "\\\\?\\", "\\\\.\\"}) {
    if (text.starts_with(prefix)) {
      text.erase(0, prefix.size());
      if (prefix == "\\\\?\\UNC\\") text.insert(0, "\\\\");
      break;
    }
  }
  std::replace(text.begin(), text.end(), '\\', '/');
#endif
  return std::filesystem::path(std::u8string(text.begin(), text.end()));
}

}  // namespace vdisk
