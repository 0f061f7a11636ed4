#include "platform/shared_mutex.h"

#include <windows.h>

namespace vdisk::platform {
namespace {

static_assert(sizeof(SRWLOCK) == sizeof(void*));

PSRWLOCK Lock(void** state) { return reinterpret_cast<PSRWLOCK>(state); }

}  // namespace

void SharedMutex::lock() { AcquireSRWLockExclusive(Lock(&state_)); }
bool SharedMutex::try_lock() { return TryAcquireSRWLockExclusive(Lock(&state_)) != 0; }
void SharedMutex::unlock() { ReleaseSRWLockExclusive(Lock(&state_)); }
void SharedMutex::lock_shared() { AcquireSRWLockShared(Lock(&state_)); }
bool SharedMutex::try_lock_shared() { return TryAcquireSRWLockShared(Lock(&state_)) != 0; }
void SharedMutex::unlock_shared() { ReleaseSRWLockShared(Lock(&state_)); }

}  // namespace vdisk::platform
