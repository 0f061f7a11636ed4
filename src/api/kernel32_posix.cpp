// The kernel32 subset of include/virtdisk/win32.h, for platforms other than Windows.
//
// Events and I/O completion ports live here; file operations dispatch to the KernelObject
// behind the handle (a disk handle, see disk_handle.cpp). Every function runs its body through
// Kernel32Call, so that nothing thrown crosses the C boundary.
#ifndef _WIN32

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <new>

#include "api/abi.h"
#include "api/handle_table.h"
#include "api/overlapped.h"

namespace vdisk::api {
namespace {

thread_local DWORD last_error = ERROR_SUCCESS;

// GetCurrentProcess's pseudo handle, the value Windows uses: (HANDLE)-1.
const HANDLE kCurrentProcess = reinterpret_cast<HANDLE>(~std::uintptr_t{0});

// Waits on `cv` until `ready()` or the timeout; returns whether ready() held.
template <typename Ready>
bool WaitFor(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, DWORD ms,
             Ready ready) {
  if (ms == INFINITE) {
    cv.wait(lock, ready);
    return true;
  }
  return cv.wait_for(lock, std::chrono::milliseconds(ms), ready);
}

class EventObject final : public KernelObject {
 public:
  EventObject(bool manual_reset, bool initial) : manual_reset_(manual_reset), signalled_(initial) {}

  void Set() {
    {
      std::lock_guard lock(mutex_);
      signalled_ = true;
    }
    if (manual_reset_) {
      cv_.notify_all();
    } else {
      cv_.notify_one();
    }
  }
  void Reset() {
    std::lock_guard lock(mutex_);
    signalled_ = false;
  }
  DWORD Wait(DWORD ms) override {
    std::unique_lock lock(mutex_);
    if (!WaitFor(cv_, lock, ms, [this] { return signalled_; })) return WAIT_TIMEOUT;
    if (!manual_reset_) signalled_ = false;
    return WAIT_OBJECT_0;
  }

 private:
  const bool manual_reset_;
  bool signalled_;
  std::mutex mutex_;
  std::condition_variable cv_;
};

}  // namespace

class CompletionPortObject final : public KernelObject {
 public:
  void Post(const OVERLAPPED_ENTRY& entry) {
    {
      std::lock_guard lock(mutex_);
      packets_.push_back(entry);
    }
    cv_.notify_one();
  }
  bool Take(OVERLAPPED_ENTRY& entry, DWORD ms) {
    std::unique_lock lock(mutex_);
    if (!WaitFor(cv_, lock, ms, [this] { return !packets_.empty(); })) return false;
    entry = packets_.front();
    packets_.pop_front();
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<OVERLAPPED_ENTRY> packets_;
};

void PostToPort(KernelObject& port, DWORD bytes, ULONG_PTR key, OVERLAPPED* overlapped) noexcept {
  if (auto* p = dynamic_cast<CompletionPortObject*>(&port)) {
    try {
      OVERLAPPED_ENTRY entry{};
      entry.lpCompletionKey = key;
      entry.lpOverlapped = overlapped;
      entry.dwNumberOfBytesTransferred = bytes;
      p->Post(entry);
    } catch (...) {
    }
  }
}

namespace {

BOOL Failed(DWORD error) {
  last_error = error;
  return FALSE;
}

}  // namespace

// Runs the body of a kernel32 function: nothing thrown leaves it. An exception makes the call
// fail with ERROR_NOT_ENOUGH_MEMORY (std::bad_alloc) or ERROR_INTERNAL_ERROR as its last error.
template <typename R, typename Body>
R Kernel32Call(const char* name, R failure, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    TraceOutOfMemory(name);
    last_error = ERROR_NOT_ENOUGH_MEMORY;
  } catch (const std::exception& e) {
    TraceException(name, e.what());
    last_error = ERROR_INTERNAL_ERROR;
  } catch (...) {
    TraceException(name, "unknown exception");
    last_error = ERROR_INTERNAL_ERROR;
  }
  return failure;
}
}  // namespace vdisk::api

using vdisk::api::HandleTable;
using vdisk::api::KernelObject;

