// IoQueue on io_uring (liburing): IORING_OP_READ/WRITE on the files' descriptors, one ring per
// queue, a reaper thread that waits for completions and runs the callbacks.
//
// Submission (any thread) takes submit_mutex_ around get_sqe + submit; completion is the reaper's
// alone, so each side of the ring has one user at a time, as liburing requires. The ring has
// depth() entries and at most depth() requests are in flight, each holding at most one SQE, so
// a submitter always finds a free SQE. Short transfers and -EINTR/-EAGAIN are resubmitted by the
// reaper for the rest of the request. Files without a native handle (fault-injection wrappers)
// go to an inner thread-pool queue (made on first use), counted against the same depth.
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "platform/io_queue.h"

#ifdef VIRTDISK_HAVE_LIBURING
#include <liburing.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#endif

namespace vdisk::platform {

#ifndef VIRTDISK_HAVE_LIBURING

Result<std::unique_ptr<IoQueue>> OpenUringIoQueue(std::size_t depth) {
  (void)depth;
  return Status(Code::kNotSupported, "built without liburing");
}

#else

namespace {

// The ring failed in a way that leaves requests the kernel may still run into buffers their
// owners would reuse: the process stops here, saying why, rather than risk that.
[[noreturn]] void RingBroken(const char* call, int rc) {
  std::fprintf(stderr, "virtdisk: %s failed: %s; the I/O queue cannot continue safely\n", call,
               std::strerror(-rc));
  std::fflush(stderr);
  std::abort();
}

class UringIoQueue final : public IoQueue {
 public:
  // REQUIRES: Init() succeeded before the queue is used.
  explicit UringIoQueue(std::size_t depth) : depth_(depth), slots_(depth) {
    free_slots_.reserve(depth);
    for (std::size_t i = depth; i > 0; --i) free_slots_.push_back(&slots_[i - 1]);
  }

  // Sets up the ring (in place: liburing's struct io_uring is not meant to be copied) and starts
  // the reaper. kNotSupported when the kernel refuses.
  Status Init() {
    // Sandboxes (seccomp profiles of container runtimes, kernel.io_uring_disabled) answer
    // ENOSYS or EPERM; old kernels with a small RLIMIT_MEMLOCK answer ENOMEM.
    const int rc = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0);
    if (rc < 0) {
      return Status(Code::kNotSupported,
                    std::string("io_uring is not available: ") + std::strerror(-rc), -rc);
    }
    ring_ready_ = true;
    io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
    const bool usable = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_READ) &&
                        io_uring_opcode_supported(probe, IORING_OP_WRITE);
    if (probe != nullptr) io_uring_free_probe(probe);
    if (!usable) {
      return Status(Code::kNotSupported, "io_uring has no IORING_OP_READ/WRITE (Linux before 5.6)");
    }
    reaper_ = std::thread([this] { Reap(); });
    return Status::Ok();
  }

