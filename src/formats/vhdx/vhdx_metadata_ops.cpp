// VhdxImage's metadata operations: the system items SetVirtualDiskInformation changes (identifier,
// virtual disk id, physical sector size, parent locator) and the user items of
// Enumerate/Get/Set/DeleteVirtualDiskMetadata, each change written through the log.
#include "formats/vhdx/vhdx_image.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "base/bytes.h"
#include "formats/partition_table.h"
#include "formats/vhdx/vhdx_create.h"

namespace vdisk::vhdx {

Result<std::uint32_t> VhdxImage::PlaceItem(std::vector<MetadataItem>& items, const Guid& id,
                                           bool is_user, std::uint32_t flags,
                                           std::uint32_t length) {
  std::size_t index = items.size();
  std::size_t user_items = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].id == id && items[i].is_user() == is_user) index = i;
    if (items[i].is_user()) ++user_items;
  }
  if (index == items.size()) {
    if (items.size() >= kMaxMetadataEntries || (is_user && user_items >= kMaxUserMetadataEntries)) {
      return Status(Code::kDiskFull, file_->path().string() +
                                         ": the metadata table is full (2047 items, of them at "
                                         "most 1024 user items)");
    }
  }
  std::uint32_t offset = 0;
  if (length != 0) {
    // The old item's space may be reused: the whole update is one atomic log entry.
    const auto place = FindMetadataSpace(items, index, length, metadata_length_);
    if (!place) {
      return Status(Code::kDiskFull, file_->path().string() + ": the " +
                                         std::to_string(metadata_length_) +
                                         "-byte metadata region has no free range of " +
                                         std::to_string(length) + " bytes");
    }
    offset = *place;
  }
  if (index == items.size()) {
    items.push_back({id, offset, length, flags});
  } else {
    items[index].offset = offset;
    items[index].length = length;
    items[index].flags = flags;
  }
  return offset;
}

Status VhdxImage::CommitMetadata(
    std::vector<MetadataItem> items,
    std::span<const std::pair<std::uint32_t, std::vector<std::byte>>> payload) {
  StagedSectors staged;
  // Only the table sectors that change.
  const auto table = SerializeMetadataTable(items);
  std::vector<std::byte> current(kMetadataTableSize);
  VDISK_RETURN_IF_ERROR(reader_.Read(metadata_offset_, current));
  for (std::size_t s = 0; s < kMetadataTableSize; s += kLogSectorSize) {
    if (std::memcmp(table.data() + s, current.data() + s, kLogSectorSize) != 0) {
      staged.emplace(
          metadata_offset_ + s,
          std::vector<std::byte>(table.begin() + static_cast<std::ptrdiff_t>(s),
                                 table.begin() + static_cast<std::ptrdiff_t>(s + kLogSectorSize)));
    }
  }
  for (const auto& [offset, bytes] : payload)
    VDISK_RETURN_IF_ERROR(StageBytes(staged, metadata_offset_ + offset, bytes));
  if (LogEntryLength(staged.size(), 0) > log_length_) {
    return Status(Code::kInvalidParameter, file_->path().string() + ": a metadata update of " +
                                               std::to_string(staged.size()) +
                                               " sectors does not fit in the " +
                                               std::to_string(log_length_) + "-byte log");
  }
  VDISK_RETURN_IF_ERROR(Commit(staged));
  std::lock_guard lock(metadata_mutex_);
  metadata_.items = std::move(items);
  return Status::Ok();
}

Status VhdxImage::WriteSystemItem(const Guid& id, std::span<const std::byte> bytes) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  for (const MetadataItem& item : metadata_.items) {
    if (item.is_user() || !(item.id == id)) continue;
    StagedSectors staged;
    VDISK_RETURN_IF_ERROR(
        StageBytes(staged, metadata_offset_ + item.offset,
                   bytes.first(std::min<std::size_t>(bytes.size(), item.length))));
    return Commit(staged);
  }
  return Status(Code::kInternal, "metadata item " + MetadataItemName(id) + " missing");
}

// SET_VIRTUAL_DISK_INFO_IDENTIFIER sets what IDENTIFIER returns, the DataWriteGuid, through the
// two-header protocol. A child that recorded the old one no longer matches (as on VHD).
Status VhdxImage::SetUniqueId(const Guid& id) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  // The session's own first-write change must not replace the id afterwards.
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/true));
  std::lock_guard lock(header_mutex_);
  return UpdateHeadersLocked([&](Header& h) { h.data_write_guid = id; });
}

Status VhdxImage::SetVirtualDiskId(const Guid& id) {
  VDISK_RETURN_IF_ERROR(WriteSystemItem(kPage83DataGuid, std::as_bytes(std::span(id.bytes))));
  std::lock_guard lock(metadata_mutex_);
  metadata_.page83 = id;
  return Status::Ok();
}

