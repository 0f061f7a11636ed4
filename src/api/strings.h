// WCHAR strings at the ABI boundary: PCWSTR <-> UTF-8 and std::filesystem::path.
//
// WCHAR is UTF-16 on Windows and wchar_t (UTF-32) on Linux; both convert here.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "api/abi.h"

namespace vdisk::api {

std::string ToUtf8(PCWSTR text);
std::filesystem::path ToPath(PCWSTR text);
// The WCHAR form of a UTF-8 string, without the terminating NUL.
std::basic_string<WCHAR> ToWide(std::string_view utf8);

}  // namespace vdisk::api
