// Long operations on a disk handle (merge, compaction, resize; the mirror has its own start in
// mirror.cpp) and GetVirtualDiskOperationProgress, which reports any of them.
//
// With an OVERLAPPED the operation runs on a thread of its own and the export returns
// ERROR_IO_PENDING, as Windows does for these calls ("If the operation is asynchronous, the
// return value is ERROR_IO_PENDING", MergeVirtualDisk et al. on learn.microsoft.com); without
// one it runs on the caller's thread.
#include <exception>
#include <string>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/overlapped.h"
#include "api/strings.h"
#include "api/trace.h"

namespace vdisk::api {

DWORD RunDiskOperation(DiskHandle& disk, LPOVERLAPPED overlapped, OperationWork work) {
  if (overlapped == nullptr) {
    OperationContext context;
    const Status status = RunOperationHere(work, context);
    return status.ok() ? ERROR_SUCCESS : Fail(status);
  }
  if (auto running = disk.Operation(nullptr); running && !running->Report().finished) {
    return Fail(Status(Code::kVhdInvalidState, "an operation is already running on this handle"));
  }
  DiskHandle* owner = &disk;  // outlives the operation: closing the handle cancels and waits
  auto done = [owner, overlapped](const Status& status) {
    owner->CompleteOperation(overlapped, status.ok() ? ERROR_SUCCESS : ToWin32Error(status.code()));
  };
  // The operation is recorded before its work can possibly end; the OVERLAPPED is restored if
  // it never starts.
  const OVERLAPPED saved = *overlapped;
  disk.PrepareOperation(overlapped);
  std::shared_ptr<BackgroundOperation> operation;
  try {
    operation = BackgroundOperation::Start(std::move(work), std::move(done));
  } catch (const std::exception&) {
    disk.AbandonOperation(overlapped);
    *overlapped = saved;
    return Fail(Status(Code::kNotEnoughMemory, "cannot start a thread for the operation"));
  }
  disk.SetOperation(overlapped, operation);
  // On the caller's thread: on Windows the operation pends in the kernel from here (see
  // win32/disk_pipe.h).
  const DWORD launched = disk.LaunchOperation(overlapped);
  if (launched != ERROR_IO_PENDING) {
    operation->Cancel();
    disk.SetOperation(nullptr, nullptr);
    *overlapped = saved;
    return launched;
  }
  return ERROR_IO_PENDING;
}

namespace {

DWORD ProgressImpl(HANDLE handle, LPOVERLAPPED overlapped, PVIRTUAL_DISK_PROGRESS progress) {
  if (overlapped == nullptr || progress == nullptr) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto disk = LookupDisk(handle, &error);
  if (!disk) return error;
  auto operation = disk->Operation(overlapped);
  if (!operation) {
    return Fail(Status(Code::kInvalidParameter,
                       "no operation was started on this handle with this OVERLAPPED"));
  }
  const OperationProgress p = operation->Report();
  progress->OperationStatus =
      !p.finished ? ERROR_IO_PENDING
                  : (p.final_status.ok() ? ERROR_SUCCESS : ToWin32Error(p.final_status.code()));
  progress->CurrentValue = p.current;
  progress->CompletionValue = p.completion;
  return ERROR_SUCCESS;
}

}  // namespace
}  // namespace vdisk::api

using namespace vdisk::api;  // NOLINT: export definitions only

extern "C" {

VIRTDISK_API DWORD WINAPI GetVirtualDiskOperationProgress(HANDLE VirtualDiskHandle,
                                                          LPOVERLAPPED Overlapped,
                                                          PVIRTUAL_DISK_PROGRESS Progress) {
  ClearLastFailureMessage();
  const DWORD result = GuardedCall("GetVirtualDiskOperationProgress", [&] {
    return ProgressImpl(VirtualDiskHandle, Overlapped, Progress);
  });
  if (result != ERROR_SUCCESS) {
    TraceCall("GetVirtualDiskOperationProgress", Hex(reinterpret_cast<ULONG_PTR>(VirtualDiskHandle)),
              result);
  }
  return result;
}

}  // extern "C"
