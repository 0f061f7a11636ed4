// Long operations on a disk handle (merge, compaction, resize, and the mirror's start, which
// binds a MirrorJob the same way) and GetVirtualDiskOperationProgress, which reports any of them.
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
#include "api/impl.h"
#include "api/overlapped.h"
#include "api/strings.h"
#include "api/trace.h"

namespace vdisk::api {

DWORD StartDiskOperation(DiskHandle& disk, LPOVERLAPPED overlapped, const OperationStart& start) {
  if (auto running = disk.Operation(nullptr); running && !running->Report().finished) {
    return Fail(Status(Code::kVhdInvalidState, "an operation is already running on this handle"));
  }
  DiskHandle* owner = &disk;  // outlives the operation: closing the handle cancels and waits
  auto done = [owner, overlapped](const Status& status) {
    owner->CompleteOperation(overlapped, status.ok() ? ERROR_SUCCESS : ToWin32Error(status.code()));
  };
  // The operation is recorded before it can possibly end; the OVERLAPPED is restored if it
  // never starts.
  const OVERLAPPED saved = *overlapped;
  disk.PrepareOperation(overlapped);
  Result<std::shared_ptr<DiskOperation>> started = CatchAsStatus([&] { return start(done); });
  if (!started.ok()) {
    disk.AbandonOperation(overlapped);
    *overlapped = saved;
    return Fail(started.status());
  }
  std::shared_ptr<DiskOperation> operation = std::move(started).value();
  DWORD launched = ERROR_SUCCESS;
  try {
    disk.SetOperation(overlapped, operation);
    // On the caller's thread: on Windows the operation pends in the kernel from here (see
    // win32/disk_pipe.h).
    launched = disk.LaunchOperation(overlapped);
  } catch (...) {
    // Started but not launched: stopped again (a mirror removes the target it created).
    const Status failed = StatusFromCurrentException();
    operation->Cancel();
    disk.SetOperation(nullptr, nullptr);
    disk.AbandonOperation(overlapped);
    *overlapped = saved;
    return Fail(failed);
  }
  if (launched != ERROR_IO_PENDING) {
    operation->Cancel();
    disk.SetOperation(nullptr, nullptr);
    *overlapped = saved;
    return launched;
  }
  return ERROR_IO_PENDING;
}

DWORD RunDiskOperation(DiskHandle& disk, LPOVERLAPPED overlapped, OperationWork work) {
  if (overlapped == nullptr) {
    OperationContext context;
    const Status status = RunOperationHere(work, context);
    return status.ok() ? ERROR_SUCCESS : Fail(status);
  }
  return StartDiskOperation(
      disk, overlapped,
      [&](std::function<void(const Status&)> done) -> Result<std::shared_ptr<DiskOperation>> {
        return std::shared_ptr<DiskOperation>(
            BackgroundOperation::Start(std::move(work), std::move(done)));
      });
}

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

}  // namespace vdisk::api
