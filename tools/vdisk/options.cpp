#include "options.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <map>
#include <numeric>

#include "errors.h"

namespace vdisk_tool {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::uint64_t ParseSize(std::string_view option, std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return UsageError(fmt::format("{} '{}': {}", option, text, why));
  };
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    std::uint64_t value = 0;
    digits.remove_prefix(2);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 16);
    if (ec == std::errc::result_out_of_range) throw bad("too large");
    if (ec != std::errc() || end != digits.data() + digits.size())
      throw bad("not a hexadecimal number (a hexadecimal number takes no suffix)");
    return value;
  }
  // Whole part, optional fraction (as a decimal numerator over a power of ten), suffix.
  std::uint64_t whole = 0;
  const char* p = digits.data();
  const char* const last = digits.data() + digits.size();
  auto [end, ec] = std::from_chars(p, last, whole, 10);
  if (ec == std::errc::result_out_of_range) throw bad("too large");
  if (ec != std::errc()) throw bad("not a number (e.g. 512, 64K, 1.5G, 0x1000)");
  std::uint64_t fraction = 0, scale = 1;
  if (end != last && *end == '.') {
    ++end;
    while (end != last && std::isdigit(static_cast<unsigned char>(*end))) {
      if (scale < 1000000000000ULL) {
        fraction = fraction * 10 + static_cast<std::uint64_t>(*end - '0');
        scale *= 10;
      }
      ++end;
    }
  }
  const std::string suffix = Lower(std::string_view(end, static_cast<std::size_t>(last - end)));
  static const std::map<std::string, unsigned> kShifts = {
      {"", 0},   {"b", 0},    {"k", 10},   {"kb", 10}, {"kib", 10}, {"m", 20},
      {"mb", 20}, {"mib", 20}, {"g", 30},   {"gb", 30}, {"gib", 30}, {"t", 40},
      {"tb", 40}, {"tib", 40}, {"p", 50},   {"pb", 50}, {"pib", 50}};
  const auto it = kShifts.find(suffix);
  if (it == kShifts.end()) throw bad("unknown suffix (use K, M, G, T or P)");
  const unsigned shift = it->second;
  if (whole > (UINT64_MAX >> shift)) throw bad("too large");
  const std::uint64_t unit = std::uint64_t{1} << shift;
  // fraction/scale of a unit, exactly: once reduced, the denominator must divide the unit (a
  // power of two), so the part is a whole number of bytes below one unit.
  const std::uint64_t divisor = std::gcd(fraction, scale);
  const std::uint64_t numerator = fraction / divisor, denominator = scale / divisor;
  if (fraction != 0 && (unit % denominator != 0)) throw bad("not a whole number of bytes");
  const std::uint64_t part = fraction == 0 ? 0 : numerator * (unit / denominator);
  if (whole * unit > UINT64_MAX - part) throw bad("too large");
  return whole * unit + part;
}

unsigned ParseByte(std::string_view option, std::string_view text) {
  const std::uint64_t value = ParseSize(option, text);
  if (value > 0xFF) throw UsageError(fmt::format("{} '{}': a byte is 0..255", option, text));
  return static_cast<unsigned>(value);
}

ImageFormat ParseFormat(std::string_view option, std::string_view text) {
  const std::string name = Lower(text);
  if (name == "vhd") return ImageFormat::kVhd;
  if (name == "vhdx") return ImageFormat::kVhdx;
  if (name == "raw") return ImageFormat::kRaw;
  throw UsageError(fmt::format("{} '{}': use vhd, vhdx or raw", option, text));
}

ImageFormat FormatFromName(const std::filesystem::path& path) {
  const std::string extension = Lower(path.extension().string());
  if (extension == ".vhd" || extension == ".avhd") return ImageFormat::kVhd;
  if (extension == ".vhdx" || extension == ".avhdx") return ImageFormat::kVhdx;
  if (extension == ".raw" || extension == ".img" || extension == ".bin") return ImageFormat::kRaw;
  return ImageFormat::kUnknown;
}

const char* FormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kVhd:
      return "vhd";
    case ImageFormat::kVhdx:
      return "vhdx";
    case ImageFormat::kRaw:
      return "raw";
    default:
      return "unknown";
  }
}

std::string HumanBytes(std::uint64_t value) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (value < 1024) return fmt::format("{} {}", value, value == 1 ? "byte" : "bytes");
  int unit = 0;
  std::uint64_t whole = 1024;
  while (unit < 5 && value / whole >= 1024) {
    whole <<= 10;
    ++unit;
  }
  if (value % whole == 0) return fmt::format("{} {}", value / whole, kUnits[unit]);
  return fmt::format("{:.2f} {}", static_cast<double>(value) / static_cast<double>(whole),
                     kUnits[unit]);
}

std::string Bytes(std::uint64_t value) {
  if (value < 1024) return HumanBytes(value);
  return fmt::format("{} bytes ({})", value, HumanBytes(value));
}

}  // namespace vdisk_tool
