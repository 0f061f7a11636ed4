// AttachVirtualDisk and DetachVirtualDisk.
//
// Attaching with ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST surfaces the disk for raw I/O on its
// handle (ReadFile/WriteFile with OVERLAPPED offsets), as Microsoft's RawIO sample uses it.
// Surfacing to other processes (an NBD export) is not built yet: such attaches answer
// ERROR_NOT_SUPPORTED with a message saying so.
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/trace.h"

namespace vdisk::api {
namespace {

constexpr DWORD kKnownAttachFlags = Bits(
    ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, ATTACH_VIRTUAL_DISK_FLAG_NO_SECURITY_DESCRIPTOR, ATTACH_VIRTUAL_DISK_FLAG_BYPASS_DEFAULT_ENCRYPTION_POLICY, ATTACH_VIRTUAL_DISK_FLAG_NON_PNP, ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE, ATTACH_VIRTUAL_DISK_FLAG_SINGLE_PARTITION, ATTACH_VIRTUAL_DISK_FLAG_REGISTER_VOLUME, ATTACH_VIRTUAL_DISK_FLAG_AT_BOOT);

DWORD AttachImpl(HANDLE handle, DWORD flags,
                 PATTACH_VIRTUAL_DISK_PARAMETERS parameters, LPOVERLAPPED overlapped) {
  if ((flags & ~kKnownAttachFlags) != 0) return ERROR_INVALID_PARAMETER;
  if (parameters != nullptr && Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_1 &&
      Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_2)
    return ERROR_INVALID_PARAMETER;
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0 &&
      (parameters == nullptr || Raw(parameters->Version) != ATTACH_VIRTUAL_DISK_VERSION_2))
    return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;

  const bool read_only = (flags & ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY) != 0;
  const DWORD needed =
      read_only ? VIRTUAL_DISK_ACCESS_ATTACH_RO : VIRTUAL_DISK_ACCESS_ATTACH_RW;
  if (!disk->Allows(needed) || disk->options().get_info_only) return ERROR_ACCESS_DENIED;
  if (!read_only && disk->disk()->read_only()) {
    // ISOs, and disks opened read-only, attach only with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY.
    SetLastFailureMessage("the disk is open read-only: attach with ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY");
    return ERROR_ACCESS_DENIED;
  }
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST) == 0) {
    SetLastFailureMessage(
        "only ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST (raw I/O on the handle) is available; "
        "surfacing the disk to other processes is not built yet");
    return ERROR_NOT_SUPPORTED;
  }
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE) != 0) {
    SetLastFailureMessage("ATTACH_VIRTUAL_DISK_FLAG_RESTRICTED_RANGE is not built yet");
    return ERROR_NOT_SUPPORTED;
  }
  const Status status = disk->open_disk().AttachRaw(read_only);
  if (!status.ok()) return Fail(status);
  if ((flags & ATTACH_VIRTUAL_DISK_FLAG_PERMANENT_LIFETIME) == 0) disk->set_attached_here(true);
  return CompleteNow(overlapped, ERROR_SUCCESS);
}

DWORD DetachImpl(HANDLE handle, DWORD flags) {
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  if (flags != DETACH_VIRTUAL_DISK_FLAG_NONE) return ERROR_INVALID_PARAMETER;
  if (!disk->Allows(VIRTUAL_DISK_ACCESS_DETACH) || disk->options().get_info_only)
    return ERROR_ACCESS_DENIED;
  const Status status = disk->open_disk().Detach();
  if (!status.ok()) return Fail(status);
  disk->set_attached_here(false);
  return ERROR_SUCCESS;
}

}  // namespace
}  // namespace vdisk::api

using namespace vdisk::api;  // NOLINT: export definitions only

extern "C" {

VIRTDISK_API DWORD WINAPI AttachVirtualDisk(HANDLE VirtualDiskHandle,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            ATTACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PATTACH_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  (void)SecurityDescriptor;  // raw I/O is confined to this handle; nobody else can connect
  (void)ProviderSpecificFlags;
  ClearLastFailureMessage();
  const DWORD result = GuardedCall("AttachVirtualDisk", [&] {
    return AttachImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped);
  });
  TraceCall("AttachVirtualDisk",
            Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)) + ", flags " + Hex(Raw(Flags)),
            result);
  return result;
}

VIRTDISK_API DWORD WINAPI DetachVirtualDisk(HANDLE VirtualDiskHandle,
                                            DETACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags) {
  (void)ProviderSpecificFlags;
  ClearLastFailureMessage();
  const DWORD result =
      GuardedCall("DetachVirtualDisk", [&] { return DetachImpl(VirtualDiskHandle, Raw(Flags)); });
  TraceCall("DetachVirtualDisk",
            Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)) + ", flags " + Hex(Raw(Flags)),
            result);
  return result;
}

}  // extern "C"
