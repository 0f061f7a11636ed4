#include "api/win32/kernel32_hooks.h"

#include <array>
#include <string>

#include "api/abi.h"
#include "api/disk_handle.h"
#include "api/handle_table.h"
#include "api/trace.h"
#include "api/win32/function_hooks.h"

namespace vdisk::api::win32 {
namespace {

// Written once, before any function is patched; read-only afterwards.
Kernel32Functions original;

BOOL Fail(DWORD error) {
  SetLastError(error);
  return FALSE;
}

DiskHandle* AsDisk(const HandleTable::Borrowed& object) {
  return dynamic_cast<DiskHandle*>(object.get());
}

// Turns a KernelObject result into kernel32's BOOL + last error.
BOOL Result(DWORD error) { return error == ERROR_SUCCESS ? TRUE : Fail(error); }

BOOL WINAPI HookReadFile(HANDLE file, LPVOID buffer, DWORD length, LPDWORD read,
                         LPOVERLAPPED overlapped) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (!object) {
    if (object.closing()) return Fail(ERROR_INVALID_HANDLE);
    return original.ReadFile(file, buffer, length, read, overlapped);
  }
  if (read != nullptr) *read = 0;
  DWORD done = 0;
  const DWORD error =
      GuardedCall("ReadFile", [&] { return object->Read(buffer, length, &done, overlapped); });
  if (read != nullptr && error == ERROR_SUCCESS) *read = done;
  return Result(error);
}

BOOL WINAPI HookWriteFile(HANDLE file, LPCVOID buffer, DWORD length, LPDWORD written,
                          LPOVERLAPPED overlapped) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (!object) {
    if (object.closing()) return Fail(ERROR_INVALID_HANDLE);
    return original.WriteFile(file, buffer, length, written, overlapped);
  }
  if (written != nullptr) *written = 0;
  DWORD done = 0;
  const DWORD error =
      GuardedCall("WriteFile", [&] { return object->Write(buffer, length, &done, overlapped); });
  if (written != nullptr && error == ERROR_SUCCESS) *written = done;
  return Result(error);
}

BOOL WINAPI HookCloseHandle(HANDLE handle) {
  auto& table = HandleTable::Instance();
  {
    const auto found = table.Borrow(handle);
    if (!found) {
      if (found.closing()) return Fail(ERROR_INVALID_HANDLE);  // another thread is closing it
      return original.CloseHandle(handle);
    }
    // The disk handle was closed behind the hooks' back (NtClose) and the kernel gave its value
    // to another object, which is what the caller closes: the disk's close logic must not run
    // here (the caller may hold any lock, e.g. the thread runtime's while it closes a thread).
    if (!found->IsKernelHandle(handle)) {
      table.CloseReused(handle, found.get());
      return original.CloseHandle(handle);
    }
  }
  bool closing = false;
  bool last = false;
  std::shared_ptr<KernelObject> object = table.BeginClose(handle, &closing, &last);
  if (!object) {
    if (closing) return Fail(ERROR_INVALID_HANDLE);  // another thread is closing it
    return original.CloseHandle(handle);
  }
  // The last handle to the disk: cancel a running mirror (its OVERLAPPED ends with
  // STATUS_CANCELLED), detach an attachment made through the handle, then close the kernel
  // handle; the disk is released when the last reference (this one, unless an API call still
  // runs) goes. Another handle (a duplicate) still open: only this value goes, as closing one of
  // two handles to a file object ends nothing on it.
  (void)GuardedCall("CloseHandle", [&] {
    if (last) {
      object->OnClose();
    } else {
      object->OnValueClosed(handle);
    }
    return DWORD{ERROR_SUCCESS};
  });
  const BOOL closed = original.CloseHandle(handle);
  const DWORD error = GetLastError();
  table.EndClose(handle, object.get());
  object.reset();
  SetLastError(error);
  return closed;
}

