#include "formats/vhdx/vhdx_metadata.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "base/bytes.h"
#include "formats/vhd/vhd_format.h"  // UTF-16 <-> UTF-8

namespace vdisk::vhdx {
namespace {

struct KnownItem {
  const Guid* id;
  std::uint32_t min_length;
};
constexpr KnownItem kKnownItems[] = {
    {&kFileParametersGuid, sizeof(FileParameters)},
    {&kVirtualDiskSizeGuid, 8},
    {&kPage83DataGuid, 16},
    {&kLogicalSectorSizeGuid, 4},
    {&kPhysicalSectorSizeGuid, 4},
    {&kParentLocatorGuid, sizeof(ParentLocatorHeader)},
};

const KnownItem* FindKnown(const Guid& id) {
  for (const KnownItem& k : kKnownItems) {
    if (*k.id == id) return &k;
  }
  return nullptr;
}

std::string Utf16(std::span<const std::byte> bytes) {
  return vhd::Utf16ToUtf8(bytes, /*big_endian=*/false);
}

Status CheckSectorSize(std::uint32_t bytes, std::string_view which) {
  if (bytes == 512 || bytes == 4096) return Status::Ok();
  return Status(Code::kUnsupportedSectorSize, "metadata item " + std::string(which) + ": " +
                                                  std::to_string(bytes) +
                                                  " bytes is not 512 or 4096");
}

}  // namespace

const std::string* ParentLocator::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ParentLocator::Set(std::string_view key, std::string value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::string(key), std::move(value));
}

Result<ParentLocator> ParseParentLocator(std::span<const std::byte> item) {
  const std::string what = "metadata item Parent Locator";
  if (item.size() < sizeof(ParentLocatorHeader)) {
    return Corrupt(what + ": " + std::to_string(item.size()) + " bytes is too short");
  }
  const auto header = LoadAs<ParentLocatorHeader>(item);
  ParentLocator locator;
  locator.type = header.locator_type;
  if (!(header.locator_type == kVhdxParentLocatorType)) {
    return Status(Code::kNotSupported, what + ": locator type " + header.locator_type.ToString() +
                                           " is not the VHDX parent locator");
  }
  const std::size_t count = header.key_value_count.get();
  if (sizeof(ParentLocatorHeader) + count * sizeof(ParentLocatorEntry) > item.size()) {
    return Corrupt(what + ": " + std::to_string(count) + " key/value entries do not fit in " +
                   std::to_string(item.size()) + " bytes");
  }
  for (std::size_t i = 0; i < count; ++i) {
    const auto e = LoadAs<ParentLocatorEntry>(
        item, sizeof(ParentLocatorHeader) + i * sizeof(ParentLocatorEntry));
    const std::uint64_t ko = e.key_offset.get();
    const std::uint64_t vo = e.value_offset.get();
    const std::uint64_t kl = e.key_length.get();
    const std::uint64_t vl = e.value_length.get();
    if (ko == 0 || vo == 0 || kl == 0 || vl == 0 || kl % 2 != 0 || vl % 2 != 0 ||
        ko + kl > item.size() || vo + vl > item.size()) {
      return Corrupt(what + ": entry " + std::to_string(i) + " (key at " + std::to_string(ko) +
                     ", " + std::to_string(kl) + " bytes; value at " + std::to_string(vo) + ", " +
                     std::to_string(vl) + " bytes) lies outside the item");
    }
    std::string key = Utf16(item.subspan(ko, kl));
    std::string value = Utf16(item.subspan(vo, vl));
    if (locator.Find(key) != nullptr) {
      return Corrupt(what + ": key \"" + key + "\" appears twice");
    }
    locator.entries.emplace_back(std::move(key), std::move(value));
  }
  const std::string* linkage = locator.Find("parent_linkage");
  if (linkage == nullptr) return Corrupt(what + ": required key parent_linkage missing");
  if (!ParseGuid(*linkage)) {
    return Corrupt(what + ": parent_linkage \"" + *linkage + "\" is not a GUID");
  }
  if (const std::string* linkage2 = locator.Find("parent_linkage2");
      linkage2 != nullptr && !ParseGuid(*linkage2)) {
    return Corrupt(what + ": parent_linkage2 \"" + *linkage2 + "\" is not a GUID");
  }
  return locator;
}

