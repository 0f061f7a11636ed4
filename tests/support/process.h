// Other processes of a test: whether one has ended, and waiting for it to end, by its id (the
// attach host is no child of the test, so no waitpid).
#pragma once

#include <chrono>
#include <cstdint>

#include "support/wait.h"

namespace vdisk_testing {

// Whether the process `pid` has ended: gone, or (POSIX) a zombie whose threads have all exited
// (the leader of a killed multi-threaded process is a zombie while its other threads still hold
// its files).
bool ProcessEnded(std::int64_t pid);

// Waits for the process `pid` to end, on the process itself (a process handle on Windows, a
// pidfd on Linux); returns whether it ended within `timeout`.
bool WaitProcessEnded(std::int64_t pid, std::chrono::milliseconds timeout = kWaitTimeout);

}  // namespace vdisk_testing