// The three ways kernel32 binds a handle to a completion port. A disk handle bound to one keeps
// its operations when the issuing thread exits (DiskHandle::WatchIssuingThread).
void NotePortBinding(HANDLE file) {
  if (HandleTable::Instance().size() == 0) return;
  const auto object = HandleTable::Instance().Borrow(file);
  if (DiskHandle* disk = object ? AsDisk(object) : nullptr) disk->MarkPortBound();
}

HANDLE WINAPI HookCreateIoCompletionPort(HANDLE file, HANDLE port, ULONG_PTR key,
                                         DWORD threads) {
  HANDLE result = original.CreateIoCompletionPort(file, port, key, threads);
  if (result != nullptr && file != INVALID_HANDLE_VALUE) {
    const DWORD error = GetLastError();
    NotePortBinding(file);
    SetLastError(error);
  }
  return result;
}

BOOL WINAPI HookBindIoCompletionCallback(HANDLE file, LPOVERLAPPED_COMPLETION_ROUTINE function,
                                         ULONG flags) {
  const BOOL bound = original.BindIoCompletionCallback(file, function, flags);
  if (bound) NotePortBinding(file);
  return bound;
}

PTP_IO WINAPI HookCreateThreadpoolIo(HANDLE file, PTP_WIN32_IO_CALLBACK callback, PVOID context,
                                     PTP_CALLBACK_ENVIRON environment) {
  PTP_IO io = original.CreateThreadpoolIo(file, callback, context, environment);
  if (io != nullptr) NotePortBinding(file);
  return io;
}

bool IsThisProcess(HANDLE process) {
  return process == GetCurrentProcess() || GetProcessId(process) == GetCurrentProcessId();
}

// A duplicate of a disk handle into this process names the same DiskHandle (the table maps the
// new value to it); the disk stays open until the last of its handles is closed. A duplicate
// into another process is a handle to the pipe end only (docs/behaviour.md says what it can do);
// DUPLICATE_CLOSE_SOURCE closes the source here as CloseHandle would.
BOOL WINAPI HookDuplicateHandle(HANDLE source_process, HANDLE source, HANDLE target_process,
                                LPHANDLE target, DWORD access, BOOL inherit, DWORD options) {
  auto& table = HandleTable::Instance();
  if (table.size() == 0 || !IsThisProcess(source_process)) {
    return original.DuplicateHandle(source_process, source, target_process, target, access,
                                    inherit, options);
  }
  BOOL duplicated = FALSE;
  DWORD error = ERROR_SUCCESS;
  {
    const auto found = table.Borrow(source);
    if (!found) {
      if (found.closing()) return Fail(ERROR_INVALID_HANDLE);
      return original.DuplicateHandle(source_process, source, target_process, target, access,
                                      inherit, options);
    }
    if (!found->IsKernelHandle(source)) {  // closed behind the hooks' back, value reused
      table.CloseReused(source, found.get());
      return original.DuplicateHandle(source_process, source, target_process, target, access,
                                      inherit, options);
    }
    // The source stays open here (the borrow holds off its close); it is closed below, through
    // the hook, when asked to.
    duplicated = original.DuplicateHandle(source_process, source, target_process, target, access,
                                          inherit, options & ~DWORD{DUPLICATE_CLOSE_SOURCE});
    error = duplicated ? ERROR_SUCCESS : GetLastError();
    if (duplicated && target != nullptr && IsThisProcess(target_process) &&
        !table.InsertDuplicate(source, *target)) {
      error = ERROR_INVALID_HANDLE;  // the source was closed meanwhile
      original.CloseHandle(*target);
      duplicated = FALSE;
    }
  }
  // As Windows: DUPLICATE_CLOSE_SOURCE closes the source even when the duplicate failed.
  if ((options & DUPLICATE_CLOSE_SOURCE) != 0) HookCloseHandle(source);
  if (!duplicated) return Fail(error);
  SetLastError(ERROR_SUCCESS);
  return TRUE;
}

void StopOperations(HANDLE file, const OVERLAPPED* overlapped, bool this_thread_only) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (DiskHandle* disk = object ? AsDisk(object) : nullptr) {
    (void)GuardedCall("CancelIo", [&] {
      disk->StopOperationsForCancel(overlapped, this_thread_only);
      return DWORD{ERROR_SUCCESS};
    });
  }
}