Result<Metadata> ParseMetadata(const RegionReader& read, std::uint64_t region_length) {
  if (region_length < kMetadataTableSize) {
    return Corrupt("metadata region of " + std::to_string(region_length) +
                   " bytes cannot hold its 64 KiB table");
  }
  std::vector<std::byte> table(kMetadataTableSize);
  VDISK_RETURN_IF_ERROR(read(0, table));
  const auto header = LoadAs<MetadataTableHeader>(table);
  if (header.signature.get() != kMetadataSignature) {
    return Corrupt("metadata table: signature \"metadata\" missing");
  }
  const std::uint32_t count = header.entry_count.get();
  if (count > kMaxMetadataEntries) {
    return Corrupt("metadata table: " + std::to_string(count) + " entries, at most " +
                   std::to_string(kMaxMetadataEntries) + " allowed");
  }

  Metadata m;
  std::uint32_t user_items = 0;
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto e = LoadAs<MetadataTableEntry>(table, sizeof(MetadataTableHeader) + i * 32);
    MetadataItem item{e.item_id, e.offset.get(), e.length.get(), e.flags.get() & 7};
    const std::string name = "metadata item " + (item.is_user() ? "(user) " + item.id.ToString()
                                                                : MetadataItemName(item.id));
    if (item.length > kMaxMetadataItemLength) {
      return Corrupt(name + ": length " + std::to_string(item.length) + " exceeds 1 MiB");
    }
    if (item.length == 0 && item.offset != 0) {
      return Corrupt(name + ": empty item at non-zero offset " + std::to_string(item.offset));
    }
    if (item.length != 0 && (item.offset < kMetadataTableSize ||
                             item.offset + std::uint64_t{item.length} > region_length)) {
      return Corrupt(name + ": bytes [" + std::to_string(item.offset) + ", " +
                     std::to_string(item.offset + std::uint64_t{item.length}) +
                     ") are not inside the metadata region after its table (64 KiB.." +
                     std::to_string(region_length) + ")");
    }
    for (const MetadataItem& other : m.items) {
      if (other.id == item.id && other.is_user() == item.is_user()) {
        return Corrupt(name + ": appears twice in the metadata table");
      }
      if (item.length != 0 && other.length != 0 && item.offset < other.offset + other.length &&
          other.offset < item.offset + item.length) {
        return Corrupt(name + " at " + std::to_string(item.offset) + " overlaps metadata item " +
                       (other.is_user() ? other.id.ToString() : MetadataItemName(other.id)) +
                       " at " + std::to_string(other.offset));
      }
    }
    if (item.is_user()) {
      if (++user_items > kMaxUserMetadataEntries) {
        return Corrupt("metadata table: more than 1024 user items");
      }
    } else if (FindKnown(item.id) == nullptr && (item.flags & kMetadataIsRequired) != 0) {
      return Status(Code::kNotSupported,
                    "metadata item " + item.id.ToString() + " is marked required but is not known");
    }
    m.items.push_back(item);
  }

  // Loads a known system item; nullopt if absent.
  auto load = [&](const Guid& id) -> Result<std::optional<std::vector<std::byte>>> {
    for (const MetadataItem& item : m.items) {
      if (item.is_user() || !(item.id == id)) continue;
      const KnownItem* known = FindKnown(id);
      if (item.length < known->min_length) {
        return Corrupt("metadata item " + MetadataItemName(id) + ": " +
                       std::to_string(item.length) + " bytes, at least " +
                       std::to_string(known->min_length) + " needed");
      }
      std::vector<std::byte> bytes(item.length);
      VDISK_RETURN_IF_ERROR(read(item.offset, bytes));
      return std::optional<std::vector<std::byte>>(std::move(bytes));
    }
    return std::optional<std::vector<std::byte>>();
  };
  auto require = [&](const Guid& id) -> Result<std::vector<std::byte>> {
    VDISK_ASSIGN_OR_RETURN(auto bytes, load(id));
    if (!bytes) return Corrupt("required metadata item " + MetadataItemName(id) + " missing");
    return std::move(*bytes);
  };

  VDISK_ASSIGN_OR_RETURN(const auto params_bytes, require(kFileParametersGuid));
  const auto params = LoadAs<FileParameters>(params_bytes);
  m.block_size = params.block_size.get();
  m.leave_blocks_allocated = (params.flags.get() & kLeaveBlocksAllocated) != 0;
  m.has_parent = (params.flags.get() & kHasParent) != 0;
  if (!IsPowerOfTwo(m.block_size) || m.block_size < kMinBlockSize || m.block_size > kMaxBlockSize) {
    return Status(Code::kVhdInvalidBlockSize,
                  "metadata item File Parameters: block size " + std::to_string(m.block_size) +
                      " is not a power of two between 1 MiB and 256 MiB");
  }

  VDISK_ASSIGN_OR_RETURN(const auto logical_bytes, require(kLogicalSectorSizeGuid));
  m.logical_sector_size = LoadAs<Le32>(logical_bytes).get();
  VDISK_RETURN_IF_ERROR(CheckSectorSize(m.logical_sector_size, "Logical Sector Size"));
  VDISK_ASSIGN_OR_RETURN(const auto physical_bytes, require(kPhysicalSectorSizeGuid));
  m.physical_sector_size = LoadAs<Le32>(physical_bytes).get();
  VDISK_RETURN_IF_ERROR(CheckSectorSize(m.physical_sector_size, "Physical Sector Size"));

  VDISK_ASSIGN_OR_RETURN(const auto size_bytes, require(kVirtualDiskSizeGuid));
  m.virtual_size = LoadAs<Le64>(size_bytes).get();
  if (m.virtual_size == 0 || m.virtual_size % m.logical_sector_size != 0 ||
      m.virtual_size > kMaxVirtualSize) {
    return Status(Code::kVhdInvalidSize,
                  "metadata item Virtual Disk Size: " + std::to_string(m.virtual_size) +
                      " bytes is not a non-zero multiple of the " +
                      std::to_string(m.logical_sector_size) +
                      "-byte logical sector of at most 64 TiB");
  }

  VDISK_ASSIGN_OR_RETURN(const auto page83_bytes, require(kPage83DataGuid));
  std::memcpy(m.page83.bytes.data(), page83_bytes.data(), 16);

  if (m.has_parent) {
    VDISK_ASSIGN_OR_RETURN(const auto locator_bytes, require(kParentLocatorGuid));
    VDISK_ASSIGN_OR_RETURN(auto locator, ParseParentLocator(locator_bytes));
    m.parent_locator = std::move(locator);
  }
  return m;
}

