// What every format fuzzer does with an image it managed to open, and the fixed parent the VHD
// fuzzer and its seed generator share.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "formats/image.h"
#include "formats/registry/provider.h"

namespace vdisk::fuzz {

// For the seed generators: true if `status` is ok, else prints it with the file's name.
inline bool Check(const Status& status, const std::filesystem::path& path) {
  if (status.ok()) return true;
  std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(status.message()).c_str());
  return false;
}

// Maps from a few starting points across the disk, follows a few extents from each and reads
// the ones held as data. Traps if Map makes no progress (a caller would loop for ever).
inline void ReadAcross(Image& image) {
  const std::uint64_t size = image.virtual_size();
  const std::uint32_t sector = image.logical_sector_size();
  (void)image.unique_id();
  (void)image.virtual_disk_id();
  (void)image.parent();
  (void)image.physical_sector_size();
  (void)image.is_4k_aligned();
  if (size == 0 || sector == 0) return;
  std::vector<std::byte> buffer(64 * 1024);
  const std::uint64_t starts[] = {0, size / 3, size / 2, size - sector};
  for (const std::uint64_t start : starts) {
    std::uint64_t offset = start / sector * sector;
    for (int i = 0; i < 4 && offset < size; ++i) {
      auto extent = image.Map(offset, std::min<std::uint64_t>(buffer.size(), size - offset));
      if (!extent.ok()) break;
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(extent->length, buffer.size()));
      if (n == 0) __builtin_trap();  // Map must make progress
      if (extent->kind == Extent::Kind::kData)
        (void)image.ReadData(extent->file_offset, std::span(buffer).first(n));
      offset += n;
    }
  }
  (void)image.SmallestSafeVirtualSize();
}

// Writes one sector in the middle (allocating a block, updating its bitmap and the table),
// flushes, and maps it again. One write only: a block is up to 2 MiB of fresh memory, and page
// faults on fresh memory were most of the VHD fuzzer's time with two.
inline void WriteSome(Image& image) {
  const std::uint64_t size = image.virtual_size();
  const std::uint32_t sector = image.logical_sector_size();
  if (size < sector || sector == 0 || sector > (1u << 16)) return;
  std::vector<std::byte> data(sector, std::byte{0x5A});
  const std::uint64_t offset = (size / 2) / sector * sector;
  (void)image.Write(offset, data);
  (void)image.Flush();
  (void)image.Map(offset, sector);
}

// The parent every differencing VHD seed is created against: a dynamic VHD of 4 MiB (512 KiB
// blocks, to keep it small: the fuzzer copies it for every child it serves it to) with this
// unique id, holding 0xA5 in its first 64 KiB. The VHD fuzzer serves it (from memory) to a
// child whose locator names "parent.vhd" in the child's directory.
inline constexpr std::uint64_t kVhdParentSize = 4 << 20;
inline Guid VhdParentId() {
  Guid id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i) id.bytes[i] = static_cast<std::uint8_t>(0x10 + i);
  return id;
}

// Creates that parent at `path` (which must not exist) with `provider` (the VHD one).
inline Status CreateVhdParent(const Provider& provider, const std::filesystem::path& path) {
  CreateOptions options;
  options.subtype = DiskSubtype::kDynamic;
  options.virtual_size = kVhdParentSize;
  options.block_size = 512 * 1024;
  options.unique_id = VhdParentId();
  VDISK_ASSIGN_OR_RETURN(auto image, provider.Create(path, options));
  const std::vector<std::byte> data(64 * 1024, std::byte{0xA5});
  VDISK_RETURN_IF_ERROR(image->Write(0, data));
  return image->Flush();
}

}  // namespace vdisk::fuzz