// CancelIo cancels what the calling thread issued on the handle, CancelIoEx what anyone did; the
// kernel does the cancelling, after the DLL stopped the work behind the operations it hits.
BOOL WINAPI HookCancelIo(HANDLE file) {
  StopOperations(file, nullptr, true);
  return original.CancelIo(file);
}

BOOL WINAPI HookCancelIoEx(HANDLE file, LPOVERLAPPED overlapped) {
  StopOperations(file, overlapped, false);
  return original.CancelIoEx(file, overlapped);
}

// After a failed GetOverlappedResult(Ex): the exact error of a disk operation the kernel could
// only report as cancelled.
BOOL ExactFailure(HANDLE file, const OVERLAPPED* overlapped) {
  const DWORD error = GetLastError();
  if (error == ERROR_OPERATION_ABORTED && HandleTable::Instance().size() != 0) {
    const auto object = HandleTable::Instance().Borrow(file);
    if (DiskHandle* disk = object ? AsDisk(object) : nullptr) {
      if (const DWORD exact = disk->FailedOperationError(overlapped)) return Fail(exact);
    }
  }
  return Fail(error);
}

BOOL WINAPI HookGetOverlappedResult(HANDLE file, LPOVERLAPPED overlapped, LPDWORD transferred,
                                    BOOL wait) {
  if (original.GetOverlappedResult(file, overlapped, transferred, wait)) return TRUE;
  return ExactFailure(file, overlapped);
}

BOOL WINAPI HookGetOverlappedResultEx(HANDLE file, LPOVERLAPPED overlapped, LPDWORD transferred,
                                      DWORD milliseconds, BOOL alertable) {
  if (original.GetOverlappedResultEx(file, overlapped, transferred, milliseconds, alertable))
    return TRUE;
  return ExactFailure(file, overlapped);
}

BOOL WINAPI HookSetFilePointerEx(HANDLE file, LARGE_INTEGER distance, PLARGE_INTEGER position,
                                 DWORD method) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (!object) {
    if (object.closing()) return Fail(ERROR_INVALID_HANDLE);
    return original.SetFilePointerEx(file, distance, position, method);
  }
  ULONGLONG now = 0;
  const DWORD error = GuardedCall("SetFilePointerEx",
                                  [&] { return object->Seek(distance.QuadPart, method, &now); });
  if (error != ERROR_SUCCESS) return Fail(error);
  if (position != nullptr) position->QuadPart = static_cast<LONGLONG>(now);
  return TRUE;
}

DWORD WINAPI HookSetFilePointer(HANDLE file, LONG distance, PLONG distance_high, DWORD method) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (!object) {
    if (object.closing()) {
      SetLastError(ERROR_INVALID_HANDLE);
      return INVALID_SET_FILE_POINTER;
    }
    return original.SetFilePointer(file, distance, distance_high, method);
  }
  // Without a high part the distance is a signed 32-bit value; with one, the two halves.
  const LONGLONG move =
      distance_high != nullptr
          ? static_cast<LONGLONG>(
                (static_cast<ULONGLONG>(static_cast<DWORD>(*distance_high)) << 32) |
                static_cast<DWORD>(distance))
          : static_cast<LONGLONG>(distance);
  ULONGLONG now = 0;
  const DWORD error =
      GuardedCall("SetFilePointer", [&] { return object->Seek(move, method, &now); });
  if (error != ERROR_SUCCESS) {
    SetLastError(error);
    return INVALID_SET_FILE_POINTER;
  }
  if (distance_high != nullptr) {
    *distance_high = static_cast<LONG>(now >> 32);
  } else if ((now >> 32) != 0) {
    SetLastError(ERROR_INVALID_PARAMETER);  // as kernel32: the position needs the high part
    return INVALID_SET_FILE_POINTER;
  }
  SetLastError(ERROR_SUCCESS);  // INVALID_SET_FILE_POINTER may be a real low part
  return static_cast<DWORD>(now);
}

