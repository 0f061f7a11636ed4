// SharedMutex: a reader-writer lock with std::shared_mutex's interface.
//
// On Windows it is an SRWLOCK: mingw-w64's std::shared_mutex sits on winpthreads'
// pthread_rwlock, which leaves two semaphore handles behind for every lock object it destroys
// (measured under Wine 8 with mingw-w64 10; one lock per open disk, so a process that opens and
// closes disks would grow its handle table without bound). Elsewhere it is std::shared_mutex.
//
// WriterFirstSharedMutex: the same interface, for locks that readers may hold back to back
// (the disk's range lock, core/range_lock.h). Once a writer waits, no new reader gets in, so a
// steady stream of overlapping readers cannot starve a writer. glibc's rwlock, behind
// std::shared_mutex, prefers readers by default; PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
// turns that round (pthread_rwlockattr_setkind_np(3)). The price is that it is not recursive:
// a thread that takes it shared twice deadlocks if a writer waits in between. Elsewhere it is
// SharedMutex (an SRWLOCK on Windows, which has no reader preference to turn round).
#pragma once

#include <shared_mutex>

#if defined(__GLIBC__)
#include <pthread.h>
#endif

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

#if defined(__GLIBC__)

class WriterFirstSharedMutex {
 public:
  WriterFirstSharedMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~WriterFirstSharedMutex() { pthread_rwlock_destroy(&lock_); }
  WriterFirstSharedMutex(const WriterFirstSharedMutex&) = delete;
  WriterFirstSharedMutex& operator=(const WriterFirstSharedMutex&) = delete;

  // Inline: the range lock takes one of these on every read and write.
  void lock() { pthread_rwlock_wrlock(&lock_); }
  bool try_lock() { return pthread_rwlock_trywrlock(&lock_) == 0; }
  void unlock() { pthread_rwlock_unlock(&lock_); }
  void lock_shared() { pthread_rwlock_rdlock(&lock_); }
  bool try_lock_shared() { return pthread_rwlock_tryrdlock(&lock_) == 0; }
  void unlock_shared() { pthread_rwlock_unlock(&lock_); }

 private:
  pthread_rwlock_t lock_;
};

#else

using WriterFirstSharedMutex = SharedMutex;

#endif

}  // namespace vdisk::platform