Status VhdxImage::SetPhysicalSectorSize(std::uint32_t bytes) {
  if ((bytes != 512 && bytes != 4096) || bytes < geometry_.logical_sector_size) {
    return Status(Code::kInvalidParameter,
                  "physical sector size " + std::to_string(bytes) +
                      " must be 512 or 4096 and at least the logical sector size " +
                      std::to_string(geometry_.logical_sector_size));
  }
  Le32 value;
  value.set(bytes);
  VDISK_RETURN_IF_ERROR(
      WriteSystemItem(kPhysicalSectorSizeGuid, std::as_bytes(std::span(&value, 1))));
  std::lock_guard lock(metadata_mutex_);
  metadata_.physical_sector_size = bytes;
  return Status::Ok();
}

Status VhdxImage::SetParentLocation(const std::filesystem::path& parent_path, const Image& parent) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  if (!metadata_.has_parent) {
    return Status(
        Code::kInvalidParameter,
        file_->path().string() + " is not a differencing disk: it has no parent to locate");
  }
  const auto* vhdx = dynamic_cast<const VhdxImage*>(&parent);
  if (vhdx == nullptr) {
    return Status(Code::kInvalidParameter,
                  parent_path.string() + ": the parent of a VHDX must be a VHDX");
  }
  VDISK_ASSIGN_OR_RETURN(ParentLocator locator,
                         MakeParentLocator(file_->path(), parent_path, vhdx->data_write_guid()));
  const auto bytes = SerializeParentLocator(locator);
  if (bytes.size() > kMaxMetadataItemLength) {
    return Status(Code::kInvalidParameter, parent_path.string() + ": path too long for a locator");
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  {
    std::lock_guard lock(update_mutex_);
    std::vector<MetadataItem> items = metadata_.items;
    VDISK_ASSIGN_OR_RETURN(const std::uint32_t offset,
                           PlaceItem(items, kParentLocatorGuid, false, kMetadataIsRequired,
                                     static_cast<std::uint32_t>(bytes.size())));
    const std::pair<std::uint32_t, std::vector<std::byte>> payload[] = {{offset, bytes}};
    VDISK_RETURN_IF_ERROR(CommitMetadata(std::move(items), payload));
    std::lock_guard meta_lock(metadata_mutex_);
    metadata_.parent_locator = std::move(locator);
  }
  return BuildParentReference();
}

Result<std::vector<Guid>> VhdxImage::ListUserMetadata() const {
  std::lock_guard lock(metadata_mutex_);
  std::vector<Guid> ids;
  for (const MetadataItem& item : metadata_.items) {
    if (item.is_user()) ids.push_back(item.id);
  }
  return ids;
}

Result<std::vector<std::byte>> VhdxImage::GetUserMetadata(const Guid& id) const {
  // Serialised with updates, which may rewrite the space of a replaced item.
  std::lock_guard update_lock(update_mutex_);
  MetadataItem found;
  bool have = false;
  {
    std::lock_guard lock(metadata_mutex_);
    for (const MetadataItem& item : metadata_.items) {
      if (item.is_user() && item.id == id) {
        found = item;
        have = true;
      }
    }
  }
  if (!have) {
    return Status(Code::kNotFound,
                  file_->path().string() + ": no user metadata item " + id.ToString());
  }
  std::vector<std::byte> bytes(found.length);
  if (found.length != 0)
    VDISK_RETURN_IF_ERROR(reader_.Read(metadata_offset_ + found.offset, bytes));
  return bytes;
}

Status VhdxImage::SetUserMetadata(const Guid& id, std::span<const std::byte> data) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  if (data.size() > kMaxMetadataItemLength) {
    return Status(Code::kInvalidParameter, "user metadata item of " + std::to_string(data.size()) +
                                               " bytes exceeds the 1 MiB limit of a VHDX item");
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  std::vector<MetadataItem> items = metadata_.items;
  VDISK_ASSIGN_OR_RETURN(
      const std::uint32_t offset,
      PlaceItem(items, id, true, kMetadataIsUser, static_cast<std::uint32_t>(data.size())));
  std::vector<std::pair<std::uint32_t, std::vector<std::byte>>> payload;
  if (!data.empty()) payload.emplace_back(offset, std::vector<std::byte>(data.begin(), data.end()));
  return CommitMetadata(std::move(items), payload);
}

Status VhdxImage::DeleteUserMetadata(const Guid& id) {
  if (read_only_) return Status(Code::kWriteProtect, file_->path().string() + ": opened read-only");
  {
    std::lock_guard lock(metadata_mutex_);
    const bool exists =
        std::any_of(metadata_.items.begin(), metadata_.items.end(),
                    [&](const MetadataItem& i) { return i.is_user() && i.id == id; });
    if (!exists) {
      return Status(Code::kNotFound,
                    file_->path().string() + ": no user metadata item " + id.ToString());
    }
  }
  VDISK_RETURN_IF_ERROR(BeginSession(/*user_data=*/false));
  std::lock_guard lock(update_mutex_);
  std::vector<MetadataItem> items = metadata_.items;
  const auto it = std::find_if(items.begin(), items.end(),
                               [&](const MetadataItem& i) { return i.is_user() && i.id == id; });
  if (it == items.end()) {
    return Status(Code::kNotFound,
                  file_->path().string() + ": no user metadata item " + id.ToString());
  }
  items.erase(it);
  return CommitMetadata(std::move(items), {});
}

}  // namespace vdisk::vhdx
