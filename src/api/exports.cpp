// The C boundary: the 29 functions of virtdisk.h, in the header's order, and nothing else. Each
// one runs its implementation (api/impl.h; the topic files) through ExportCall, which clears the
// thread's failure message, turns any exception into an error code and, when tracing is on,
// logs the call with the arguments given here. The features this library does not have (VHD
// sets, resilient change tracking, SCSI pass-through, forking) validate their handle like the
// real DLL and answer ERROR_NOT_SUPPORTED with the reason as the failure message.
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/impl.h"
#include "api/trace.h"

namespace vdisk::api {
namespace {

std::string Describe(PVIRTUAL_STORAGE_TYPE type) {
  if (type == nullptr) return "NULL";
  return "{" + std::to_string(type->DeviceId) + "," + FromGuid(type->VendorId).ToString() + "}";
}

// "version N" of a parameters or information structure, or "NULL".
template <typename Parameters>
std::string VersionOf(const Parameters* parameters) {
  return parameters ? "version " + std::to_string(Raw(parameters->Version)) : "NULL";
}

DWORD Refuse(const char* name, HANDLE handle, const char* why) {
  return ExportCall(
      name,
      [&] {
        DWORD error = ERROR_SUCCESS;
        if (!LookupDisk(handle, &error)) return error;
        SetLastFailureMessage(std::string(name) + ": " + why);
        return static_cast<DWORD>(ERROR_NOT_SUPPORTED);
      },
      [&] { return Hex(handle); });
}

constexpr char kNoVhdSets[] = "VHD sets (.vhds) are not supported";

}  // namespace
}  // namespace vdisk::api

using namespace vdisk::api;  // NOLINT: export definitions only

