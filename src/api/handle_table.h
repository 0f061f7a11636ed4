// Kernel objects and the handle table behind every HANDLE the library gives out.
//
// Linux: a HANDLE is a slot index plus a generation (never 0, never INVALID_HANDLE_VALUE), so a
// closed or forged handle is recognised and answered with ERROR_INVALID_HANDLE. Lookups take
// no lock (raw I/O looks a handle up on every call).
// Windows: a HANDLE is a real kernel handle mapped to the object: for a disk handle, the client
// end of a named pipe (win32/disk_pipe.h). The caller's kernel32 calls on it reach the object
// through the hooks of win32/kernel32_hooks.h; see docs/architecture.md, "Windows handles".
// Both: several values may name one object (DuplicateHandle), as several handles name one kernel
// object; the object's close logic (OnClose) runs when the last of them is closed.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
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
  // The last handle to the object was closed: cancel, drain, release. Called once, after the
  // table dropped the handle (new calls on it fail) and every call under way on it returned.
  virtual void OnClose() {}
#ifdef _WIN32
  // The kernel handle the caller gets for this object (the table maps it back); nullptr with
  // *error set on failure. The default is an event of the DLL's own. `lost()` is to be called
  // if the last kernel handle to the object gets closed without the table knowing (NtClose),
  // once the DLL learns of it.
  virtual HANDLE CreateKernelHandle(DWORD* error, std::function<void()> lost);
  // Before OnClose, when the last kernel handle was closed without the table knowing: its value
  // may already name another object, so no more calls may be made on it.
  virtual void OnHandleLost() {}
  // Whether `handle` still names this object's kernel object (a close that bypassed the hooks
  // lets the kernel give the value to anything). Costs a system call.
  virtual bool IsKernelHandle(HANDLE) const { return true; }
  // `handle` (a duplicate of one of the object's values) names the object from now on.
  virtual void OnDuplicated(HANDLE) {}
  // `handle`, not the object's last value, is about to be closed (or is known to be closed):
  // the object makes no more calls on it.
  virtual void OnValueClosed(HANDLE) {}
#endif

 private:
  friend class HandleTable;
  // Values of the table that name this object and are not being closed (Windows: changed only
  // under the table's lock).
  std::atomic<std::size_t> open_values_{0};
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
          owner_(std::move(other.owner_)),
          closing_(other.closing_) {}
    Borrowed& operator=(Borrowed&&) = delete;
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;

    explicit operator bool() const { return object_ != nullptr; }
    KernelObject* operator->() const { return object_; }
    KernelObject* get() const { return object_; }
    // Empty because the handle is ours but being closed right now (Windows: its kernel handle
    // still exists, and a call on it must fail with ERROR_INVALID_HANDLE, not reach the kernel;
    // a value the kernel already gave to another object is not ours).
    bool closing() const { return closing_; }

   private:
    friend class HandleTable;
    Borrowed(void* slot, KernelObject* object) : slot_(slot), object_(object) {}
    Borrowed(void* slot, KernelObject* object, std::shared_ptr<void> owner)
        : slot_(slot), object_(object), owner_(std::move(owner)) {}
    static Borrowed Closing() {
      Borrowed b;
      b.closing_ = true;
      return b;
    }

    void* slot_ = nullptr;  // the table slot (Linux) or entry (Windows) whose user count this holds
    KernelObject* object_ = nullptr;
    std::shared_ptr<void> owner_;  // Windows: keeps the entry (and its object) alive
    bool closing_ = false;
  };

  HANDLE Insert(std::shared_ptr<KernelObject> object);
#ifdef _WIN32
  // `duplicate`, a new kernel handle to the same kernel object as `source` (DuplicateHandle into
  // this process), names `source`'s object from now on. False (nothing changed) when `source`
  // is not a live value of the table.
  bool InsertDuplicate(HANDLE source, HANDLE duplicate);
#else
  // A new value for the object `source` names (DuplicateHandle); nullptr when `source` is not a
  // live value of the table.
  HANDLE InsertDuplicate(HANDLE source);
#endif
  Borrowed Borrow(HANDLE handle) const;
  std::shared_ptr<KernelObject> Get(HANDLE handle) const;
  template <typename T>
  std::shared_ptr<T> GetAs(HANDLE handle) const {
    return std::dynamic_pointer_cast<T>(Get(handle));
  }
  // Removes the handle and returns its object (nullptr when not ours); *last says whether it was
  // the object's last value (then the caller runs OnClose).
  std::shared_ptr<KernelObject> Remove(HANDLE handle, bool* last);
  // Number of live handles (for leak checks).
  std::size_t size() const;

#ifdef _WIN32
  // The caller's CloseHandle, in two steps around the real close. BeginClose marks the handle as
  // closing (Borrow answers closing(), Get nullptr), waits until the calls under way on it have
  // returned and hands back the object, with *last set if no other value names it (then the
  // caller runs OnClose, else OnValueClosed); nullptr if the value is not ours, with *closing set
  // if it is ours but already being closed. EndClose forgets the value once the kernel handle is
  // closed (a new object may own the value by then: only `object`'s entry is dropped).
  std::shared_ptr<KernelObject> BeginClose(HANDLE handle, bool* closing, bool* last);
  void EndClose(HANDLE handle, const KernelObject* object);
  // Every kernel handle of `object` was closed, the last without the table knowing (NtClose):
  // the values still mapping to `object` are dropped and its close logic runs now.
  void CloseLost(const KernelObject* object);
  // `handle` was closed without the table knowing, found by a hook (the value names another
  // object now): the value stops mapping to `object` at once, and the close logic (if it was the
  // last value) runs on a thread of its own.
  void CloseReused(HANDLE handle, const KernelObject* object);
#endif

 private:
  HandleTable() = default;
  struct Impl;
  Impl& impl() const;
};

}  // namespace vdisk::api
