// The kernel32 calls a caller makes on a disk handle, intercepted in the process (Windows
// builds only). See docs/architecture.md, "Windows handles", for the model; function_hooks.h for how.
//
// A disk handle is the client end of a named pipe (disk_pipe.h). The hooks look every handle up
// in the HandleTable; a handle that is not a disk handle goes straight to the original function
// (with no disk handle open, after one atomic load). For a disk handle:
//  - ReadFile/WriteFile do the raw I/O (DiskHandle::Read/Write), and an OVERLAPPED request
//    completes through the kernel (DiskPipe::EchoCompletion);
//  - SetFilePointer(Ex)/FlushFileBuffers act on the disk;
//  - CancelIo/CancelIoEx stop the operations (mirror) the cancel hits, then let the kernel cancel
//    their pending reads: the OVERLAPPED ends with STATUS_CANCELLED and the source is intact;
//  - CloseHandle runs the handle's close logic (cancel a running mirror, detach an attachment made
//    through it, release the disk) when it closes the disk's last handle, then closes the kernel
//    handle;
//  - DuplicateHandle into this process maps the new value to the same disk handle;
//  - CreateIoCompletionPort, BindIoCompletionCallback and CreateThreadpoolIo note that a disk
//    handle is bound to a port (its operations then outlive the thread that issued them);
//  - GetOverlappedResult(Ex) report the exact error of an operation that failed (the kernel
//    could only be told "cancelled", see DiskPipe).
#pragma once

#include <windows.h>

namespace vdisk::api::win32 {

// The original kernel32 functions: what the DLL itself calls on pipe ends, so that its own
// calls never come back through a hook.
struct Kernel32Functions {
  decltype(&::ReadFile) ReadFile = nullptr;
  decltype(&::WriteFile) WriteFile = nullptr;
  decltype(&::CloseHandle) CloseHandle = nullptr;
  decltype(&::CancelIo) CancelIo = nullptr;
  decltype(&::CancelIoEx) CancelIoEx = nullptr;
  decltype(&::GetOverlappedResult) GetOverlappedResult = nullptr;
  decltype(&::GetOverlappedResultEx) GetOverlappedResultEx = nullptr;
  decltype(&::SetFilePointer) SetFilePointer = nullptr;
  decltype(&::SetFilePointerEx) SetFilePointerEx = nullptr;
  decltype(&::FlushFileBuffers) FlushFileBuffers = nullptr;
  decltype(&::DuplicateHandle) DuplicateHandle = nullptr;
  decltype(&::CreateIoCompletionPort) CreateIoCompletionPort = nullptr;
  decltype(&::BindIoCompletionCallback) BindIoCompletionCallback = nullptr;
  decltype(&::CreateThreadpoolIo) CreateThreadpoolIo = nullptr;
};

// Installs the hooks, once per process (later calls return at once). Called before the first
// disk handle is made.
void EnsureKernel32Hooks() noexcept;

// REQUIRES: EnsureKernel32Hooks() has run.
const Kernel32Functions& Original() noexcept;

}  // namespace vdisk::api::win32
