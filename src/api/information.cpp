// GetVirtualDiskInformation.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"

namespace vdisk::api {
namespace {

constexpr ULONG kHeaderSize = offsetof(GET_VIRTUAL_DISK_INFO, Size);

// A data extent that starts at most this far past the previous one's end still follows it: the
// gap is per-block metadata (a VHD sector bitmap, a VHDX sector-bitmap block), not a jump.
constexpr std::uint64_t kMetadataSlack = 1 << 20;

// Percentage of the top image's data extents that do not follow the previous one in the file.
Result<ULONG> Fragmentation(Image& image) {
  std::uint64_t extents = 0;
  std::uint64_t breaks = 0;
  std::uint64_t next_file_offset = 0;
  for (std::uint64_t offset = 0; offset < image.virtual_size();) {
    VDISK_ASSIGN_OR_RETURN(const Extent e, image.Map(offset, image.virtual_size() - offset));
    if (e.kind == Extent::Kind::kData) {
      if (extents > 0 && (e.file_offset < next_file_offset ||
                          e.file_offset > next_file_offset + kMetadataSlack)) {
        ++breaks;
      }
      ++extents;
      next_file_offset = e.file_offset + e.length;
    }
    offset += e.length;
  }
  return static_cast<ULONG>(extents == 0 ? 0 : breaks * 100 / extents);
}

// The resolved parent's path, or nothing when the chain above the top image is not open and
// none of its locators names an existing file.
std::optional<std::filesystem::path> ResolvedParent(const VirtualDisk& disk) {
  if (disk.chain().size() > 1) return disk.chain()[1]->file().path();
  const auto ref = disk.top().parent();
  if (!ref) return std::nullopt;
  for (const auto& candidate : ref->candidates) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  }
  return std::nullopt;
}

}  // namespace

