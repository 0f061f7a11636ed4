// Handles of the Windows storage stack that GetStorageDependencyInformation accepts besides disk
// handles (Windows builds only).
#pragma once

#include <windows.h>

namespace vdisk::api::win32 {

// Whether `handle` is a volume (CreateFileW(L"\\\\.\\C:")), a physical drive
// (L"\\\\.\\PhysicalDrive0") or a volume's root directory (L"C:\\" with
// FILE_FLAG_BACKUP_SEMANTICS): a device of the storage stack answering
// IOCTL_STORAGE_GET_DEVICE_NUMBER, opened as a whole (no file name) or at its root ("\").
// A file or any other directory on a volume, a pipe, an event: false.
bool IsVolumeOrDriveHandle(HANDLE handle);

}  // namespace vdisk::api::win32
