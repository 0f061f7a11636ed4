// DiskOperation: a long operation on an open disk (mirror, merge, compact, resize), as a handle
// tracks it so that GetVirtualDiskOperationProgress, CancelIo/CancelIoEx and CloseHandle reach it.
//
// BackgroundOperation runs one function on a thread of its own. The function reports progress
// and polls for cancellation through an OperationContext; a cancelled function stops at the next
// point where every image is consistent and returns kOperationAborted.
// Thread safety: all public members may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "base/status.h"
#include "formats/image.h"

namespace vdisk {

struct OperationProgress {
  std::uint64_t current = 0;     // VIRTUAL_DISK_PROGRESS.CurrentValue
  std::uint64_t completion = 0;  // VIRTUAL_DISK_PROGRESS.CompletionValue
  bool finished = false;         // final_status is known (set before the completion runs)
  Status final_status;
};

// What the work of an operation polls and reports through (as the OperationControl that
// formats and the core's lifecycle operations take); read by Report from other threads.
class OperationContext final : public OperationControl {
 public:
  // Whether the operation was asked to stop.
  bool cancelled() const noexcept override { return cancelled_.load(std::memory_order_relaxed); }
  void SetProgress(std::uint64_t current, std::uint64_t completion) noexcept override {
    completion_.store(completion, std::memory_order_relaxed);
    current_.store(current, std::memory_order_relaxed);
  }
  void Cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  std::uint64_t current() const noexcept { return current_.load(std::memory_order_relaxed); }
  std::uint64_t completion() const noexcept { return completion_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> current_{0};
  std::atomic<std::uint64_t> completion_{0};
};

using OperationWork = std::function<Status(OperationContext&)>;
using OperationDone = std::function<void(const Status&)>;

// Runs `work` on the calling thread. An exception thrown by `work` becomes an error status
// (kNotEnoughMemory for std::bad_alloc, else kInternal).
Status RunOperationHere(const OperationWork& work, OperationContext& context);

class DiskOperation {
 public:
  virtual ~DiskOperation() = default;
  virtual OperationProgress Report() const = 0;
  // Asks the operation to stop; returns once it has ended and its completion has run.
  virtual void Cancel() = 0;
  // Blocks until the operation has ended and its completion has run.
  virtual void WaitFinished() = 0;
};

class BackgroundOperation final : public DiskOperation,
                                  public std::enable_shared_from_this<BackgroundOperation> {
 public:
  // Starts `work` on a new thread; `done` runs on that thread with its result, after Report()
  // says finished. Throws std::system_error if no thread can be made (nothing runs then).
  static std::shared_ptr<BackgroundOperation> Start(OperationWork work, OperationDone done);

  OperationProgress Report() const override;
  void Cancel() override;
  void WaitFinished() override;

 private:
  struct Private {};

 public:
  BackgroundOperation(Private, OperationWork work, OperationDone done)
      : work_(std::move(work)), done_(std::move(done)) {}

 private:
  void Run();

  OperationWork work_;
  OperationDone done_;
  OperationContext context_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool ended_ = false;     // final_status_ known
  bool finished_ = false;  // done_ has returned
  Status final_status_;
};

}  // namespace vdisk
