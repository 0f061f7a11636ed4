#include "api/disk_api_support.h"

#include <cstring>

#include "api/handle_table.h"
#include "api/overlapped.h"

namespace vdisk::api {

std::shared_ptr<DiskHandle> LookupDisk(HANDLE handle, DWORD* error) {
  auto disk = HandleTable::Instance().GetAs<DiskHandle>(handle);
  if (!disk) *error = ERROR_INVALID_HANDLE;
  return disk;
}

GUID ToGuid(const Guid& guid) {
  GUID out;
  static_assert(sizeof(out) == sizeof(guid.bytes));
  std::memcpy(&out, guid.bytes.data(), sizeof out);
  return out;
}

Guid FromGuid(const GUID& guid) {
  Guid out;
  std::memcpy(out.bytes.data(), &guid, sizeof guid);
  return out;
}

Result<DiskFormat> FormatOf(const VIRTUAL_STORAGE_TYPE& type) {
  const GUID unknown = VIRTDISK_GUID_INIT_VENDOR_UNKNOWN;
  const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  if (std::memcmp(&type.VendorId, &unknown, sizeof(GUID)) != 0 &&
      std::memcmp(&type.VendorId, &microsoft, sizeof(GUID)) != 0) {
    return Status(Code::kProviderNotFound,
                  "unknown vendor " + FromGuid(type.VendorId).ToString());
  }
  switch (type.DeviceId) {
    case VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN: return DiskFormat::kUnknown;
    case VIRTUAL_STORAGE_TYPE_DEVICE_ISO: return DiskFormat::kIso;
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHD: return DiskFormat::kVhd;
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHDX: return DiskFormat::kVhdx;
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHDSET: return DiskFormat::kVhdSet;
    default:
      return Status(Code::kProviderNotFound,
                    "unknown device type " + std::to_string(type.DeviceId));
  }
}

DWORD CompleteNow(OVERLAPPED* overlapped, DWORD error, DiskHandle* disk) {
  // A failure is reported by the return value alone, as for a request that never started.
  if (overlapped == nullptr || error != ERROR_SUCCESS) return error;
#ifdef _WIN32
  if (disk != nullptr) {
    disk->PrepareOperation(overlapped);
    if (disk->LaunchOperation(overlapped) == ERROR_IO_PENDING) {
      disk->CompleteOperation(overlapped, ERROR_SUCCESS);
      return ERROR_IO_PENDING;
    }
  }
#else
  (void)disk;
#endif
  MarkPending(overlapped);
  CompleteOverlapped(overlapped, ERROR_SUCCESS, 0, nullptr, 0);
  return ERROR_IO_PENDING;
}

}  // namespace vdisk::api
