// DiskPipe: the kernel object behind a disk handle on Windows (Windows builds only).
//
// The handle a caller gets from OpenVirtualDisk/CreateVirtualDisk is the client end of a
// message-mode, overlapped named pipe with no buffer quota; the DLL keeps the server end. So the
// handle is a real kernel handle: CloseHandle, CancelIo(Ex), GetOverlappedResult, waits and I/O
// completion ports work on it as the kernel makes them work. The two directions of the pipe
// carry different things:
//  - server -> client: completions of asynchronous operations (MirrorVirtualDisk). The operation
//    pends as ReadFile(client, sink, 1, NULL, caller's OVERLAPPED), issued on the caller's thread
//    (so CancelIo from that thread, and the thread's exit, cancel it as Windows would). A 0-byte
//    message from the server end completes it with success: the kernel sets Internal, the
//    event and queues the completion packet. A pipe read can only end in success or
//    cancellation, so an operation that fails is completed by cancelling its read
//    (STATUS_CANCELLED, ERROR_OPERATION_ABORTED) and the exact error is kept here: the hooked
//    GetOverlappedResult(Ex) and GetVirtualDiskOperationProgress report it. Nothing the kernel
//    reports for a failed operation ever says success.
//  - client -> server: completions of raw I/O. ReadFile/WriteFile on the disk handle do the I/O
//    in the caller's thread, then "echo" it: the real WriteFile(client, buffer, n, caller's
//    OVERLAPPED), which the watch thread reads off the server end, so the byte count, event,
//    packet and FILE_SKIP_COMPLETION_PORT_ON_SUCCESS are the kernel's.
// A watch thread (one for all pipes, PipeWatcher in disk_pipe.cpp) keeps an overlapped read
// pending on every server end: it drains the echoes, and it ends with ERROR_BROKEN_PIPE when the
// caller's handle is closed, even by a path that bypassed the CloseHandle hook (NtClose).
#pragma once

#include <windows.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "platform/shared_mutex.h"

namespace vdisk::api::win32 {

// Runs `work` on a thread of its own, made with CreateThread. The DLL's helper threads are not
// std::threads: winpthreads closes a thread's handle inside its own global lock, and that
// CloseHandle comes through the hook, which must never wait there for work that needs to start
// a thread (a mirror's).
void RunDetached(std::function<void()> work);

class DiskPipe final {
 public:
  // Creates the pipe and its client end, and starts watching it. nullptr with *error set on
  // failure.
  static std::shared_ptr<DiskPipe> Create(DWORD* error);
  ~DiskPipe();
  DiskPipe(const DiskPipe&) = delete;
  DiskPipe& operator=(const DiskPipe&) = delete;

  // The caller's handle. The DLL never closes it.
  HANDLE client() const { return client_; }
  // Whether `handle` still is this pipe's client end (by the pipe's unique name): after a close
  // that bypassed the hooks the kernel may have given the value to any other object.
  bool IsClientEnd(HANDLE handle) const;
  // The caller's handles to the client end: client() and its duplicates (DuplicateHandle). The
  // DLL makes its own calls on the client end through one of them that is still open; a handle
  // is removed before the caller's close of it reaches the kernel.
  void AddClientHandle(HANDLE handle);
  void RemoveClientHandle(HANDLE handle);

