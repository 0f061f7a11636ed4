// DiskHandle: what a HANDLE from OpenVirtualDisk / CreateVirtualDisk refers to.
//
// It holds the shared OpenDisk, the access the handle was opened with, and the requests in
// flight on it (raw I/O with OVERLAPPED), so that CancelIo/CancelIoEx/CloseHandle can end them.
// A duplicate of the handle (DuplicateHandle) is the same DiskHandle, as a duplicated kernel
// handle is the same file object: one file position, one operation, one completion port; the
// close logic runs when the last of its handles is closed.
// On Windows its kernel handle is the client end of a DiskPipe (win32/disk_pipe.h), through which
// OVERLAPPED requests and operations complete.
#pragma once

#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>

#include "api/abi.h"
#include "api/handle_table.h"
#include "core/disk_operation.h"
#include "core/open_disk.h"
#include "mirror/mirror_job.h"
#ifdef _WIN32
#include "api/win32/disk_pipe.h"
#endif

namespace vdisk::api {

struct DiskHandleOptions {
  DWORD access = VIRTUAL_DISK_ACCESS_NONE;  // V1 access mask
  bool version2 = false;      // opened with V2/V3 parameters: access is decided per operation
  bool read_only = false;     // the disk is open read-only for this handle
  bool get_info_only = false;
};

class DiskHandle final : public KernelObject {
 public:
  DiskHandle(std::shared_ptr<OpenDisk> disk, DiskHandleOptions options);

  OpenDisk& open_disk() const { return *disk_; }
  const std::shared_ptr<OpenDisk>& shared_open_disk() const { return disk_; }
  // The active disk; hold the pointer for the duration of a call (a mirror break may switch it).
  std::shared_ptr<VirtualDisk> disk() const { return disk_->disk(); }
  const DiskHandleOptions& options() const { return options_; }
  // Whether the handle may do what `access` names: V1 handles by their mask, V2 handles by
  // ReadOnly/GetInfoOnly.
  bool Allows(DWORD access) const;

  // Attachment made through this handle (raw I/O); ends when this handle closes.
  void set_attached_here(bool value) { attached_here_ = value; }

  // The last operation started through this handle (a mirror, merge, compaction, resize) and
  // its OVERLAPPED. It stays after it ends, so that its final status can still be queried with
  // the same OVERLAPPED.
  void SetOperation(OVERLAPPED* overlapped, std::shared_ptr<DiskOperation> operation);
  // The operation whose OVERLAPPED is `overlapped` (any, when NULL), or nullptr.
  std::shared_ptr<DiskOperation> Operation(const OVERLAPPED* overlapped) const;
  // The operation, if it is a mirror.
  std::shared_ptr<MirrorJob> Mirror(const OVERLAPPED* overlapped) const {
    return std::dynamic_pointer_cast<MirrorJob>(Operation(overlapped));
  }
  // An asynchronous operation bound to the caller's OVERLAPPED, in this order: PrepareOperation before the work that ends it can end; then, on the caller's thread,
  // LaunchOperation once the work runs (ERROR_IO_PENDING, or the error that kept the operation
  // from pending: then the caller stops the work), or AbandonOperation if it never started.
  void PrepareOperation(OVERLAPPED* overlapped);
  DWORD LaunchOperation(OVERLAPPED* overlapped);
  void AbandonOperation(OVERLAPPED* overlapped);
  // Completes an asynchronous operation's OVERLAPPED, posting to the bound completion port.
  void CompleteOperation(OVERLAPPED* overlapped, DWORD error);

  DWORD Read(void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped) override;
  DWORD Write(const void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped) override;
  DWORD Seek(LONGLONG distance, DWORD method, ULONGLONG* position) override;
  DWORD Flush() override;
  DWORD Cancel(const OVERLAPPED* overlapped) override;
  DWORD AssociatePort(std::shared_ptr<KernelObject> port, ULONG_PTR key) override;
  void OnClose() override;
#ifdef _WIN32
  HANDLE CreateKernelHandle(DWORD* error, std::function<void()> lost) override;
  void OnHandleLost() override;
  bool IsKernelHandle(HANDLE handle) const override;
  void OnDuplicated(HANDLE handle) override;
  void OnValueClosed(HANDLE handle) override;
  // The caller's CancelIo (`this_thread_only`: the operations this thread started) or
  // CancelIoEx is about to cancel operations in the kernel: stop their work first (a mirror
  // removes the target it created), so that the caller sees the source intact once it sees the
  // cancellation.
  void StopOperationsForCancel(const OVERLAPPED* overlapped, bool this_thread_only);
  // The error the operation on `overlapped` failed with, other than a cancellation; 0 if none.
  DWORD FailedOperationError(const OVERLAPPED* overlapped) const;
  // The caller bound the handle to an I/O completion port.
  void MarkPortBound() { pipe_->MarkPortBound(); }
#endif

 private:
  struct Request {
    OVERLAPPED* overlapped;
    std::atomic<bool> cancelled{false};
  };
  enum class Direction { kRead, kWrite };
  // OVERLAPPED requests up to this size complete inline; larger ones go to the I/O workers.
  static constexpr DWORD kInlineLimit = 64 * 1024;

  DWORD Transfer(Direction direction, void* buffer, DWORD length, DWORD* done,
                 OVERLAPPED* overlapped);
  DWORD DoTransfer(Direction direction, void* buffer, DWORD length, std::uint64_t offset);
  // `length`, shortened to end at the disk's end when the range starts inside the disk.
  DWORD ReadableLength(std::uint64_t offset, DWORD length) const;
  void Finish(std::list<std::shared_ptr<Request>>::iterator it, DWORD error, DWORD bytes);
#ifdef _WIN32
  // The operation on `overlapped` was launched on this thread: when the thread exits, it is
  // cancelled as the caller's CancelIo would cancel it, unless the handle is bound to a port.
  void WatchIssuingThread(OVERLAPPED* overlapped);
#endif

  std::shared_ptr<OpenDisk> disk_;
  const DiskHandleOptions options_;
  std::atomic<std::uint64_t> position_{0};
  bool attached_here_ = false;

  mutable std::mutex mutex_;
  std::condition_variable drained_;
  std::list<std::shared_ptr<Request>> pending_;
  std::shared_ptr<KernelObject> port_;
  ULONG_PTR port_key_ = 0;
  OVERLAPPED* operation_overlapped_ = nullptr;
  std::shared_ptr<DiskOperation> operation_;
#ifdef _WIN32
  std::shared_ptr<win32::DiskPipe> pipe_;  // set once, by CreateKernelHandle
#endif
};

}  // namespace vdisk::api
