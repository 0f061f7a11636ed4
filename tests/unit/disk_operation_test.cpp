// BackgroundOperation: progress, completion order, cancellation and errors of the thread that
// runs merges, compactions and resizes for the API.
#include "core/disk_operation.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <new>
#include <stdexcept>

namespace vdisk {
namespace {

// A one-shot signal between threads.
class Latch {
 public:
  void Set() {
    {
      std::lock_guard lock(mutex_);
      set_ = true;
    }
    changed_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return set_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool set_ = false;
};

TEST(BackgroundOperation, ReportsProgressWhileRunningAndTheResultOnceFinished) {
  Latch reported;
  Latch proceed;
  std::promise<Status> completed;
  auto operation = BackgroundOperation::Start(
      [&](OperationContext& context) {
        context.SetProgress(3, 10);
        reported.Set();
        proceed.Wait();
        context.SetProgress(10, 10);
        return Status::Ok();
      },
      [&](const Status& status) { completed.set_value(status); });
  reported.Wait();
  OperationProgress p = operation->Report();
  EXPECT_FALSE(p.finished);
  EXPECT_EQ(p.current, 3u);
  EXPECT_EQ(p.completion, 10u);
  proceed.Set();
  EXPECT_TRUE(completed.get_future().get().ok());
  operation->WaitFinished();
  p = operation->Report();
  EXPECT_TRUE(p.finished);
  EXPECT_TRUE(p.final_status.ok());
  EXPECT_EQ(p.current, 10u);
}

TEST(BackgroundOperation, ReportsFinishedBeforeTheCompletionRuns) {
  // A caller woken by the completion (the OVERLAPPED's event) must find the operation finished
  // when it asks GetVirtualDiskOperationProgress.
  std::shared_ptr<BackgroundOperation> operation;
  Latch started;
  std::promise<bool> finished_in_completion;
  operation = BackgroundOperation::Start(
      [&](OperationContext&) {
        started.Wait();
        return Status(Code::kDiskFull, "disk full");
      },
      [&](const Status&) { finished_in_completion.set_value(operation->Report().finished); });
  started.Set();
  EXPECT_TRUE(finished_in_completion.get_future().get());
  operation->WaitFinished();
  EXPECT_EQ(operation->Report().final_status.code(), Code::kDiskFull);
}

TEST(BackgroundOperation, CancelStopsTheWorkAndReturnsAfterTheCompletion) {
  Latch running;
  bool completion_ran = false;
  auto operation = BackgroundOperation::Start(
      [&](OperationContext& context) {
        running.Set();
        while (!context.cancelled()) std::this_thread::yield();
        return Status(Code::kOperationAborted, "cancelled");
      },
      [&](const Status& status) {
        EXPECT_EQ(status.code(), Code::kOperationAborted);
        completion_ran = true;
      });
  running.Wait();
  operation->Cancel();
  EXPECT_TRUE(completion_ran);  // Cancel returned after the completion, on this thread's view
  EXPECT_EQ(operation->Report().final_status.code(), Code::kOperationAborted);
}

TEST(BackgroundOperation, AnExceptionInTheWorkBecomesAnErrorNotTheEndOfTheProcess) {
  std::promise<Status> completed;
  auto operation = BackgroundOperation::Start(
      [](OperationContext&) -> Status { throw std::bad_alloc(); },
      [&](const Status& status) { completed.set_value(status); });
  EXPECT_EQ(completed.get_future().get().code(), Code::kNotEnoughMemory);
  operation->WaitFinished();

  OperationContext context;
  const Status status = RunOperationHere(
      [](OperationContext&) -> Status { throw std::runtime_error("broken invariant"); }, context);
  EXPECT_EQ(status.code(), Code::kInternal);
  EXPECT_NE(status.message().find("broken invariant"), std::string::npos);
}

}  // namespace
}  // namespace vdisk
