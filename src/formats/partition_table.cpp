#include "formats/partition_table.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace vdisk {
namespace {

constexpr std::uint64_t kMaxGptEntries = 16384;  // far more than any creator writes (128)
// At most this much of an entry array is read (a hostile header could ask for 64 MiB).
constexpr std::uint64_t kMaxGptArrayBytes = 4 << 20;

std::uint64_t Le(std::span<const std::byte> bytes, std::size_t offset, std::size_t width) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i)
    v |= std::uint64_t{std::to_integer<std::uint8_t>(bytes[offset + i])} << (8 * i);
  return v;
}

// The end of the last used GPT entry, nullopt without a valid-looking GPT header.
Result<std::optional<std::uint64_t>> GptEnd(const VirtualReader& read, std::uint64_t disk_size,
                                            std::uint32_t ls) {
  if (2 * std::uint64_t{ls} > disk_size) return std::optional<std::uint64_t>();
  std::vector<std::byte> header(ls);
  VDISK_RETURN_IF_ERROR(read(ls, header));
  if (std::memcmp(header.data(), "EFI PART", 8) != 0) return std::optional<std::uint64_t>();
  const std::uint64_t entries_lba = Le(header, 72, 8);
  const std::uint64_t count = std::min<std::uint64_t>(Le(header, 80, 4), kMaxGptEntries);
  const std::uint64_t entry_size = Le(header, 84, 4);
  const std::uint64_t sectors = disk_size / ls;
  if (entry_size < 128 || entry_size > 4096 || entries_lba == 0 || entries_lba >= sectors)
    return std::optional<std::uint64_t>();
  // Only the part of the array that lies inside the disk is read.
  const std::uint64_t wanted = (count * entry_size + ls - 1) / ls * ls;
  const std::uint64_t bytes =
      std::min({wanted, (sectors - entries_lba) * ls, kMaxGptArrayBytes / ls * ls});
  std::vector<std::byte> entries(static_cast<std::size_t>(bytes));
  VDISK_RETURN_IF_ERROR(read(entries_lba * ls, entries));
  std::optional<std::uint64_t> end;
  for (std::uint64_t i = 0; i < count && (i + 1) * entry_size <= bytes; ++i) {
    const auto entry = std::span<const std::byte>(entries).subspan(
        static_cast<std::size_t>(i * entry_size), static_cast<std::size_t>(entry_size));
    const bool used = std::any_of(entry.begin(), entry.begin() + 16,
                                  [](std::byte b) { return b != std::byte{0}; });
    if (!used) continue;
    const std::uint64_t last = Le(entry, 40, 8);
    if (last >= ~std::uint64_t{0} / ls - 1) continue;  // no real disk ends there
    end = std::max(end.value_or(0), (last + 1) * ls);
  }
  return end;
}

}  // namespace

Result<std::optional<std::uint64_t>> PartitionTableEnd(const VirtualReader& read,
                                                       std::uint64_t disk_size,
                                                       std::uint32_t sector_size) {
  const std::uint64_t ls = sector_size;
  if (disk_size < ls) return std::optional<std::uint64_t>();
  std::vector<std::byte> mbr(sector_size);
  VDISK_RETURN_IF_ERROR(read(0, mbr));
  if (Le(mbr, 510, 1) != 0x55 || Le(mbr, 511, 1) != 0xAA) return std::optional<std::uint64_t>();
  std::optional<std::uint64_t> end;
  bool protective = false;
  for (std::size_t i = 0; i < 4; ++i) {
    const std::size_t at = 446 + 16 * i;
    const std::uint64_t type = Le(mbr, at + 4, 1);
    if (type == 0) continue;
    if (type == 0xEE) protective = true;
    const std::uint64_t first = Le(mbr, at + 8, 4);
    const std::uint64_t count = Le(mbr, at + 12, 4);
    end = std::max(end.value_or(0), (first + count) * ls);
  }
  if (protective) {
    VDISK_ASSIGN_OR_RETURN(const auto gpt, GptEnd(read, disk_size, sector_size));
    if (gpt) return gpt;
  }
  return end;
}

Result<std::uint64_t> SmallestSafeSize(const VirtualReader& read, std::uint64_t disk_size,
                                       std::uint32_t sector_size) {
  VDISK_ASSIGN_OR_RETURN(const auto end, PartitionTableEnd(read, disk_size, sector_size));
  if (!end || *end == 0) return disk_size;
  return std::min(*end, disk_size);
}

Result<std::uint64_t> SmallestSafeSizeOf(const Image& image) {
  auto& self = const_cast<Image&>(image);  // Map and ReadData do not change what they read
  const VirtualReader read = [&self](std::uint64_t offset, std::span<std::byte> out) -> Status {
    while (!out.empty()) {
      VDISK_ASSIGN_OR_RETURN(const Extent extent, self.Map(offset, out.size()));
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(extent.length, out.size()));
      if (n == 0) return Status(Code::kInternal, "image mapped an empty extent");
      if (extent.kind == Extent::Kind::kData) {
        VDISK_RETURN_IF_ERROR(self.ReadData(extent.file_offset, out.first(n)));
      } else {
        std::memset(out.data(), 0, n);
      }
      offset += n;
      out = out.subspan(n);
    }
    return Status::Ok();
  };
  return SmallestSafeSize(read, image.virtual_size(), image.logical_sector_size());
}

}  // namespace vdisk