extern "C" {

VIRTDISK_API DWORD WINAPI OpenVirtualDisk(PVIRTUAL_STORAGE_TYPE VirtualStorageType, PCWSTR Path,
                                          VIRTUAL_DISK_ACCESS_MASK VirtualDiskAccessMask,
                                          OPEN_VIRTUAL_DISK_FLAG Flags,
                                          POPEN_VIRTUAL_DISK_PARAMETERS Parameters,
                                          PHANDLE Handle) {
  return ExportCall(
      "OpenVirtualDisk",
      [&] {
        return OpenDiskImpl(VirtualStorageType, Path, Raw(VirtualDiskAccessMask), Raw(Flags),
                            Parameters, Handle);
      },
      [&] {
        return TraceArgs(Describe(VirtualStorageType), Quote(Path), VirtualDiskAccessMask, Flags,
                         VersionOf(Parameters));
      });
}

VIRTDISK_API DWORD WINAPI CreateVirtualDisk(PVIRTUAL_STORAGE_TYPE VirtualStorageType, PCWSTR Path,
                                            VIRTUAL_DISK_ACCESS_MASK VirtualDiskAccessMask,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            CREATE_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PCREATE_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped, PHANDLE Handle) {
  (void)SecurityDescriptor;  // the new file gets the process's default permissions
  (void)ProviderSpecificFlags;
  return ExportCall(
      "CreateVirtualDisk",
      [&] {
        return CreateDiskImpl(VirtualStorageType, Path, Raw(VirtualDiskAccessMask), Raw(Flags),
                              Parameters, Overlapped, Handle);
      },
      [&] {
        return TraceArgs(Describe(VirtualStorageType), Quote(Path), VirtualDiskAccessMask, Flags,
                         VersionOf(Parameters));
      });
}

VIRTDISK_API DWORD WINAPI AttachVirtualDisk(HANDLE VirtualDiskHandle,
                                            PSECURITY_DESCRIPTOR SecurityDescriptor,
                                            ATTACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags,
                                            PATTACH_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  (void)ProviderSpecificFlags;
  return ExportCall(
      "AttachVirtualDisk",
      [&] {
        return AttachImpl(VirtualDiskHandle, SecurityDescriptor, Raw(Flags), Parameters,
                          Overlapped);
      },
      [&] { return TraceArgs(VirtualDiskHandle, Flags, VersionOf(Parameters)); });
}

VIRTDISK_API DWORD WINAPI DetachVirtualDisk(HANDLE VirtualDiskHandle,
                                            DETACH_VIRTUAL_DISK_FLAG Flags,
                                            ULONG ProviderSpecificFlags) {
  (void)ProviderSpecificFlags;
  return ExportCall(
      "DetachVirtualDisk", [&] { return DetachImpl(VirtualDiskHandle, Raw(Flags)); },
      [&] { return TraceArgs(VirtualDiskHandle, Flags); });
}

VIRTDISK_API DWORD WINAPI GetVirtualDiskPhysicalPath(HANDLE VirtualDiskHandle,
                                                     PULONG DiskPathSizeInBytes, PWSTR DiskPath) {
  return ExportCall(
      "GetVirtualDiskPhysicalPath",
      [&] { return PhysicalPathImpl(VirtualDiskHandle, DiskPathSizeInBytes, DiskPath); },
      [&] { return TraceArgs(VirtualDiskHandle); });
}

VIRTDISK_API DWORD WINAPI GetAllAttachedVirtualDiskPhysicalPaths(PULONG PathsBufferSizeInBytes,
                                                                 PWSTR PathsBuffer) {
  return ExportCall(
      "GetAllAttachedVirtualDiskPhysicalPaths",
      [&] { return AllPathsImpl(PathsBufferSizeInBytes, PathsBuffer); },
      [&] { return std::string(); });
}

VIRTDISK_API DWORD WINAPI GetStorageDependencyInformation(
    HANDLE ObjectHandle, GET_STORAGE_DEPENDENCY_FLAG Flags, ULONG StorageDependencyInfoSize,
    PSTORAGE_DEPENDENCY_INFO StorageDependencyInfo, PULONG SizeUsed) {
  return ExportCall(
      "GetStorageDependencyInformation",
      [&] {
        return DependencyImpl(ObjectHandle, Raw(Flags), StorageDependencyInfoSize,
                              StorageDependencyInfo, SizeUsed);
      },
      [&] {
        return TraceArgs(ObjectHandle, Flags, std::to_string(StorageDependencyInfoSize) + " bytes");
      });
}

VIRTDISK_API DWORD WINAPI GetVirtualDiskInformation(HANDLE VirtualDiskHandle,
                                                    PULONG VirtualDiskInfoSize,
                                                    PGET_VIRTUAL_DISK_INFO VirtualDiskInfo,
                                                    PULONG SizeUsed) {
  return ExportCall(
      "GetVirtualDiskInformation",
      [&] {
        return GetInformationImpl(VirtualDiskHandle, VirtualDiskInfoSize, VirtualDiskInfo,
                                  SizeUsed);
      },
      [&] { return TraceArgs(VirtualDiskHandle, VersionOf(VirtualDiskInfo)); });
}

VIRTDISK_API DWORD WINAPI SetVirtualDiskInformation(HANDLE VirtualDiskHandle,
                                                    PSET_VIRTUAL_DISK_INFO VirtualDiskInfo) {
  return ExportCall(
      "SetVirtualDiskInformation",
      [&] { return SetInformationImpl(VirtualDiskHandle, VirtualDiskInfo); },
      [&] { return TraceArgs(VirtualDiskHandle, VersionOf(VirtualDiskInfo)); });
}

VIRTDISK_API DWORD WINAPI EnumerateVirtualDiskMetadata(HANDLE VirtualDiskHandle,
                                                       PULONG NumberOfItems, GUID* Items) {
  return ExportCall(
      "EnumerateVirtualDiskMetadata",
      [&] { return EnumerateMetadataImpl(VirtualDiskHandle, NumberOfItems, Items); },
      [&] { return TraceArgs(VirtualDiskHandle); });
}

VIRTDISK_API DWORD WINAPI GetVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID* Item,
                                                 PULONG MetaDataSize, PVOID MetaData) {
  return ExportCall(
      "GetVirtualDiskMetadata",
      [&] { return GetMetadataImpl(VirtualDiskHandle, Item, MetaDataSize, MetaData); },
      [&] { return TraceArgs(VirtualDiskHandle); });
}

