// UTF-8 encoding and decoding of single code points, for the converters of the API (UTF-16
// WCHAR strings, api/strings.cpp) and of the formats (UTF-16 fields, vhd_format.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vdisk {

inline constexpr char32_t kReplacementCharacter = 0xFFFD;

// Appends `c` to `out` as UTF-8; surrogates and values past U+10FFFF become U+FFFD.
void AppendUtf8(std::string& out, char32_t c);

// Decodes the code point of `utf8` at `i` and advances `i` past it. An invalid or truncated
// sequence, an overlong form or a surrogate yields U+FFFD. REQUIRES: i < utf8.size().
char32_t NextCodePoint(std::string_view utf8, std::size_t& i);

}  // namespace vdisk