  // --- asynchronous operations, in this order:
  // Records an operation bound to `overlapped`, before the work that will complete it starts.
  void PrepareOperation(OVERLAPPED* overlapped);
  // Issues its pending read; on the caller's thread, after the work started. ERROR_IO_PENDING,
  // or the error that kept the read from pending (then nothing completes the OVERLAPPED).
  DWORD LaunchOperation(OVERLAPPED* overlapped);
  // The work could not start: forget the operation (its OVERLAPPED was never touched).
  void AbandonOperation(OVERLAPPED* overlapped);
  // The work ended with `error`: complete the OVERLAPPED through the kernel. An operation ended
  // by the caller's CancelIo/CancelIoEx is left to the kernel's own cancellation.
  void CompleteOperation(OVERLAPPED* overlapped, DWORD error);
  // The operations a caller's CancelIoEx(handle, overlapped) (`overlapped` may be NULL: all) or,
  // with `this_thread_only`, CancelIo(handle) is about to cancel in the kernel; from now on
  // their completion is the kernel's.
  std::vector<OVERLAPPED*> TakeForCancel(const OVERLAPPED* overlapped, bool this_thread_only);
  // The error an operation on `overlapped` failed with, other than a cancellation; 0 if none.
  DWORD FailedOperationError(const OVERLAPPED* overlapped) const;
  // Cancels the pending read of an operation taken with TakeForCancel (the caller's CancelIoEx
  // of it, done by the DLL).
  void CancelOperationRead(OVERLAPPED* overlapped);
  // The caller bound the handle to an I/O completion port (CreateIoCompletionPort,
  // BindIoCompletionCallback, CreateThreadpoolIo): its operations outlive their issuing thread.
  void MarkPortBound() { port_bound_.store(true); }
  bool port_bound() const { return port_bound_.load(); }

  // --- raw I/O
  // Completes a raw I/O request of `length` bytes, already done, through the kernel. Returns
  // ERROR_SUCCESS (completed at once, *done set), ERROR_IO_PENDING, or an error.
  DWORD EchoCompletion(const void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped);

  // --- close
  // The caller is closing the handle: wait (bounded) until echoes under way have been read,
  // cancel operation reads still pending, and ignore the broken pipe that follows.
  void PrepareForClose();
  // Called once, on a thread of its own, if the client end was closed behind the hooks' back.
  void SetLostHandler(std::function<void()> handler);
  // The client end is known to be closed already (its value may name another object now): the
  // DLL makes no more calls on it.
  void MarkLost();

 private:
  friend class PipeWatcher;
  struct Operation {
    OVERLAPPED* overlapped = nullptr;
    DWORD thread = 0;          // issuing thread
    bool issued = false;       // its read pends (or pended) in the kernel
    bool kernel_done = false;  // its read was completed or cancelled (by us or the caller)
    bool ended = false;        // the work ended
    DWORD error = ERROR_SUCCESS;
  };

  DiskPipe(std::wstring name, HANDLE server, HANDLE client, HANDLE write_event, HANDLE probe_event);
  Operation* FindLocked(const OVERLAPPED* overlapped, bool ended);
  void FinishInKernelLocked(Operation& op);
  void SendCompletionLocked();
  void DrainStaleMessagesLocked(HANDLE client);
  void OnBroken();  // from the watch thread
  // Runs `call` with an open handle to the client end (it stays open meanwhile).
  template <typename Call>
  auto WithClient(Call&& call) const {
    std::shared_lock lock(clients_mutex_);
    return call(clients_.empty() ? client_ : clients_.front());
  }

  const std::wstring name_;  // as FileNameInfo reports it: "\\virtdisk-..."
  const HANDLE server_;
  const HANDLE client_;
  const HANDLE write_event_;  // completion messages (low bit set: no port packet)
  const HANDLE probe_event_;  // drain reads on the client end
  OVERLAPPED watch_read_{};   // the watch thread's read on the server end
  char sink_[1] = {};         // operation reads land here (0-byte messages: nothing lands)

  mutable std::mutex mutex_;
  std::vector<Operation> operations_;  // GUARDED_BY(mutex_)
  OVERLAPPED write_{};                 // GUARDED_BY(mutex_)
  bool closing_ = false;               // GUARDED_BY(mutex_)
  bool broken_ = false;                // GUARDED_BY(mutex_)
  std::atomic<bool> port_bound_{false};
  std::function<void()> lost_;         // GUARDED_BY(mutex_)
  // The caller's open handles to the client end, oldest first. Lock order: mutex_, then this.
  mutable platform::SharedMutex clients_mutex_;
  std::vector<HANDLE> clients_;  // GUARDED_BY(clients_mutex_)
};

}  // namespace vdisk::api::win32