DWORD GetInformationImpl(HANDLE handle, PULONG size, PGET_VIRTUAL_DISK_INFO info, PULONG used) {
  if (size == nullptr || info == nullptr) return ERROR_INVALID_PARAMETER;
  if (*size < kHeaderSize) {
    *size = sizeof(GET_VIRTUAL_DISK_INFO);
    return ERROR_INSUFFICIENT_BUFFER;
  }
  DWORD error = ERROR_SUCCESS;
  auto disk_handle = LookupDisk(handle, &error);
  if (!disk_handle) return error;
  if (!disk_handle->Allows(VIRTUAL_DISK_ACCESS_GET_INFO)) return ERROR_ACCESS_DENIED;

  const std::shared_ptr<VirtualDisk> active = disk_handle->disk();
  // Not while a resize on another thread changes the layout the answers come from.
  const auto query = disk_handle->open_disk().QueryLock();
  VirtualDisk& disk = *active;
  Image& top = disk.top();
  const auto parent = top.parent();
  auto require_parent = [&]() -> DWORD {
    if (parent) return ERROR_SUCCESS;
    return Fail(Status(Code::kVhdInvalidType, "not a differencing disk"));
  };

  // Everything is computed into `reply` first, then copied if the caller's buffer is big enough.
  std::vector<std::byte> reply(sizeof(GET_VIRTUAL_DISK_INFO));
  auto* out = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(reply.data());
  const DWORD version = Raw(info->Version);
  std::memcpy(&out->Version, &version, sizeof version);
  ULONG needed = 0;
  switch (version) {
    case GET_VIRTUAL_DISK_INFO_SIZE: {
      auto physical = top.file().Size();
      if (!physical.ok()) return Fail(physical.status());
      out->Size.VirtualSize = disk.size();
      out->Size.PhysicalSize = *physical;
      out->Size.BlockSize = top.block_size();
      out->Size.SectorSize = top.logical_sector_size();
      needed = kHeaderSize + sizeof(out->Size);
      break;
    }
    case GET_VIRTUAL_DISK_INFO_IDENTIFIER:
      out->Identifier = ToGuid(top.unique_id());
      needed = kHeaderSize + sizeof(GUID);
      break;
    case GET_VIRTUAL_DISK_INFO_PARENT_LOCATION: {
      if (DWORD e = require_parent(); e != ERROR_SUCCESS) return e;
      // Resolved: the parent's path. Not resolved: every stored location, as a multi-string.
      std::basic_string<WCHAR> text;
      const auto resolved = ResolvedParent(disk);
      if (resolved) {
        text = ToWide(resolved->string());
        text.push_back(0);
      } else {
        std::vector<std::string> seen;
        for (const auto& location : parent->stored_locations) {
          if (std::find(seen.begin(), seen.end(), location) != seen.end()) continue;
          seen.push_back(location);
          text += ToWide(location);
          text.push_back(0);
        }
        text.push_back(0);
      }
      const std::size_t buffer_offset =
          offsetof(GET_VIRTUAL_DISK_INFO, ParentLocation.ParentLocationBuffer);
      needed = static_cast<ULONG>(buffer_offset + text.size() * sizeof(WCHAR));
      reply.resize(std::max<std::size_t>(reply.size(), needed));
      out = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(reply.data());
      out->ParentLocation.ParentResolved = resolved ? TRUE : FALSE;
      std::memcpy(reply.data() + buffer_offset, text.data(), text.size() * sizeof(WCHAR));
      break;
    }
    case GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER:
      if (DWORD e = require_parent(); e != ERROR_SUCCESS) return e;
      out->ParentIdentifier = ToGuid(parent->parent_id);
      needed = kHeaderSize + sizeof(GUID);
      break;
    case GET_VIRTUAL_DISK_INFO_PARENT_TIMESTAMP:
      if (DWORD e = require_parent(); e != ERROR_SUCCESS) return e;
      if (!parent->parent_timestamp) {
        return Fail(Status(Code::kNotSupported, "this format records no parent timestamp"));
      }
      out->ParentTimestamp = *parent->parent_timestamp;
      needed = kHeaderSize + sizeof(ULONG);
      break;
    case GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE: {
      const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
      out->VirtualStorageType.DeviceId = static_cast<ULONG>(top.format());
      out->VirtualStorageType.VendorId = microsoft;
      needed = kHeaderSize + sizeof(VIRTUAL_STORAGE_TYPE);
      break;
    }
    case GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE:
      out->ProviderSubtype = static_cast<ULONG>(top.subtype());
      needed = kHeaderSize + sizeof(ULONG);
      break;
    case GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED:
      out->Is4kAligned = top.is_4k_aligned() ? TRUE : FALSE;
      needed = kHeaderSize + sizeof(BOOL);
      break;
    case GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK:
      out->PhysicalDisk.LogicalSectorSize = top.logical_sector_size();
      out->PhysicalDisk.PhysicalSectorSize = top.physical_sector_size();
      out->PhysicalDisk.IsRemote = FALSE;
      needed = kHeaderSize + sizeof(out->PhysicalDisk);
      break;
    case GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE:
      out->VhdPhysicalSectorSize = top.physical_sector_size();
      needed = kHeaderSize + sizeof(ULONG);
      break;
    case GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE: {
      auto smallest = top.SmallestSafeVirtualSize();
      if (!smallest.ok()) return Fail(smallest.status());
      out->SmallestSafeVirtualSize = *smallest;
      needed = kHeaderSize + sizeof(ULONGLONG);
      break;
    }
    case GET_VIRTUAL_DISK_INFO_FRAGMENTATION: {
      auto percent = Fragmentation(top);
      if (!percent.ok()) return Fail(percent.status());
      out->FragmentationPercentage = *percent;
      needed = kHeaderSize + sizeof(ULONG);
      break;
    }
    case GET_VIRTUAL_DISK_INFO_IS_LOADED:
      out->IsLoaded = disk_handle->open_disk().attached() ? TRUE : FALSE;
      needed = kHeaderSize + sizeof(BOOL);
      break;
    case GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID:
      out->VirtualDiskId = ToGuid(top.virtual_disk_id());
      needed = kHeaderSize + sizeof(GUID);
      break;
    case GET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE:
      return Fail(Status(Code::kNotSupported, "resilient change tracking is not supported"));
    default:
      return ERROR_INVALID_PARAMETER;
  }
  if (*size < needed) {
    *size = needed;
    if (used != nullptr) *used = needed;
    return ERROR_INSUFFICIENT_BUFFER;
  }
  std::memcpy(info, reply.data(), needed);
  if (used != nullptr) *used = needed;
  return ERROR_SUCCESS;
}

}  // namespace vdisk::api
