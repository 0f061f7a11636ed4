// libvhdi (libyal) as a second, independent VHD/VHDX reader, for the interop tests and for
// libvhdi_dump, which gives the unit suite under Wine the same oracle.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace vdisk_interop {

using Bytes = std::vector<std::uint8_t>;

bool HaveLibvhdi();
// Reads the whole disk of `chain` (top first, base last: each file's parent is the next one)
// through libvhdi; nullopt with libvhdi's message in `error`. `media_size` receives the size
// libvhdi reports for the top file.
std::optional<Bytes> LibvhdiReadAll(const std::vector<std::filesystem::path>& chain,
                                    std::uint64_t* media_size, std::string* error);

// What libvhdi reads as a file's identifier and its parent's: GUIDs in libvhdi's byte order,
// which is their text order (the first three fields big-endian, unlike the file's little-endian
// fields); the parent's is all zeros for a disk without one.
struct LibvhdiIdentifiers {
  std::array<std::uint8_t, 16> identifier{};
  std::array<std::uint8_t, 16> parent{};
};
std::optional<LibvhdiIdentifiers> LibvhdiReadIdentifiers(const std::filesystem::path& path,
                                                         std::string* error);

}  // namespace vdisk_interop