  ~UringIoQueue() override {
    if (reaper_.joinable()) {
      Drain();
      stopping_.store(true);
      {
        // A request with no data wakes the reaper to see stopping_.
        std::lock_guard lock(submit_mutex_);
        io_uring_sqe* sqe = GetSqeLocked();
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, nullptr);
        SubmitLocked();
      }
      reaper_.join();
    }
    fallback_.reset();
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }
  UringIoQueue(const UringIoQueue&) = delete;
  UringIoQueue& operator=(const UringIoQueue&) = delete;

  void Read(File& file, std::uint64_t offset, std::span<std::byte> out, Callback done) override {
    Start(false, file, offset, out.data(), out.size(), std::move(done));
  }
  void Write(File& file, std::uint64_t offset, std::span<const std::byte> data,
             Callback done) override {
    // The buffer is only read from (IORING_OP_WRITE, or WriteAt through the fallback).
    Start(true, file, offset, const_cast<std::byte*>(data.data()), data.size(), std::move(done));
  }
  void Drain() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return in_flight_ == 0; });
  }
  IoBackend backend() const override { return IoBackend::kUring; }
  std::size_t depth() const override { return depth_; }

 private:
  struct Request {
    bool write = false;
    File* file = nullptr;
    int fd = -1;
    std::uint64_t offset = 0;
    std::byte* data = nullptr;
    std::size_t size = 0;
    std::size_t done = 0;  // bytes transferred so far
    Callback callback;
  };

  void Start(bool write, File& file, std::uint64_t offset, std::byte* data, std::size_t size,
             Callback done) {
    const std::optional<NativeHandle> fd = file.native_handle();
    Request* request = nullptr;
    IoQueue* fallback = nullptr;
    {
      std::unique_lock lock(mutex_);
      space_.wait(lock, [this] { return in_flight_ < depth_; });
      ++in_flight_;
      if (fd) {
        request = free_slots_.back();
        free_slots_.pop_back();
      } else {
        // Made on first use: most queues only ever see OS files.
        if (!fallback_) fallback_ = std::move(OpenThreadIoQueue(depth_)).value();
        fallback = fallback_.get();
      }
    }
    if (!fd) {
      // A wrapper: its ReadAt/WriteAt must see the request.
      auto forward = [this, callback = std::move(done)](const Status& status) mutable {
        callback(status);
        callback = nullptr;
        Release(nullptr);
      };
      if (write) {
        fallback->Write(file, offset, std::span<const std::byte>(data, size), std::move(forward));
      } else {
        fallback->Read(file, offset, std::span(data, size), std::move(forward));
      }
      return;
    }
    *request = Request{write, &file, *fd, offset, data, size, 0, std::move(done)};
    if (size == 0) {
      // Nothing to transfer; still completed on the reaper thread, through a NOP.
      std::lock_guard lock(submit_mutex_);
      io_uring_sqe* sqe = GetSqeLocked();
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, request);
      SubmitLocked();
      return;
    }
    Submit(*request);
  }

  // Queues the rest of `request` (from request.done on).
  void Submit(Request& request) {
    std::lock_guard lock(submit_mutex_);
    io_uring_sqe* sqe = GetSqeLocked();
    const auto n = static_cast<unsigned>(
        std::min<std::size_t>(request.size - request.done, std::size_t{1} << 30));
    if (request.write) {
      io_uring_prep_write(sqe, request.fd, request.data + request.done, n,
                          request.offset + request.done);
    } else {
      io_uring_prep_read(sqe, request.fd, request.data + request.done, n,
                         request.offset + request.done);
    }
    io_uring_sqe_set_data(sqe, &request);
    SubmitLocked();
  }

  // REQUIRES: submit_mutex_ held.
  io_uring_sqe* GetSqeLocked() {
    for (;;) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
      // Only if earlier SQEs were left unconsumed: push them to the kernel.
      SubmitLocked();
    }
  }

  // REQUIRES: submit_mutex_ held.
  void SubmitLocked() {
    for (;;) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0) return;
      if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
        std::this_thread::yield();
        continue;
      }
      // The SQEs are in the kernel's view of the ring already and cannot be taken back; a
      // failure other than the transient ones means a broken ring (EBADF, EFAULT, EINVAL), so
      // continuing could run a read into a buffer after its owner reused it.
      RingBroken("io_uring_submit", rc);
    }
  }

  void Reap() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR || rc == -EAGAIN) continue;
      if (rc < 0) RingBroken("io_uring_wait_cqe", rc);  // see SubmitLocked
      auto* request = static_cast<Request*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (request == nullptr) {
        if (stopping_.load()) return;
        continue;
      }
      if (request->size == 0) {
        Complete(*request, Status::Ok());
      } else if (res == -EINTR || res == -EAGAIN) {
        Submit(*request);
      } else if (res < 0) {
        const std::uint64_t at = request->offset + request->done;
        Complete(*request, OsError(-res,
                                   std::string(request->write ? "write" : "read") + " at offset " +
                                       std::to_string(at),
                                   request->file->path()));
      } else if (res == 0) {
        // A read at the end of the file (as File::ReadAt reports it), or a write that
        // made no progress (never expected of a regular file; not retried forever).
        const std::string path = request->file->path().string();
        Complete(
            *request,
            request->write
                ? Status(Code::kIoError,
                         path + ": write at offset " +
                             std::to_string(request->offset + request->done) + " made no progress",
                         EIO)
                : Status(Code::kFileCorrupt, path + ": file ends before offset " +
                                                 std::to_string(request->offset + request->size)));
      } else {
        request->done += static_cast<std::size_t>(res);
        if (request->done < request->size) {
          Submit(*request);
        } else {
          Complete(*request, Status::Ok());
        }
      }
    }
  }

  void Complete(Request& request, const Status& status) {
    Callback callback = std::move(request.callback);
    request.callback = nullptr;
    callback(status);
    callback = nullptr;
    Release(&request);
  }

  // Ends one request in flight (`slot`: its slot, or null for a forwarded one).
  void Release(Request* slot) {
    {
      std::lock_guard lock(mutex_);
      if (slot != nullptr) free_slots_.push_back(slot);
      --in_flight_;
    }
    space_.notify_one();
    idle_.notify_all();
  }

  const std::size_t depth_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::atomic<bool> stopping_{false};

  std::mutex submit_mutex_;  // the submission side of ring_

  std::mutex mutex_;
  std::condition_variable space_;      // in_flight_ went down
  std::condition_variable idle_;       // in_flight_ went down (Drain)
  std::vector<Request> slots_;         // fixed: requests point into it
  std::vector<Request*> free_slots_;   // GUARDED_BY(mutex_)
  std::unique_ptr<IoQueue> fallback_;  // GUARDED_BY(mutex_): files without a native handle
  std::size_t in_flight_ = 0;          // GUARDED_BY(mutex_): started, callback not returned
  std::thread reaper_;
};

}  // namespace

Result<std::unique_ptr<IoQueue>> OpenUringIoQueue(std::size_t depth) {
  if (depth == 0)
    return Status(Code::kInvalidParameter, "an I/O queue needs a depth of at least 1");
  auto queue = std::make_unique<UringIoQueue>(depth);
  VDISK_RETURN_IF_ERROR(queue->Init());
  return std::unique_ptr<IoQueue>(std::move(queue));
}

#endif  // VIRTDISK_HAVE_LIBURING

}  // namespace vdisk::platform