BOOL WINAPI HookFlushFileBuffers(HANDLE file) {
  const auto object = HandleTable::Instance().Borrow(file);
  if (!object) {
    if (object.closing()) return Fail(ERROR_INVALID_HANDLE);
    return original.FlushFileBuffers(file);
  }
  return Result(GuardedCall("FlushFileBuffers", [&] { return object->Flush(); }));
}

const char* MethodName(HookMethod method) {
  switch (method) {
    case HookMethod::kInline:
      return "inline";
    case HookMethod::kTables:
      return "tables";
    default:
      return "none";
  }
}

bool Install() {
  std::array hooks = {
      FunctionHook{"ReadFile", reinterpret_cast<void*>(&HookReadFile),
                   reinterpret_cast<void**>(&original.ReadFile)},
      FunctionHook{"WriteFile", reinterpret_cast<void*>(&HookWriteFile),
                   reinterpret_cast<void**>(&original.WriteFile)},
      FunctionHook{"CloseHandle", reinterpret_cast<void*>(&HookCloseHandle),
                   reinterpret_cast<void**>(&original.CloseHandle)},
      FunctionHook{"CancelIo", reinterpret_cast<void*>(&HookCancelIo),
                   reinterpret_cast<void**>(&original.CancelIo)},
      FunctionHook{"CancelIoEx", reinterpret_cast<void*>(&HookCancelIoEx),
                   reinterpret_cast<void**>(&original.CancelIoEx)},
      FunctionHook{"GetOverlappedResult", reinterpret_cast<void*>(&HookGetOverlappedResult),
                   reinterpret_cast<void**>(&original.GetOverlappedResult)},
      FunctionHook{"GetOverlappedResultEx", reinterpret_cast<void*>(&HookGetOverlappedResultEx),
                   reinterpret_cast<void**>(&original.GetOverlappedResultEx)},
      FunctionHook{"SetFilePointer", reinterpret_cast<void*>(&HookSetFilePointer),
                   reinterpret_cast<void**>(&original.SetFilePointer)},
      FunctionHook{"SetFilePointerEx", reinterpret_cast<void*>(&HookSetFilePointerEx),
                   reinterpret_cast<void**>(&original.SetFilePointerEx)},
      FunctionHook{"FlushFileBuffers", reinterpret_cast<void*>(&HookFlushFileBuffers),
                   reinterpret_cast<void**>(&original.FlushFileBuffers)},
      FunctionHook{"DuplicateHandle", reinterpret_cast<void*>(&HookDuplicateHandle),
                   reinterpret_cast<void**>(&original.DuplicateHandle)},
      FunctionHook{"CreateIoCompletionPort", reinterpret_cast<void*>(&HookCreateIoCompletionPort),
                   reinterpret_cast<void**>(&original.CreateIoCompletionPort)},
      FunctionHook{"BindIoCompletionCallback",
                   reinterpret_cast<void*>(&HookBindIoCompletionCallback),
                   reinterpret_cast<void**>(&original.BindIoCompletionCallback)},
      FunctionHook{"CreateThreadpoolIo", reinterpret_cast<void*>(&HookCreateThreadpoolIo),
                   reinterpret_cast<void**>(&original.CreateThreadpoolIo)},
  };
  HMODULE self = nullptr;
  GetModuleHandleExW(
      GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
      reinterpret_cast<LPCWSTR>(&Install), &self);
  const bool all = InstallFunctionHooks(hooks, self);
  if (TraceEnabled()) {
    std::string line = "kernel32 hooks:";
    for (const auto& hook : hooks)
      line += std::string(" ") + hook.name + "=" + MethodName(hook.method);
    TraceLine(line);
  }
  return all;
}

}  // namespace

void EnsureKernel32Hooks() noexcept {
  static const bool installed = [] {
    try {
      return Install();
    } catch (...) {
      return false;
    }
  }();
  (void)installed;
}

const Kernel32Functions& Original() noexcept { return original; }

}  // namespace vdisk::api::win32
