// The partition table at the start of a virtual disk (MBR, or GPT behind a protective MBR), read
// through any format: what GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE reports and what
// ResizeVirtualDisk will not cut into without RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE.
//
// MBR: the boot signature 0x55AA at bytes 510..511 of LBA 0 and four 16-byte entries from byte
// 446 (type at +4, first LBA at +8, sector count at +12; type 0 is unused). A type 0xEE entry is
// a protective MBR: the UEFI GPT header at LBA 1 ("EFI PART"; PartitionEntryLBA at +72, number of
// entries at +80, entry size at +84) names the entry array, and an entry whose type GUID (its
// first 16 bytes) is not zero is in use, ending at its EndingLBA (+40), inclusive (UEFI 2.x
// §5.3). A protective MBR without a readable GPT header counts by its MBR entries.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "formats/image.h"
#include "base/status.h"

namespace vdisk {

// Reads `out.size()` bytes (whole sectors) at virtual `offset`.
using VirtualReader = std::function<Status(std::uint64_t offset, std::span<std::byte> out)>;

// The byte just past the last partition, or nullopt when the disk has no partition table (or
// none with a used entry). Entries are trusted only as far as the disk goes: an entry array that
// runs past the end of the disk is read as far as it lies inside it, and a partition may end
// past `disk_size` (the caller caps). REQUIRES: sector_size is 512 or 4096.
Result<std::optional<std::uint64_t>> PartitionTableEnd(const VirtualReader& read,
                                                       std::uint64_t disk_size,
                                                       std::uint32_t sector_size);

// The smallest virtual size that keeps every partition: the end of the last partition, at most
// `disk_size`; `disk_size` itself when there is no partition table.
Result<std::uint64_t> SmallestSafeSize(const VirtualReader& read, std::uint64_t disk_size,
                                       std::uint32_t sector_size);

// SmallestSafeSize of what `image` itself holds (Map and ReadData; a differencing image's parent
// ranges read as zeros): Image::SmallestSafeVirtualSize for VHD and VHDX.
Result<std::uint64_t> SmallestSafeSizeOf(const Image& image);

}  // namespace vdisk