VIRTDISK_API DWORD WINAPI SetVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID* Item,
                                                 ULONG MetaDataSize, const void* MetaData) {
  return ExportCall(
      "SetVirtualDiskMetadata",
      [&] { return SetMetadataImpl(VirtualDiskHandle, Item, MetaDataSize, MetaData); },
      [&] { return TraceArgs(VirtualDiskHandle, std::to_string(MetaDataSize) + " bytes"); });
}

VIRTDISK_API DWORD WINAPI DeleteVirtualDiskMetadata(HANDLE VirtualDiskHandle, const GUID* Item) {
  return ExportCall(
      "DeleteVirtualDiskMetadata", [&] { return DeleteMetadataImpl(VirtualDiskHandle, Item); },
      [&] { return TraceArgs(VirtualDiskHandle); });
}

VIRTDISK_API DWORD WINAPI GetVirtualDiskOperationProgress(HANDLE VirtualDiskHandle,
                                                          LPOVERLAPPED Overlapped,
                                                          PVIRTUAL_DISK_PROGRESS Progress) {
  // Polled in a loop by every caller of an asynchronous operation: traced only when it fails.
  return ExportCall(
      "GetVirtualDiskOperationProgress",
      [&] { return ProgressImpl(VirtualDiskHandle, Overlapped, Progress); },
      [&] { return TraceArgs(VirtualDiskHandle); }, TraceWhen::kOnFailure);
}

VIRTDISK_API DWORD WINAPI CompactVirtualDisk(HANDLE VirtualDiskHandle,
                                             COMPACT_VIRTUAL_DISK_FLAG Flags,
                                             PCOMPACT_VIRTUAL_DISK_PARAMETERS Parameters,
                                             LPOVERLAPPED Overlapped) {
  return ExportCall(
      "CompactVirtualDisk",
      [&] { return CompactImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped); },
      [&] {
        return TraceArgs(VirtualDiskHandle, Flags, VersionOf(Parameters),
                         Overlapped ? "overlapped" : "synchronous");
      });
}

VIRTDISK_API DWORD WINAPI MergeVirtualDisk(HANDLE VirtualDiskHandle, MERGE_VIRTUAL_DISK_FLAG Flags,
                                           PMERGE_VIRTUAL_DISK_PARAMETERS Parameters,
                                           LPOVERLAPPED Overlapped) {
  return ExportCall(
      "MergeVirtualDisk",
      [&] { return MergeImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped); },
      [&] { return TraceArgs(VirtualDiskHandle, Flags, VersionOf(Parameters)); });
}

VIRTDISK_API DWORD WINAPI ExpandVirtualDisk(HANDLE VirtualDiskHandle,
                                            EXPAND_VIRTUAL_DISK_FLAG Flags,
                                            PEXPAND_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  return ExportCall(
      "ExpandVirtualDisk",
      [&] { return ExpandImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped); },
      [&] { return TraceArgs(VirtualDiskHandle, Flags, VersionOf(Parameters)); });
}

VIRTDISK_API DWORD WINAPI ResizeVirtualDisk(HANDLE VirtualDiskHandle,
                                            RESIZE_VIRTUAL_DISK_FLAG Flags,
                                            PRESIZE_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  return ExportCall(
      "ResizeVirtualDisk",
      [&] { return ResizeImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped); },
      [&] { return TraceArgs(VirtualDiskHandle, Flags, VersionOf(Parameters)); });
}

VIRTDISK_API DWORD WINAPI MirrorVirtualDisk(HANDLE VirtualDiskHandle,
                                            MIRROR_VIRTUAL_DISK_FLAG Flags,
                                            PMIRROR_VIRTUAL_DISK_PARAMETERS Parameters,
                                            LPOVERLAPPED Overlapped) {
  return ExportCall(
      "MirrorVirtualDisk",
      [&] { return MirrorImpl(VirtualDiskHandle, Raw(Flags), Parameters, Overlapped); },
      [&] {
        const bool v1 = Parameters && Raw(Parameters->Version) == MIRROR_VIRTUAL_DISK_VERSION_1;
        return TraceArgs(
            VirtualDiskHandle, Flags,
            v1 ? Quote(Parameters->Version1.MirrorVirtualDiskPath) : VersionOf(Parameters));
      });
}

