#include "api/disk_handle.h"

#include <new>
#include <span>

#include "api/error_map.h"
#include "api/overlapped.h"
#include "api/trace.h"
#include "core/work_queue.h"
#ifdef _WIN32
#include "api/win32/thread_exit.h"
#endif

namespace vdisk::api {

DiskHandle::DiskHandle(std::shared_ptr<OpenDisk> disk, DiskHandleOptions options)
    : disk_(std::move(disk)), options_(options) {}

bool DiskHandle::Allows(DWORD access) const {
  if (options_.version2) {
    if (options_.get_info_only) return (access & ~VIRTUAL_DISK_ACCESS_GET_INFO) == 0;
    if (options_.read_only) return (access & (VIRTUAL_DISK_ACCESS_ATTACH_RW |
                                              VIRTUAL_DISK_ACCESS_METAOPS |
                                              VIRTUAL_DISK_ACCESS_CREATE)) == 0;
    return true;
  }
  return (options_.access & access) == access;
}

DWORD DiskHandle::Read(void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped) {
  return Transfer(Direction::kRead, buffer, length, done, overlapped);
}

DWORD DiskHandle::Write(const void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped) {
  // The buffer is only read on this path; Transfer takes one pointer type for both directions.
  return Transfer(Direction::kWrite, const_cast<void*>(buffer), length, done, overlapped);
}

DWORD DiskHandle::DoTransfer(Direction direction, void* buffer, DWORD length,
                             std::uint64_t offset) {
  auto bytes = std::span(static_cast<std::byte*>(buffer), length);
  const Status status = direction == Direction::kRead ? disk_->Read(offset, bytes)
                                                      : disk_->Write(offset, bytes);
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

// A read that starts inside the disk and runs past its end reads the sectors up to the end and
// reports that shorter count, as a read crossing the end of a file does (ReadFile). On Windows a
// whole-disk request crossing the end is not refused by the disk class driver: it is sent down
// for the device to decide ("This failed because we think the physical disk is too small. Send it
// down to the drive", DiskReadWriteVerification, Windows-driver-samples
// storage/class/disk/src/disk.c), and the virtual disk serves what it has. Storage sample's RawIO
// copies 1 MiB at a time until the offset reaches the size, so it ends on a disk whose size is no
// multiple of 1 MiB (qemu's CHS-sized VHDs) only with this short read. A read that starts at or
// past the end, and any write crossing it, stay ERROR_INVALID_PARAMETER.
DWORD DiskHandle::ReadableLength(std::uint64_t offset, DWORD length) const {
  const auto disk = disk_->disk();
  const std::uint64_t size = disk->size();
  // A misaligned request fails whole, as disk.sys checks the length against the sector first.
  if (length % disk->sector_size() != 0) return length;
  if (offset >= size || length <= size - offset) return length;
  return static_cast<DWORD>(size - offset);
}

DWORD DiskHandle::Transfer(Direction direction, void* buffer, DWORD length, DWORD* done,
                           OVERLAPPED* overlapped) {
  // Raw I/O needs an attachment (AttachVirtualDisk with NO_LOCAL_HOST): a disk that is not
  // surfaced is "not ready", as a device without media is on Windows.
  if (!disk_->attached()) return ERROR_NOT_READY;
  if (direction == Direction::kWrite && disk_->attached_read_only()) return ERROR_WRITE_PROTECT;
  if (buffer == nullptr && length != 0) return ERROR_INVALID_PARAMETER;
  if (direction == Direction::kRead) {
    const std::uint64_t at =
        overlapped == nullptr
            ? position_.load()
            : (static_cast<std::uint64_t>(overlapped->OffsetHigh) << 32) | overlapped->Offset;
    length = ReadableLength(at, length);
  }
  if (overlapped == nullptr) {
    const std::uint64_t offset = position_.load();
    const DWORD error = DoTransfer(direction, buffer, length, offset);
    if (error == ERROR_SUCCESS) {
      position_.store(offset + length);
      *done = length;
    }
    return error;
  }
  const std::uint64_t offset =
      (static_cast<std::uint64_t>(overlapped->OffsetHigh) << 32) | overlapped->Offset;
#ifdef _WIN32
  // The I/O runs in the caller's thread; the completion (event, byte count, port packet) is
  // the kernel's, through the pipe. A request that fails here fails at once, with no completion,
  // as one the kernel refuses.
  {
    const DWORD error = DoTransfer(direction, buffer, length, offset);
    if (error != ERROR_SUCCESS) return error;
    return pipe_->EchoCompletion(buffer, length, done, overlapped);
  }
#endif
  if (length <= kInlineLimit) {
    // Small requests complete in the caller's thread, as a file system completes a cached
    // request: ReadFile/WriteFile return TRUE, and the OVERLAPPED, its event and the bound
    // completion port still see the completion. A hand-off to a worker would cost more than
    // the page-cache copy itself.
    std::shared_ptr<KernelObject> port;
    ULONG_PTR key = 0;
    {
      std::lock_guard lock(mutex_);
      port = port_;
      key = port_key_;
    }
    MarkPending(overlapped);
    const DWORD error = DoTransfer(direction, buffer, length, offset);
    CompleteOverlapped(overlapped, error, error == ERROR_SUCCESS ? length : 0, port, key);
    if (error == ERROR_SUCCESS) *done = length;
    return error;
  }
  auto request = std::make_shared<Request>();
  request->overlapped = overlapped;
  std::list<std::shared_ptr<Request>>::iterator it;
  {
    std::lock_guard lock(mutex_);
    MarkPending(overlapped);
    it = pending_.insert(pending_.end(), request);
  }
  WorkQueue::Io().Submit([this, it, request, direction, buffer, length, offset] {
    if (request->cancelled.load()) {
      Finish(it, ERROR_OPERATION_ABORTED, 0);
      return;
    }
    DWORD error = ERROR_SUCCESS;
    try {
      error = DoTransfer(direction, buffer, length, offset);
    } catch (...) {
      error = Fail(StatusFromCurrentException());  // completes with an error, never ends the process
    }
    Finish(it, error, error == ERROR_SUCCESS ? length : 0);
  });
  return ERROR_IO_PENDING;
}

void DiskHandle::Finish(std::list<std::shared_ptr<Request>>::iterator it, DWORD error,
                        DWORD bytes) {
  std::shared_ptr<KernelObject> port;
  ULONG_PTR key = 0;
  OVERLAPPED* overlapped = (*it)->overlapped;
  {
    std::lock_guard lock(mutex_);
    port = port_;
    key = port_key_;
  }
  CompleteOverlapped(overlapped, error, bytes, port, key);
  // Notify under the lock: once pending_ is empty, OnClose may return and the handle die.
  std::lock_guard lock(mutex_);
  pending_.erase(it);
  drained_.notify_all();
}

DWORD DiskHandle::Seek(LONGLONG distance, DWORD method, ULONGLONG* position) {
  LONGLONG base = 0;
  switch (method) {
    case FILE_BEGIN: base = 0; break;
    case FILE_CURRENT: base = static_cast<LONGLONG>(position_.load()); break;
    case FILE_END: base = static_cast<LONGLONG>(disk()->size()); break;
    default: return ERROR_INVALID_PARAMETER;
  }
  const LONGLONG target = base + distance;
  if (target < 0) return ERROR_NEGATIVE_SEEK;
  position_.store(static_cast<std::uint64_t>(target));
  *position = static_cast<ULONGLONG>(target);
  return ERROR_SUCCESS;
}

DWORD DiskHandle::Flush() {
  const Status status = disk_->Flush();
  return status.ok() ? ERROR_SUCCESS : Fail(status);
}

void DiskHandle::SetOperation(OVERLAPPED* overlapped, std::shared_ptr<DiskOperation> operation) {
  std::lock_guard lock(mutex_);
  operation_overlapped_ = overlapped;
  operation_ = std::move(operation);
}

std::shared_ptr<DiskOperation> DiskHandle::Operation(const OVERLAPPED* overlapped) const {
  std::lock_guard lock(mutex_);
  if (overlapped != nullptr && overlapped != operation_overlapped_) return nullptr;
  return operation_;
}

#ifdef _WIN32

void DiskHandle::PrepareOperation(OVERLAPPED* overlapped) { pipe_->PrepareOperation(overlapped); }

DWORD DiskHandle::LaunchOperation(OVERLAPPED* overlapped) {
  const DWORD launched = pipe_->LaunchOperation(overlapped);
  if (launched == ERROR_IO_PENDING) {
    try {
      WatchIssuingThread(overlapped);
    } catch (const std::bad_alloc&) {
      // The operation runs and is pending in the kernel; without memory to watch its thread it
      // is only not cancelled when that thread exits (CancelIo and CloseHandle still stop it).
      TraceLine("no memory to watch the issuing thread of an operation; it outlives the thread");
    }
  }
  return launched;
}

// Windows cancels the I/O of an exiting thread unless its handle is bound to a completion port
// (I/O on such a handle is not tied to its thread); Wine's server does the same
// (server/async.c, cancel_terminating_thread_asyncs, which spares asyncs that complete to a port).
// The kernel cancels the operation's read itself when the thread ends; this stops the work
// behind it, on a thread of its own: under Wine 8 the exiting thread runs FLS callbacks under a
// lock that a new thread's start needs, and stopping a mirror waits for its workers (run on the
// exiting thread, the stop hung). So, unlike CancelIo, the caller may see the cancellation a
// moment before the mirror's target is removed; GetVirtualDiskOperationProgress reports
// ERROR_IO_PENDING until it is. The read is cancelled here too, in case the kernel left it.
void DiskHandle::WatchIssuingThread(OVERLAPPED* overlapped) {
  const std::shared_ptr<DiskOperation> operation = Operation(overlapped);
  if (!operation) return;
  std::weak_ptr<win32::DiskPipe> weak_pipe = pipe_;
  std::weak_ptr<DiskOperation> weak_operation = operation;
  win32::AtThreadExit(
      [weak_pipe, weak_operation, overlapped] {
        const auto pipe = weak_pipe.lock();
        const auto running = weak_operation.lock();
        if (!pipe || !running || pipe->port_bound()) return;
        if (pipe->TakeForCancel(overlapped, /*this_thread_only=*/true).empty()) return;
        win32::RunDetached([pipe, running, overlapped] {
          running->Cancel();
          pipe->CancelOperationRead(overlapped);
        });
      },
      std::weak_ptr<const void>(operation));
}

void DiskHandle::AbandonOperation(OVERLAPPED* overlapped) { pipe_->AbandonOperation(overlapped); }

void DiskHandle::CompleteOperation(OVERLAPPED* overlapped, DWORD error) {
  pipe_->CompleteOperation(overlapped, error);
}

HANDLE DiskHandle::CreateKernelHandle(DWORD* error, std::function<void()> lost) {
  pipe_ = win32::DiskPipe::Create(error);
  if (!pipe_) return nullptr;
  pipe_->SetLostHandler(std::move(lost));
  return pipe_->client();
}

void DiskHandle::OnDuplicated(HANDLE handle) { pipe_->AddClientHandle(handle); }

void DiskHandle::OnValueClosed(HANDLE handle) { pipe_->RemoveClientHandle(handle); }

void DiskHandle::OnHandleLost() { pipe_->MarkLost(); }

bool DiskHandle::IsKernelHandle(HANDLE handle) const { return pipe_->IsClientEnd(handle); }

void DiskHandle::StopOperationsForCancel(const OVERLAPPED* overlapped, bool this_thread_only) {
  for (OVERLAPPED* hit : pipe_->TakeForCancel(overlapped, this_thread_only)) (void)Cancel(hit);
}

DWORD DiskHandle::FailedOperationError(const OVERLAPPED* overlapped) const {
  return pipe_->FailedOperationError(overlapped);
}

#else

void DiskHandle::PrepareOperation(OVERLAPPED* overlapped) { MarkPending(overlapped); }

DWORD DiskHandle::LaunchOperation(OVERLAPPED*) { return ERROR_IO_PENDING; }

void DiskHandle::AbandonOperation(OVERLAPPED*) {}

void DiskHandle::CompleteOperation(OVERLAPPED* overlapped, DWORD error) {
  std::shared_ptr<KernelObject> port;
  ULONG_PTR key = 0;
  {
    std::lock_guard lock(mutex_);
    port = port_;
    key = port_key_;
  }
  CompleteOverlapped(overlapped, error, 0, port, key);
}

#endif  // _WIN32

DWORD DiskHandle::Cancel(const OVERLAPPED* overlapped) {
  bool found = false;
  std::shared_ptr<DiskOperation> operation;
  {
    std::lock_guard lock(mutex_);
    for (auto& request : pending_) {
      if (overlapped == nullptr || request->overlapped == overlapped) {
        request->cancelled.store(true);
        found = true;
      }
    }
    if (operation_ && (overlapped == nullptr || overlapped == operation_overlapped_) &&
        !operation_->Report().finished) {
      operation = operation_;
    }
  }
  if (operation) {
    // Completes the operation's OVERLAPPED (ERROR_OPERATION_ABORTED, unless it had just ended)
    // before returning.
    operation->Cancel();
    found = true;
  }
  return found ? ERROR_SUCCESS : ERROR_NOT_FOUND;
}

DWORD DiskHandle::AssociatePort(std::shared_ptr<KernelObject> port, ULONG_PTR key) {
  std::lock_guard lock(mutex_);
  port_ = std::move(port);
  port_key_ = key;
  return ERROR_SUCCESS;
}

void DiskHandle::OnClose() {
  Cancel(nullptr);
  {
    // The operation's last callback may still be running; it must not outlive the handle.
    std::shared_ptr<DiskOperation> operation = Operation(nullptr);
    if (operation) operation->WaitFinished();
  }
  {
    std::unique_lock lock(mutex_);
    drained_.wait(lock, [this] { return pending_.empty(); });
  }
  if (attached_here_ && disk_->attached()) (void)disk_->Detach();
#ifdef _WIN32
  // Last, so that a caller woken by the cancellation finds everything released.
  pipe_->PrepareForClose();
#endif
}

}  // namespace vdisk::api