std::vector<std::byte> SerializeMetadataTable(std::span<const MetadataItem> items) {
  std::vector<std::byte> table(kMetadataTableSize);
  MetadataTableHeader header{};
  header.signature.set(kMetadataSignature);
  header.entry_count.set(static_cast<std::uint16_t>(items.size()));
  std::memcpy(table.data(), &header, sizeof header);
  for (std::size_t i = 0; i < items.size(); ++i) {
    MetadataTableEntry e{};
    e.item_id = items[i].id;
    e.offset.set(items[i].offset);
    e.length.set(items[i].length);
    e.flags.set(items[i].flags);
    std::memcpy(table.data() + sizeof(MetadataTableHeader) + i * sizeof e, &e, sizeof e);
  }
  return table;
}

std::vector<std::byte> SerializeParentLocator(const ParentLocator& locator) {
  std::vector<std::vector<std::byte>> keys;
  std::vector<std::vector<std::byte>> values;
  for (const auto& [k, v] : locator.entries) {
    keys.push_back(vhd::Utf8ToUtf16(k, /*big_endian=*/false));
    values.push_back(vhd::Utf8ToUtf16(v, /*big_endian=*/false));
  }
  std::size_t offset =
      sizeof(ParentLocatorHeader) + locator.entries.size() * sizeof(ParentLocatorEntry);
  std::size_t total = offset;
  for (std::size_t i = 0; i < keys.size(); ++i) total += keys[i].size() + values[i].size();
  std::vector<std::byte> item(total);
  ParentLocatorHeader header{};
  header.locator_type = locator.type;
  header.key_value_count.set(static_cast<std::uint16_t>(locator.entries.size()));
  std::memcpy(item.data(), &header, sizeof header);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ParentLocatorEntry e{};
    e.key_offset.set(static_cast<std::uint32_t>(offset));
    e.key_length.set(static_cast<std::uint16_t>(keys[i].size()));
    std::memcpy(item.data() + offset, keys[i].data(), keys[i].size());
    offset += keys[i].size();
    e.value_offset.set(static_cast<std::uint32_t>(offset));
    e.value_length.set(static_cast<std::uint16_t>(values[i].size()));
    std::memcpy(item.data() + offset, values[i].data(), values[i].size());
    offset += values[i].size();
    std::memcpy(item.data() + sizeof(ParentLocatorHeader) + i * sizeof e, &e, sizeof e);
  }
  return item;
}

std::optional<std::uint32_t> FindMetadataSpace(std::span<const MetadataItem> items,
                                               std::size_t ignore, std::uint32_t length,
                                               std::uint64_t region_length) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i == ignore || items[i].length == 0) continue;
    used.emplace_back(items[i].offset, std::uint64_t{items[i].offset} + items[i].length);
  }
  std::sort(used.begin(), used.end());
  std::uint64_t candidate = kMetadataTableSize;
  for (const auto& [start, end] : used) {
    if (candidate + length <= start) break;
    candidate = std::max(candidate, RoundUp(end, 8));
  }
  if (candidate + length > region_length || candidate > UINT32_MAX) return std::nullopt;
  return static_cast<std::uint32_t>(candidate);
}

}  // namespace vdisk::vhdx
