// The VHDX metadata region (MS-VHDX §2.6): a 64 KiB table of items, the known system items
// (file parameters, sizes, page 83 identity, parent locator) and user items.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/guid.h"
#include "base/status.h"
#include "formats/vhdx/vhdx_format.h"

namespace vdisk::vhdx {

// One entry of the metadata table (§2.6.1.2). Offsets are relative to the region.
struct MetadataItem {
  Guid id;
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
  std::uint32_t flags = 0;  // kMetadataIsUser | kMetadataIsVirtualDisk | kMetadataIsRequired
  bool is_user() const { return (flags & kMetadataIsUser) != 0; }
};

// §2.6.2.6: the parent locator's type and key/value pairs (UTF-8 here, UTF-16LE on disk).
struct ParentLocator {
  Guid type = kVhdxParentLocatorType;
  std::vector<std::pair<std::string, std::string>> entries;  // in stored order
  const std::string* Find(std::string_view key) const;
  void Set(std::string_view key, std::string value);
};

// The metadata region as this implementation understands it.
struct Metadata {
  std::vector<MetadataItem> items;  // the table, in table order
  std::uint32_t block_size = 0;
  bool leave_blocks_allocated = false;
  bool has_parent = false;
  std::uint64_t virtual_size = 0;
  Guid page83;
  std::uint32_t logical_sector_size = 0;
  std::uint32_t physical_sector_size = 0;
  std::optional<ParentLocator> parent_locator;  // when has_parent
};

// Reads `out.size()` bytes at `offset` from the start of the metadata region.
using RegionReader = std::function<Status(std::uint64_t offset, std::span<std::byte> out)>;

// Parses and validates the metadata region of `region_length` bytes (§2.6). Fails with
// kFileCorrupt for structural damage, kNotSupported for an unknown required item or locator type,
// kVhdInvalidBlockSize, kUnsupportedSectorSize or kVhdInvalidSize for out-of-range values. Every
// message names the table or item at fault.
Result<Metadata> ParseMetadata(const RegionReader& read, std::uint64_t region_length);

// Parses a parent locator item (§2.6.2.6), requiring the VHDX type and parent_linkage.
Result<ParentLocator> ParseParentLocator(std::span<const std::byte> item);

// The 64 KiB table for `items` (§2.6.1).
std::vector<std::byte> SerializeMetadataTable(std::span<const MetadataItem> items);
// A parent locator item (§2.6.2.6).
std::vector<std::byte> SerializeParentLocator(const ParentLocator& locator);

// The lowest offset in [64 KiB, region_length) where `length` bytes (8-byte aligned) fit between
// the items, ignoring the item at index `ignore` (pass items.size() to ignore none).
std::optional<std::uint32_t> FindMetadataSpace(std::span<const MetadataItem> items,
                                               std::size_t ignore, std::uint32_t length,
                                               std::uint64_t region_length);

}  // namespace vdisk::vhdx
