// SharedMutex: a reader-writer lock with std::shared_mutex's interface.
//
// On Windows it is an SRWLOCK: mingw-w64's std::shared_mutex sits on winpthreads'
// pthread_rwlock, which leaves two semaphore handles behind for every lock object it destroys
// (measured under Wine 8 with mingw-w64 10; one lock per open disk, so a process that opens and
// closes disks would grow its handle table without bound). Elsewhere it is std::shared_mutex.
#pragma once

#include <shared_mutex>

namespace vdisk::platform {

#ifdef _WIN32

class SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  void* state_ = nullptr;  // the SRWLOCK (one pointer; SRWLOCK_INIT is all zero)
};

#else

using SharedMutex = std::shared_mutex;

#endif

}  // namespace vdisk::platform