extern "C" {

DWORD WINAPI GetLastError(void) { return vdisk::api::last_error; }
void WINAPI SetLastError(DWORD error) { vdisk::api::last_error = error; }

BOOL WINAPI CloseHandle(HANDLE object) {
  return vdisk::api::Kernel32Call("CloseHandle", FALSE, [&]() -> BOOL {
    // The value dies first (calls that start from now on fail; calls under way finish), then,
    // if it was the object's last value, the object cancels and drains what is still pending.
    bool last = false;
    auto found = HandleTable::Instance().Remove(object, &last);
    if (!found) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    if (last) found->OnClose();
    return TRUE;
  });
}

HANDLE WINAPI GetCurrentProcess(void) { return vdisk::api::kCurrentProcess; }

BOOL WINAPI DuplicateHandle(HANDLE source_process, HANDLE source, HANDLE target_process,
                            LPHANDLE target, DWORD, BOOL, DWORD options) {
  return vdisk::api::Kernel32Call("DuplicateHandle", FALSE, [&]() -> BOOL {
    // Only this process has handles of this library; any other process handle is not one.
    if (source_process != vdisk::api::kCurrentProcess ||
        target_process != vdisk::api::kCurrentProcess)
      return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    if (target == nullptr) return vdisk::api::Failed(ERROR_INVALID_PARAMETER);
    if ((options & ~(DUPLICATE_CLOSE_SOURCE | DUPLICATE_SAME_ACCESS)) != 0)
      return vdisk::api::Failed(ERROR_INVALID_PARAMETER);
    // The new value names the same object, as a duplicated kernel handle names the same kernel
    // object: same disk, file position, operations and completion port; the object's close
    // logic waits for the last value. Access is the object's (a disk handle's access is fixed
    // when it is opened), so dwDesiredAccess is not narrowed.
    HANDLE duplicate = HandleTable::Instance().InsertDuplicate(source);
    if (duplicate == nullptr) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    *target = duplicate;
    // As Windows: the source is closed when asked to, once the duplicate exists.
    if ((options & DUPLICATE_CLOSE_SOURCE) != 0) CloseHandle(source);
    return TRUE;
  });
}

HANDLE WINAPI CreateEventW(LPSECURITY_ATTRIBUTES, BOOL manual_reset, BOOL initial_state,
                           LPCWSTR name) {
  return vdisk::api::Kernel32Call("CreateEventW", HANDLE{nullptr}, [&]() -> HANDLE {
    if (name != nullptr && *name != 0) {
      vdisk::api::last_error = ERROR_NOT_SUPPORTED;  // named events are not part of the subset
      return nullptr;
    }
    return HandleTable::Instance().Insert(
        std::make_shared<vdisk::api::EventObject>(manual_reset != FALSE, initial_state != FALSE));
  });
}

BOOL WINAPI SetEvent(HANDLE event) {
  return vdisk::api::Kernel32Call("SetEvent", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().GetAs<vdisk::api::EventObject>(event);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    object->Set();
    return TRUE;
  });
}

BOOL WINAPI ResetEvent(HANDLE event) {
  return vdisk::api::Kernel32Call("ResetEvent", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().GetAs<vdisk::api::EventObject>(event);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    object->Reset();
    return TRUE;
  });
}

DWORD WINAPI WaitForSingleObject(HANDLE handle, DWORD milliseconds) {
  return vdisk::api::Kernel32Call("WaitForSingleObject", WAIT_FAILED, [&]() -> DWORD {
    auto object = HandleTable::Instance().Get(handle);
    if (!object) {
      vdisk::api::last_error = ERROR_INVALID_HANDLE;
      return WAIT_FAILED;
    }
    const DWORD result = object->Wait(milliseconds);
    if (result == WAIT_FAILED) vdisk::api::last_error = ERROR_INVALID_HANDLE;
    return result;
  });
}

