// What each export of virtdisk.h does, behind the C boundary (api/exports.cpp). Flags and access
// masks arrive as their raw values (Raw()), everything else as the SDK passed it; each returns
// the Win32 error code the export returns. They may throw: ExportCall turns an exception into an
// error code before it reaches the caller.
#pragma once

#include "api/abi.h"

namespace vdisk::api {

// open_create.cpp
DWORD OpenDiskImpl(PVIRTUAL_STORAGE_TYPE type, PCWSTR path, DWORD mask, DWORD flags,
                   POPEN_VIRTUAL_DISK_PARAMETERS parameters, PHANDLE handle);
DWORD CreateDiskImpl(PVIRTUAL_STORAGE_TYPE type, PCWSTR path, DWORD mask, DWORD flags,
                     PCREATE_VIRTUAL_DISK_PARAMETERS parameters, LPOVERLAPPED overlapped,
                     PHANDLE handle);

// attach.cpp
DWORD AttachImpl(HANDLE handle, PSECURITY_DESCRIPTOR security, DWORD flags,
                 PATTACH_VIRTUAL_DISK_PARAMETERS parameters, LPOVERLAPPED overlapped);
DWORD DetachImpl(HANDLE handle, DWORD flags);
DWORD PhysicalPathImpl(HANDLE handle, PULONG size_in_bytes, PWSTR path);
DWORD AllPathsImpl(PULONG size_in_bytes, PWSTR paths);

// storage_dependency.cpp
DWORD DependencyImpl(HANDLE handle, DWORD flags, ULONG size, PSTORAGE_DEPENDENCY_INFO info,
                     PULONG size_used);

// information.cpp
DWORD GetInformationImpl(HANDLE handle, PULONG size, PGET_VIRTUAL_DISK_INFO info, PULONG used);

// metadata.cpp
DWORD SetInformationImpl(HANDLE handle, PSET_VIRTUAL_DISK_INFO info);
DWORD EnumerateMetadataImpl(HANDLE handle, PULONG count, GUID* items);
DWORD GetMetadataImpl(HANDLE handle, const GUID* item, PULONG size, PVOID data);
DWORD SetMetadataImpl(HANDLE handle, const GUID* item, ULONG size, const void* data);
DWORD DeleteMetadataImpl(HANDLE handle, const GUID* item);

// operations.cpp
DWORD ProgressImpl(HANDLE handle, LPOVERLAPPED overlapped, PVIRTUAL_DISK_PROGRESS progress);

// compact.cpp
DWORD CompactImpl(HANDLE handle, DWORD flags, PCOMPACT_VIRTUAL_DISK_PARAMETERS parameters,
                  LPOVERLAPPED overlapped);

// merge.cpp
DWORD MergeImpl(HANDLE handle, DWORD flags, PMERGE_VIRTUAL_DISK_PARAMETERS parameters,
                LPOVERLAPPED overlapped);
DWORD AddParentImpl(HANDLE handle, PCWSTR parent_path);

// resize.cpp
DWORD ExpandImpl(HANDLE handle, DWORD flags, PEXPAND_VIRTUAL_DISK_PARAMETERS parameters,
                 LPOVERLAPPED overlapped);
DWORD ResizeImpl(HANDLE handle, DWORD flags, PRESIZE_VIRTUAL_DISK_PARAMETERS parameters,
                 LPOVERLAPPED overlapped);

// mirror.cpp
DWORD MirrorImpl(HANDLE handle, DWORD flags, PMIRROR_VIRTUAL_DISK_PARAMETERS parameters,
                 LPOVERLAPPED overlapped);
DWORD BreakMirrorImpl(HANDLE handle);

}  // namespace vdisk::api
