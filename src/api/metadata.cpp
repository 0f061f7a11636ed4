// SetVirtualDiskInformation and the user-metadata exports (Enumerate/Get/Set/Delete
// VirtualDiskMetadata). The formats do the work through Image's metadata operations; a format
// without the feature answers ERROR_NOT_SUPPORTED.
#include <cstring>
#include <string>
#include <vector>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/impl.h"
#include "api/strings.h"
#include "api/trace.h"
#include "core/merge.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"

namespace vdisk::api {
namespace {

// The handle's disk, if the handle may change metadata (V1: METAOPS; V2: not read-only).
std::shared_ptr<DiskHandle> WritableDisk(HANDLE handle, DWORD* error) {
  auto disk = LookupDisk(handle, error);
  if (!disk) return nullptr;
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_METAOPS) || disk->disk()->read_only()) {
    *error = ERROR_ACCESS_DENIED;
    return nullptr;
  }
  return disk;
}

std::shared_ptr<DiskHandle> ReadableDisk(HANDLE handle, DWORD* error) {
  auto disk = LookupDisk(handle, error);
  if (disk && !disk->Allows(VIRTUAL_DISK_ACCESS_GET_INFO)) {
    *error = ERROR_ACCESS_DENIED;
    return nullptr;
  }
  return disk;
}

DWORD SetParent(Image& child, PCWSTR parent_path) {
  if (parent_path == nullptr || *parent_path == 0) return ERROR_INVALID_PARAMETER;
  if (!child.parent()) return Fail(Status(Code::kVhdInvalidType, "not a differencing disk"));
  DiskOpenRequest request;
  request.path = ToPath(parent_path);
  request.no_parents = true;
  auto parent = VirtualDisk::Open(BuiltinProviders(), request);
  if (!parent.ok()) return Fail(parent.status());
  const Status status = child.SetParentLocation(request.path, (*parent)->top());
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

}  // namespace

DWORD SetInformationImpl(HANDLE handle, PSET_VIRTUAL_DISK_INFO info) {
  if (info == nullptr) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = WritableDisk(handle, &error);
  if (!disk) return error;
  if (Raw(info->Version) == SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH &&
      info->ParentPathWithDepthInfo.ChildDepth > 1) {
    // An image below the top: the disk is reopened with it writable (core/merge.h).
    PCWSTR path = info->ParentPathWithDepthInfo.ParentFilePath;
    if (path == nullptr || *path == 0) return ERROR_INVALID_PARAMETER;
    const Status status = RepointLevel(disk->open_disk(), BuiltinProviders(),
                                       info->ParentPathWithDepthInfo.ChildDepth - 1, ToPath(path));
    return status.ok() ? ERROR_SUCCESS : Fail(status);
  }
  const auto active = disk->disk();
  Image& top = active->top();
  Status status;
  switch (Raw(info->Version)) {
    case SET_VIRTUAL_DISK_INFO_PARENT_PATH:
      return SetParent(top, info->ParentFilePath);
    case SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH: {
      // "ChildDepth: Specifies the depth to the child from the leaf. The leaf itself is at
      // depth 1" (SET_VIRTUAL_DISK_INFO). Deeper images of the chain are reopened writable.
      // Deeper ones were handled above, without holding the disk.
      const ULONG depth = info->ParentPathWithDepthInfo.ChildDepth;
      if (depth == 0) return ERROR_INVALID_PARAMETER;
      return SetParent(top, info->ParentPathWithDepthInfo.ParentFilePath);
    }
    case SET_VIRTUAL_DISK_INFO_PARENT_LOCATOR:
      return SetParent(top, info->ParentLocator.ParentFilePath);
    case SET_VIRTUAL_DISK_INFO_IDENTIFIER:
      status = top.SetUniqueId(FromGuid(info->UniqueIdentifier));
      break;
    case SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE:
      if (info->VhdPhysicalSectorSize != 512 && info->VhdPhysicalSectorSize != 4096)
        return ERROR_INVALID_PARAMETER;
      status = top.SetPhysicalSectorSize(info->VhdPhysicalSectorSize);
      break;
    case SET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID:
      status = top.SetVirtualDiskId(FromGuid(info->VirtualDiskId));
      break;
    case SET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE:
      status = Status(Code::kNotSupported, "resilient change tracking is not supported");
      break;
    default:
      return ERROR_INVALID_PARAMETER;
  }
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

DWORD EnumerateMetadataImpl(HANDLE handle, PULONG count, GUID* items) {
  if (count == nullptr || (*count > 0 && items == nullptr)) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = ReadableDisk(handle, &error);
  if (!disk) return error;
  const auto active = disk->disk();
  auto list = active->top().ListUserMetadata();
  if (!list.ok()) return Fail(list.status());
  const auto n = static_cast<ULONG>(list->size());
  if (*count < n) {
    // ERROR_MORE_DATA, although the function's page says ERROR_INSUFFICIENT_BUFFER: Microsoft's
    // storage sample (Samples/Hyper-V/Storage/cpp/EnumerateUserMetaData.cpp) asks with a count
    // of 0 and goes on only on ERROR_MORE_DATA ("more data available"), so that is what the real
    // DLL answers. GetVirtualDiskMetadata keeps its documented ERROR_INSUFFICIENT_BUFFER.
    *count = n;
    return ERROR_MORE_DATA;
  }
  for (ULONG i = 0; i < n; ++i) items[i] = ToGuid((*list)[i]);
  *count = n;
  return ERROR_SUCCESS;
}

DWORD GetMetadataImpl(HANDLE handle, const GUID* item, PULONG size, PVOID data) {
  if (item == nullptr || size == nullptr || (*size > 0 && data == nullptr))
    return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = ReadableDisk(handle, &error);
  if (!disk) return error;
  const auto active = disk->disk();
  auto value = active->top().GetUserMetadata(FromGuid(*item));
  if (!value.ok()) return Fail(value.status());
  const auto needed = static_cast<ULONG>(value->size());
  if (*size < needed) {
    *size = needed;
    return ERROR_INSUFFICIENT_BUFFER;
  }
  if (needed > 0) std::memcpy(data, value->data(), needed);
  *size = needed;
  return ERROR_SUCCESS;
}

DWORD SetMetadataImpl(HANDLE handle, const GUID* item, ULONG size, const void* data) {
  if (item == nullptr || (size > 0 && data == nullptr)) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = WritableDisk(handle, &error);
  if (!disk) return error;
  const auto active = disk->disk();
  const Status status = active->top().SetUserMetadata(
      FromGuid(*item), std::span(static_cast<const std::byte*>(data), size));
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

DWORD DeleteMetadataImpl(HANDLE handle, const GUID* item) {
  if (item == nullptr) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = WritableDisk(handle, &error);
  if (!disk) return error;
  const auto active = disk->disk();
  const Status status = active->top().DeleteUserMetadata(FromGuid(*item));
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

}  // namespace vdisk::api