BOOL WINAPI ReadFile(HANDLE file, LPVOID buffer, DWORD length, LPDWORD read,
                     LPOVERLAPPED overlapped) {
  return vdisk::api::Kernel32Call("ReadFile", FALSE, [&]() -> BOOL {
    const auto object = HandleTable::Instance().Borrow(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    if (read != nullptr) *read = 0;
    DWORD done = 0;
    const DWORD error = object->Read(buffer, length, &done, overlapped);
    if (read != nullptr && error == ERROR_SUCCESS) *read = done;
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    return TRUE;
  });
}

BOOL WINAPI WriteFile(HANDLE file, LPCVOID buffer, DWORD length, LPDWORD written,
                      LPOVERLAPPED overlapped) {
  return vdisk::api::Kernel32Call("WriteFile", FALSE, [&]() -> BOOL {
    const auto object = HandleTable::Instance().Borrow(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    if (written != nullptr) *written = 0;
    DWORD done = 0;
    const DWORD error = object->Write(buffer, length, &done, overlapped);
    if (written != nullptr && error == ERROR_SUCCESS) *written = done;
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    return TRUE;
  });
}

BOOL WINAPI SetFilePointerEx(HANDLE file, LARGE_INTEGER distance, PLARGE_INTEGER new_position,
                             DWORD method) {
  return vdisk::api::Kernel32Call("SetFilePointerEx", FALSE, [&]() -> BOOL {
    const auto object = HandleTable::Instance().Borrow(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    ULONGLONG position = 0;
    const DWORD error = object->Seek(distance.QuadPart, method, &position);
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    if (new_position != nullptr) new_position->QuadPart = static_cast<LONGLONG>(position);
    return TRUE;
  });
}

BOOL WINAPI FlushFileBuffers(HANDLE file) {
  return vdisk::api::Kernel32Call("FlushFileBuffers", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().Get(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    const DWORD error = object->Flush();
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    return TRUE;
  });
}

BOOL WINAPI GetOverlappedResult(HANDLE file, LPOVERLAPPED overlapped, LPDWORD transferred,
                                BOOL wait) {
  return vdisk::api::Kernel32Call("GetOverlappedResult", FALSE, [&]() -> BOOL {
    if (overlapped == nullptr) return vdisk::api::Failed(ERROR_INVALID_PARAMETER);
    if (!vdisk::api::IsComplete(overlapped)) {
      if (!wait) return vdisk::api::Failed(ERROR_IO_INCOMPLETE);
      const HANDLE event = reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(overlapped->hEvent) &
                                                    ~static_cast<ULONG_PTR>(1));
      auto waitable = event ? HandleTable::Instance().Get(event) : nullptr;
      if (waitable) {
        // As on Windows, the event is what is waited on; completion sets it.
        while (!vdisk::api::IsComplete(overlapped)) waitable->Wait(INFINITE);
      } else {
        if (event == nullptr && !HandleTable::Instance().Get(file))
          return vdisk::api::Failed(ERROR_INVALID_HANDLE);
        vdisk::api::WaitForCompletion(overlapped);
      }
    }
    if (transferred != nullptr) *transferred = static_cast<DWORD>(overlapped->InternalHigh);
    const DWORD error = vdisk::api::FromNtStatus(overlapped->Internal);
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    return TRUE;
  });
}

BOOL WINAPI CancelIo(HANDLE file) {
  return vdisk::api::Kernel32Call("CancelIo", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().Get(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    object->Cancel(nullptr);  // CancelIo succeeds whether or not anything was pending
    return TRUE;
  });
}

BOOL WINAPI CancelIoEx(HANDLE file, LPOVERLAPPED overlapped) {
  return vdisk::api::Kernel32Call("CancelIoEx", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().Get(file);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    const DWORD error = object->Cancel(overlapped);
    if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    return TRUE;
  });
}

HANDLE WINAPI CreateIoCompletionPort(HANDLE file, HANDLE existing_port, ULONG_PTR key, DWORD) {
  return vdisk::api::Kernel32Call("CreateIoCompletionPort", HANDLE{nullptr}, [&]() -> HANDLE {
    auto& table = HandleTable::Instance();
    std::shared_ptr<KernelObject> port;
    HANDLE port_handle = existing_port;
    if (existing_port == nullptr) {
      port = std::make_shared<vdisk::api::CompletionPortObject>();
    } else {
      port = table.GetAs<vdisk::api::CompletionPortObject>(existing_port);
      if (!port) {
        vdisk::api::last_error = ERROR_INVALID_PARAMETER;
        return nullptr;
      }
    }
    if (file != INVALID_HANDLE_VALUE) {
      auto object = table.Get(file);
      if (!object) {
        vdisk::api::last_error = ERROR_INVALID_HANDLE;
        return nullptr;
      }
      const DWORD error = object->AssociatePort(port, key);
      if (error != ERROR_SUCCESS) {
        vdisk::api::last_error = error;
        return nullptr;
      }
    }
    if (port_handle == nullptr) port_handle = table.Insert(port);
    return port_handle;
  });
}

BOOL WINAPI GetQueuedCompletionStatus(HANDLE port, LPDWORD bytes, ULONG_PTR* key,
                                      LPOVERLAPPED* overlapped, DWORD milliseconds) {
  return vdisk::api::Kernel32Call("GetQueuedCompletionStatus", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().GetAs<vdisk::api::CompletionPortObject>(port);
    if (!object || bytes == nullptr || key == nullptr || overlapped == nullptr)
      return vdisk::api::Failed(object ? ERROR_INVALID_PARAMETER : ERROR_INVALID_HANDLE);
    OVERLAPPED_ENTRY entry{};
    if (!object->Take(entry, milliseconds)) {
      *overlapped = nullptr;
      return vdisk::api::Failed(WAIT_TIMEOUT);
    }
    *bytes = entry.dwNumberOfBytesTransferred;
    *key = entry.lpCompletionKey;
    *overlapped = entry.lpOverlapped;
    if (entry.lpOverlapped != nullptr) {
      const DWORD error = vdisk::api::FromNtStatus(entry.lpOverlapped->Internal);
      if (error != ERROR_SUCCESS) return vdisk::api::Failed(error);
    }
    return TRUE;
  });
}

BOOL WINAPI PostQueuedCompletionStatus(HANDLE port, DWORD bytes, ULONG_PTR key,
                                       LPOVERLAPPED overlapped) {
  return vdisk::api::Kernel32Call("PostQueuedCompletionStatus", FALSE, [&]() -> BOOL {
    auto object = HandleTable::Instance().GetAs<vdisk::api::CompletionPortObject>(port);
    if (!object) return vdisk::api::Failed(ERROR_INVALID_HANDLE);
    vdisk::api::PostToPort(*object, bytes, key, overlapped);
    return TRUE;
  });
}

}  // extern "C"

#endif  // !_WIN32
