// Kernel objects and the handle table behind every HANDLE the library gives out.
//
// Linux: a HANDLE is a slot index plus a generation (never 0, never INVALID_HANDLE_VALUE), so a
// closed or forged handle is recognised and answered with ERROR_INVALID_HANDLE. Lookups take
// no lock (raw I/O looks a handle up on every call).
// Windows: a HANDLE is a real kernel handle (an event the DLL creates) mapped to the object, so
// the caller's CloseHandle on it is legal; see README "Windows handles" for what remains.
#pragma once

#include <memory>
#include <utility>

#include "api/abi.h"

namespace vdisk::api {

class KernelObject {
 public:
  virtual ~KernelObject() = default;
  // The kernel32 file operations as this object implements them; each returns a Win32 error
  // (ERROR_IO_PENDING for an OVERLAPPED request that is under way).
  virtual DWORD Read(void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped);
  virtual DWORD Write(const void* buffer, DWORD length, DWORD* done, OVERLAPPED* overlapped);
  virtual DWORD Seek(LONGLONG distance, DWORD method, ULONGLONG* position);
  virtual DWORD Flush();
  // Cancels this handle's pending requests for `overlapped` (all of them when NULL); returns
  // ERROR_NOT_FOUND when there was nothing to cancel.
  virtual DWORD Cancel(const OVERLAPPED* overlapped);
  // Associates an I/O completion port (opaque here) with this handle.
  virtual DWORD AssociatePort(std::shared_ptr<KernelObject> port, ULONG_PTR key);
  // Waits until signalled; WAIT_OBJECT_0, WAIT_TIMEOUT or WAIT_FAILED.
  virtual DWORD Wait(DWORD milliseconds);
  // The handle was closed: cancel, drain, release. Called once, after the table dropped the
  // handle (new calls on it fail) and every call under way on it returned.
  virtual void OnClose() {}
};

class HandleTable {
 public:
  static HandleTable& Instance();

  // The object behind a handle, held for the length of one call (ReadFile, WriteFile,
  // SetFilePointerEx): cheaper than Get, and CloseHandle on the handle waits until it is
  // released. Never hold one across a wait that another thread's CloseHandle could end.
  class Borrowed {
   public:
    Borrowed() = default;
    ~Borrowed();
    Borrowed(Borrowed&& other) noexcept
        : slot_(std::exchange(other.slot_, nullptr)),
          object_(std::exchange(other.object_, nullptr)),
          owner_(std::move(other.owner_)) {}
    Borrowed& operator=(Borrowed&&) = delete;
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;

    explicit operator bool() const { return object_ != nullptr; }
    KernelObject* operator->() const { return object_; }

   private:
    friend class HandleTable;
    Borrowed(void* slot, KernelObject* object) : slot_(slot), object_(object) {}
    explicit Borrowed(std::shared_ptr<KernelObject> owner)
        : object_(owner.get()), owner_(std::move(owner)) {}

    void* slot_ = nullptr;  // Linux: the table slot whose user count this holds
    KernelObject* object_ = nullptr;
    std::shared_ptr<KernelObject> owner_;  // Windows: the reference that keeps the object
  };

  HANDLE Insert(std::shared_ptr<KernelObject> object);
  Borrowed Borrow(HANDLE handle) const;
  std::shared_ptr<KernelObject> Get(HANDLE handle) const;
  template <typename T>
  std::shared_ptr<T> GetAs(HANDLE handle) const {
    return std::dynamic_pointer_cast<T>(Get(handle));
  }
  // Removes the handle and returns its object (nullptr when not ours).
  std::shared_ptr<KernelObject> Remove(HANDLE handle);
  // Number of live handles (for leak checks).
  std::size_t size() const;

 private:
  HandleTable() = default;
  struct Impl;
  Impl& impl() const;
};

}  // namespace vdisk::api
