// IoQueue: positional reads and writes on Files, many in flight at once, each completed by a
// callback. The mirror's copy engine reads its source through one.
//
// Two backends behind one interface:
//  - io_uring (Linux, src/platform/posix/io_queue_uring.cpp): requests on files with a native
//    handle go to the kernel as IORING_OP_READ/WRITE; a queue thread reaps completions. Requests
//    on files without one (fault-injection wrappers, memory files) go to an inner thread pool,
//    so wrappers see every byte through their ReadAt/WriteAt.
//  - a thread pool (src/platform/io_queue_threads.cpp, also the Windows backend): worker threads
//    call File::ReadAt/WriteAt.
// OpenIoQueue picks io_uring where the kernel lets it set up a ring (seccomp filters and
// container runtimes often answer ENOSYS or EPERM) and the thread pool otherwise;
// VIRTDISK_IO_BACKEND=uring|threads forces one (for tests).
//
// Semantics are those of File: a read returns exactly the bytes asked for or fails (past the end
// of the file: kFileCorrupt, "file ends before offset ..."); a write writes all of them. Short
// transfers are continued, EINTR/EAGAIN retried; errors carry the OS code and the file's path.
//
// Thread safety: Read/Write/Drain may be called from any number of threads. Callbacks run on a
// queue thread, never inside Read/Write; they must not block for long (they hold up other
// completions) and must not call into the queue that runs them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "base/status.h"
#include "platform/file.h"

namespace vdisk::platform {

enum class IoBackend { kUring, kThreads };

std::string_view IoBackendName(IoBackend backend);

class IoQueue {
 public:
  // Called once per request with its outcome.
  using Callback = std::function<void(const Status&)>;

  // Waits for every request in flight to complete (their callbacks run) before it returns.
  virtual ~IoQueue() = default;

  // Queues a read of out.size() bytes at `offset`. Blocks while depth() requests are in flight.
  // REQUIRES: `file` and `out` stay valid until `done` has run.
  virtual void Read(File& file, std::uint64_t offset, std::span<std::byte> out, Callback done) = 0;
  // Queues a write of `data` at `offset`. Blocks while depth() requests are in flight.
  // REQUIRES: `file` and `data` stay valid until `done` has run.
  virtual void Write(File& file, std::uint64_t offset, std::span<const std::byte> data,
                     Callback done) = 0;
  // Returns when no request is in flight: every request queued before the call has completed
  // and its callback has returned (requests that other threads keep queueing can delay it).
  virtual void Drain() = 0;

  virtual IoBackend backend() const = 0;
  // Requests in flight at most.
  virtual std::size_t depth() const = 0;
};

// A queue of `depth` requests in flight: io_uring if available, else threads, unless
// VIRTDISK_IO_BACKEND says which. Forcing "uring" where it is unavailable fails with
// kNotSupported; an unknown value fails with kInvalidParameter. REQUIRES: depth > 0.
Result<std::unique_ptr<IoQueue>> OpenIoQueue(std::size_t depth);
// A queue with the given backend; kNotSupported when that backend cannot run here.
Result<std::unique_ptr<IoQueue>> OpenIoQueue(std::size_t depth, IoBackend backend);

// The backends (OpenIoQueue chooses between them).
Result<std::unique_ptr<IoQueue>> OpenThreadIoQueue(std::size_t depth);
// kNotSupported when the build has no liburing or the kernel refuses a ring (ENOSYS, EPERM,
// ENOMEM for locked memory) or lacks IORING_OP_READ/WRITE (before Linux 5.6).
Result<std::unique_ptr<IoQueue>> OpenUringIoQueue(std::size_t depth);

}  // namespace vdisk::platform
