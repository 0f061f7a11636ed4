// Exports for features this library does not have (VHD sets, resilient change tracking, SCSI
// pass-through, forking).
//
// Each one validates its handle like the real DLL and then answers ERROR_NOT_SUPPORTED (a feature
// of a disk type this library has no provider for), with the reason as the failure message.
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/trace.h"

namespace vdisk::api {
namespace {

DWORD Refuse(const char* name, HANDLE handle, DWORD answer, const char* why,
             bool takes_handle = true) {
  return ExportCall(
      name,
      [&] {
        DWORD error = ERROR_SUCCESS;
        if (takes_handle && !LookupDisk(handle, &error)) return error;
        SetLastFailureMessage(std::string(name) + ": " + why);
        return answer;
      },
      [&] { return Hex(handle); });
}

DWORD NoVhdSet(const char* name, HANDLE handle) {
  return Refuse(name, handle, ERROR_NOT_SUPPORTED, "VHD sets (.vhds) are not supported");
}

}  // namespace
}  // namespace vdisk::api

using vdisk::api::NoVhdSet;
using vdisk::api::Refuse;

extern "C" {

VIRTDISK_API DWORD WINAPI QueryChangesVirtualDisk(HANDLE VirtualDiskHandle, PCWSTR, ULONG64,
                                                  ULONG64, QUERY_CHANGES_VIRTUAL_DISK_FLAG,
                                                  PQUERY_CHANGES_VIRTUAL_DISK_RANGE, PULONG,
                                                  PULONG64) {
  return Refuse("QueryChangesVirtualDisk", VirtualDiskHandle, ERROR_NOT_SUPPORTED,
                "resilient change tracking is not supported");
}
VIRTDISK_API DWORD WINAPI TakeSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                             const PTAKE_SNAPSHOT_VHDSET_PARAMETERS,
                                             TAKE_SNAPSHOT_VHDSET_FLAG) {
  return NoVhdSet("TakeSnapshotVhdSet", VirtualDiskHandle);
}
VIRTDISK_API DWORD WINAPI DeleteSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                               const PDELETE_SNAPSHOT_VHDSET_PARAMETERS,
                                               DELETE_SNAPSHOT_VHDSET_FLAG) {
  return NoVhdSet("DeleteSnapshotVhdSet", VirtualDiskHandle);
}
VIRTDISK_API DWORD WINAPI ModifyVhdSet(HANDLE VirtualDiskHandle, const PMODIFY_VHDSET_PARAMETERS,
                                       MODIFY_VHDSET_FLAG) {
  return NoVhdSet("ModifyVhdSet", VirtualDiskHandle);
}
VIRTDISK_API DWORD WINAPI ApplySnapshotVhdSet(HANDLE VirtualDiskHandle,
                                              const PAPPLY_SNAPSHOT_VHDSET_PARAMETERS,
                                              APPLY_SNAPSHOT_VHDSET_FLAG) {
  return NoVhdSet("ApplySnapshotVhdSet", VirtualDiskHandle);
}
VIRTDISK_API DWORD WINAPI RawSCSIVirtualDisk(HANDLE VirtualDiskHandle,
                                             const PRAW_SCSI_VIRTUAL_DISK_PARAMETERS,
                                             RAW_SCSI_VIRTUAL_DISK_FLAG,
                                             PRAW_SCSI_VIRTUAL_DISK_RESPONSE) {
  return Refuse("RawSCSIVirtualDisk", VirtualDiskHandle, ERROR_NOT_SUPPORTED,
                "SCSI pass-through needs a kernel disk, which a user-mode library does not have");
}
VIRTDISK_API DWORD WINAPI ForkVirtualDisk(HANDLE VirtualDiskHandle, FORK_VIRTUAL_DISK_FLAG,
                                          const FORK_VIRTUAL_DISK_PARAMETERS*, LPOVERLAPPED) {
  return NoVhdSet("ForkVirtualDisk", VirtualDiskHandle);
}
VIRTDISK_API DWORD WINAPI CompleteForkVirtualDisk(HANDLE VirtualDiskHandle) {
  return NoVhdSet("CompleteForkVirtualDisk", VirtualDiskHandle);
}

}  // extern "C"
