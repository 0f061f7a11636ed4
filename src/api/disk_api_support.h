// Helpers shared by the virtual disk exports.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "api/abi.h"
#include "api/disk_handle.h"
#include "base/status.h"
#include "core/disk_operation.h"
#include "formats/image.h"

namespace vdisk::api {

// The disk handle behind `handle`, or nullptr with *error set (ERROR_INVALID_HANDLE).
std::shared_ptr<DiskHandle> LookupDisk(HANDLE handle, DWORD* error);

// VIRTUAL_STORAGE_TYPE -> the format to open or create; kProviderNotFound for an unknown vendor
// or device.
Result<DiskFormat> FormatOf(const VIRTUAL_STORAGE_TYPE& type);
GUID ToGuid(const Guid& guid);
Guid FromGuid(const GUID& guid);

// For calls that finish before returning but were given an OVERLAPPED: complete it as Windows
// completes an asynchronous request, so that a caller waiting on it proceeds. On Windows the
// completion goes through `disk`'s kernel handle (event, port packet), when there is one.
DWORD CompleteNow(OVERLAPPED* overlapped, DWORD error, DiskHandle* disk);

// Runs `work` for an export (merge, compact, resize...): on this thread when `overlapped` is
// null (returns its Win32 code), else bound to `overlapped` as MirrorVirtualDisk is: returns
// ERROR_IO_PENDING; the OVERLAPPED completes with the result (a bound completion port gets a
// packet); GetVirtualDiskOperationProgress reports it; CancelIo/CancelIoEx/CloseHandle cancel
// it and it completes with ERROR_OPERATION_ABORTED. One operation at a time per handle: another
// still running gives ERROR_VHD_INVALID_STATE. Validate parameters before calling it.
DWORD RunDiskOperation(DiskHandle& disk, LPOVERLAPPED overlapped, OperationWork work);

// Binds an operation that `start` begins to `overlapped` (not null) and returns
// ERROR_IO_PENDING; `start` is given the completion to call when the operation ends. If `start`
// fails or throws, or the launch fails, the OVERLAPPED is as it was and the error is returned.
// One operation at a time per handle, as RunDiskOperation.
using OperationStart =
    std::function<Result<std::shared_ptr<DiskOperation>>(std::function<void(const Status&)>)>;
DWORD StartDiskOperation(DiskHandle& disk, LPOVERLAPPED overlapped, const OperationStart& start);

}  // namespace vdisk::api
