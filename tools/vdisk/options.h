// Command-line values: sizes ("1.5G"), formats, and how numbers are shown.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace vdisk_tool {

// A size or offset in bytes: decimal (with an optional fraction, "1.5G") or 0x-hex, optionally
// followed by K, M, G, T or P (powers of 1024; KiB/KB/k spell the same). The result must be
// whole bytes. Throws UsageError naming `option`.
std::uint64_t ParseSize(std::string_view option, std::string_view text);

// A byte value 0..255 (decimal or 0x-hex).
unsigned ParseByte(std::string_view option, std::string_view text);

enum class ImageFormat { kUnknown, kVhd, kVhdx, kRaw };

// "vhd", "vhdx", "raw"; throws UsageError for anything else.
ImageFormat ParseFormat(std::string_view option, std::string_view text);
// From the file name: .vhd/.avhd, .vhdx/.avhdx, .raw/.img/.bin; kUnknown otherwise.
ImageFormat FormatFromName(const std::filesystem::path& path);
const char* FormatName(ImageFormat format);

// "64 MiB", "1.50 GiB", "512 bytes".
std::string HumanBytes(std::uint64_t value);
// "67108864 bytes (64 MiB)".
std::string Bytes(std::uint64_t value);

// "-" names standard input or output.
inline bool IsStdio(const std::string& path) { return path == "-"; }

}  // namespace vdisk_tool