VIRTDISK_API DWORD WINAPI BreakMirrorVirtualDisk(HANDLE VirtualDiskHandle) {
  return ExportCall(
      "BreakMirrorVirtualDisk", [&] { return BreakMirrorImpl(VirtualDiskHandle); },
      [&] { return TraceArgs(VirtualDiskHandle); });
}

VIRTDISK_API DWORD WINAPI AddVirtualDiskParent(HANDLE VirtualDiskHandle, PCWSTR ParentPath) {
  return ExportCall(
      "AddVirtualDiskParent", [&] { return AddParentImpl(VirtualDiskHandle, ParentPath); },
      [&] { return TraceArgs(VirtualDiskHandle, Quote(ParentPath)); });
}

VIRTDISK_API DWORD WINAPI QueryChangesVirtualDisk(HANDLE VirtualDiskHandle, PCWSTR, ULONG64,
                                                  ULONG64, QUERY_CHANGES_VIRTUAL_DISK_FLAG,
                                                  PQUERY_CHANGES_VIRTUAL_DISK_RANGE, PULONG,
                                                  PULONG64) {
  return Refuse("QueryChangesVirtualDisk", VirtualDiskHandle,
                "resilient change tracking is not supported");
}

VIRTDISK_API DWORD WINAPI TakeSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                             const PTAKE_SNAPSHOT_VHDSET_PARAMETERS,
                                             TAKE_SNAPSHOT_VHDSET_FLAG) {
  return Refuse("TakeSnapshotVhdSet", VirtualDiskHandle, kNoVhdSets);
}

VIRTDISK_API DWORD WINAPI DeleteSnapshotVhdSet(HANDLE VirtualDiskHandle,
                                               const PDELETE_SNAPSHOT_VHDSET_PARAMETERS,
                                               DELETE_SNAPSHOT_VHDSET_FLAG) {
  return Refuse("DeleteSnapshotVhdSet", VirtualDiskHandle, kNoVhdSets);
}

VIRTDISK_API DWORD WINAPI ModifyVhdSet(HANDLE VirtualDiskHandle, const PMODIFY_VHDSET_PARAMETERS,
                                       MODIFY_VHDSET_FLAG) {
  return Refuse("ModifyVhdSet", VirtualDiskHandle, kNoVhdSets);
}

VIRTDISK_API DWORD WINAPI ApplySnapshotVhdSet(HANDLE VirtualDiskHandle,
                                              const PAPPLY_SNAPSHOT_VHDSET_PARAMETERS,
                                              APPLY_SNAPSHOT_VHDSET_FLAG) {
  return Refuse("ApplySnapshotVhdSet", VirtualDiskHandle, kNoVhdSets);
}

VIRTDISK_API DWORD WINAPI RawSCSIVirtualDisk(HANDLE VirtualDiskHandle,
                                             const PRAW_SCSI_VIRTUAL_DISK_PARAMETERS,
                                             RAW_SCSI_VIRTUAL_DISK_FLAG,
                                             PRAW_SCSI_VIRTUAL_DISK_RESPONSE) {
  return Refuse("RawSCSIVirtualDisk", VirtualDiskHandle,
                "SCSI pass-through needs a kernel disk, which a user-mode library does not have");
}

VIRTDISK_API DWORD WINAPI ForkVirtualDisk(HANDLE VirtualDiskHandle, FORK_VIRTUAL_DISK_FLAG,
                                          const FORK_VIRTUAL_DISK_PARAMETERS*, LPOVERLAPPED) {
  return Refuse("ForkVirtualDisk", VirtualDiskHandle, kNoVhdSets);
}

VIRTDISK_API DWORD WINAPI CompleteForkVirtualDisk(HANDLE VirtualDiskHandle) {
  return Refuse("CompleteForkVirtualDisk", VirtualDiskHandle, kNoVhdSets);
}

}  // extern "C"
