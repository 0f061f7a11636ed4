// Guid: 16 bytes in the Windows GUID memory layout (Data1..Data3 little-endian), the layout
// VHDX stores on disk and GUID has in memory on every target we build for.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace vdisk {

struct Guid {
  std::array<std::uint8_t, 16> bytes{};

  bool is_zero() const noexcept {
    for (auto b : bytes)
      if (b != 0) return false;
    return true;
  }
  friend bool operator==(const Guid&, const Guid&) = default;

  // A random (version 4) GUID.
  static Guid Random();
  // "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}" as Windows prints a GUID.
  std::string ToString() const;
};

}  // namespace vdisk
