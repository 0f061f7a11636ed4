// Work to run when a thread exits (Windows builds only).
//
// Windows cancels the I/O a thread issued when the thread exits, unless the handle is bound to
// an I/O completion port. A disk operation's read is issued on the caller's thread
// (disk_pipe.h), so the kernel cancels that read itself; the work behind it (a mirror's copy) is
// stopped from here (DiskHandle::WatchIssuingThread).
#pragma once

#include <functional>
#include <memory>

namespace vdisk::api::win32 {

// Runs `work` on the calling thread when it exits (ExitThread, or a return from its start
// routine), from a fiber-local-storage callback, before the kernel cancels the thread's I/O.
// `work` must not wait for another thread to start (under Wine 8 a new thread's start waits for
// the lock the callbacks run under). Not at process exit (the other threads are gone by then), and not
// once `token` has expired: entries whose token expired are dropped as new ones come in, so a
// long-lived thread that starts many operations keeps a short list.
void AtThreadExit(std::function<void()> work, std::weak_ptr<const void> token);

}  // namespace vdisk::api::win32
