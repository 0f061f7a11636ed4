// IoQueue on a thread pool: each request is one File::ReadAt/WriteAt on a pool thread. The
// portable backend (Windows, kernels without io_uring) and the io_uring backend's route for
// files without a native handle. Also OpenIoQueue, which picks the backend.
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "platform/io_queue.h"

namespace vdisk::platform {
namespace {

// Positional I/O mostly waits in the kernel (or copies from the page cache); a few threads keep
// a device busy without competing with the caller's own threads for the CPU.
constexpr std::size_t kMaxThreads = 4;

class ThreadIoQueue final : public IoQueue {
 public:
  explicit ThreadIoQueue(std::size_t depth) : depth_(depth) {
    const std::size_t threads = std::min(depth, kMaxThreads);
    threads_.reserve(threads);
    try {
      for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
    } catch (...) {
      // A thread that cannot start (no memory, no thread): those running stop before the
      // exception leaves, or destroying them joinable would end the process.
      Stop();
      throw;
    }
  }
  ~ThreadIoQueue() override { Stop(); }
  ThreadIoQueue(const ThreadIoQueue&) = delete;
  ThreadIoQueue& operator=(const ThreadIoQueue&) = delete;

  void Read(File& file, std::uint64_t offset, std::span<std::byte> out, Callback done) override {
    Enqueue(Request{false, &file, offset, out.data(), out.size(), std::move(done)});
  }
  void Write(File& file, std::uint64_t offset, std::span<const std::byte> data,
             Callback done) override {
    // The buffer is only read from: WriteAt takes it back as const.
    Enqueue(Request{true, &file, offset, const_cast<std::byte*>(data.data()), data.size(),
                    std::move(done)});
  }
  void Drain() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return in_flight_ == 0; });
  }
  IoBackend backend() const override { return IoBackend::kThreads; }
  std::size_t depth() const override { return depth_; }

 private:
  struct Request {
    bool write = false;
    File* file = nullptr;
    std::uint64_t offset = 0;
    std::byte* data = nullptr;
    std::size_t size = 0;
    Callback done;
  };

  void Enqueue(Request request) {
    {
      std::unique_lock lock(mutex_);
      space_.wait(lock, [this] { return in_flight_ < depth_; });
      queue_.push_back(std::move(request));  // first: if it throws, nothing is counted
      ++in_flight_;
    }
    work_.notify_one();
  }

  // Waits for the requests in flight, then stops and joins the threads.
  void Stop() noexcept {
    {
      std::unique_lock lock(mutex_);
      idle_.wait(lock, [this] { return in_flight_ == 0; });
      stop_ = true;
    }
    work_.notify_all();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

  void Run() {
    for (;;) {
      Request request;
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_, and nothing left
        request = std::move(queue_.front());
        queue_.pop_front();
      }
      const Status status =
          request.write
              ? request.file->WriteAt(request.offset,
                                      std::span<const std::byte>(request.data, request.size))
              : request.file->ReadAt(request.offset, std::span(request.data, request.size));
      request.done(status);
      request.done = nullptr;  // what the callback holds goes before Drain can return
      {
        std::lock_guard lock(mutex_);
        --in_flight_;
      }
      space_.notify_one();
      idle_.notify_all();
    }
  }

  const std::size_t depth_;
  std::mutex mutex_;
  std::condition_variable work_;   // a request was queued, or stop_
  std::condition_variable space_;  // in_flight_ went down
  std::condition_variable idle_;   // in_flight_ went down (Drain, destructor)
  std::deque<Request> queue_;      // GUARDED_BY(mutex_): queued, not yet started
  std::size_t in_flight_ = 0;      // GUARDED_BY(mutex_): queued or running, callback not returned
  bool stop_ = false;              // GUARDED_BY(mutex_)
  std::vector<std::thread> threads_;
};

}  // namespace

std::string_view IoBackendName(IoBackend backend) {
  return backend == IoBackend::kUring ? "uring" : "threads";
}

Result<std::unique_ptr<IoQueue>> OpenThreadIoQueue(std::size_t depth) {
  if (depth == 0)
    return Status(Code::kInvalidParameter, "an I/O queue needs a depth of at least 1");
  return std::unique_ptr<IoQueue>(std::make_unique<ThreadIoQueue>(depth));
}

#ifdef _WIN32
Result<std::unique_ptr<IoQueue>> OpenUringIoQueue(std::size_t depth) {
  (void)depth;
  return Status(Code::kNotSupported, "io_uring is a Linux interface");
}
#endif

Result<std::unique_ptr<IoQueue>> OpenIoQueue(std::size_t depth, IoBackend backend) {
  return backend == IoBackend::kUring ? OpenUringIoQueue(depth) : OpenThreadIoQueue(depth);
}

Result<std::unique_ptr<IoQueue>> OpenIoQueue(std::size_t depth) {
  const char* forced = std::getenv("VIRTDISK_IO_BACKEND");
  const std::string choice = forced == nullptr ? "" : forced;
  if (choice == "threads") return OpenThreadIoQueue(depth);
  if (choice == "uring") {
    auto queue = OpenUringIoQueue(depth);
    if (!queue.ok()) return queue.status().WithContext("VIRTDISK_IO_BACKEND=uring");
    return queue;
  }
  if (!choice.empty()) {
    return Status(Code::kInvalidParameter,
                  "VIRTDISK_IO_BACKEND is \"" + choice + "\"; it can be uring or threads");
  }
  if (auto queue = OpenUringIoQueue(depth); queue.ok()) return queue;
  return OpenThreadIoQueue(depth);
}

}  // namespace vdisk::platform
