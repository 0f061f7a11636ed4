#include "api/strings.h"

#include <cstdint>

#include "base/unicode.h"

namespace vdisk::api {
namespace {

void AppendWide(std::basic_string<WCHAR>& out, std::uint32_t cp) {
  if constexpr (sizeof(WCHAR) == 2) {
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<WCHAR>(0xD800 + (cp >> 10));
      out += static_cast<WCHAR>(0xDC00 + (cp & 0x3FF));
      return;
    }
  }
  out += static_cast<WCHAR>(cp);
}

}  // namespace

std::string ToUtf8(PCWSTR text) {
  std::string out;
  if (text == nullptr) return out;
  for (const WCHAR* p = text; *p != 0; ++p) {
    std::uint32_t cp = static_cast<std::uint32_t>(*p);
    if constexpr (sizeof(WCHAR) == 2) {
      if (cp >= 0xD800 && cp <= 0xDBFF && p[1] >= 0xDC00 && p[1] <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<std::uint32_t>(p[1]) - 0xDC00);
        ++p;
      }
    }
    AppendUtf8(out, static_cast<char32_t>(cp));
  }
  return out;
}

std::filesystem::path ToPath(PCWSTR text) {
#ifdef _WIN32
  return std::filesystem::path(std::wstring(text));
#else
  return std::filesystem::path(ToUtf8(text));
#endif
}

std::basic_string<WCHAR> ToWide(std::string_view utf8) {
  std::basic_string<WCHAR> out;
  for (std::size_t i = 0; i < utf8.size();) AppendWide(out, NextCodePoint(utf8, i));
  return out;
}

}  // namespace vdisk::api
