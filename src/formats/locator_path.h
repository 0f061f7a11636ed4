// Parent paths as the locators of VHD and VHDX files store them: Windows paths (backslashes,
// perhaps a "\\?\" prefix), in UTF-8 here (each format encodes them as UTF-16 itself).
#pragma once

#include <filesystem>
#include <string>

namespace vdisk {

// `path` as Windows writes it in a locator: backslash separators.
std::string ToLocatorText(const std::filesystem::path& path);

// A stored locator path as a path on this OS. On POSIX the "\\?\", "\\?\UNC\" and "\\.\" prefixes
// go and backslashes become slashes ("C:/x" stays relative there and simply will not exist); on
// Windows the text is the path.
std::filesystem::path FromLocatorText(std::string text);

}  // namespace vdisk
