#include "core/disk_operation.h"

#include <exception>
#include <new>
#include <thread>

namespace vdisk {

Status RunOperationHere(const OperationWork& work, OperationContext& context) {
  try {
    return work(context);
  } catch (const std::bad_alloc&) {
    return Status(Code::kNotEnoughMemory, "out of memory");
  } catch (const std::exception& e) {
    return Status(Code::kInternal, std::string("internal error: ") + e.what());
  } catch (...) {
    return Status(Code::kInternal, "internal error");
  }
}

std::shared_ptr<BackgroundOperation> BackgroundOperation::Start(OperationWork work,
                                                                OperationDone done) {
  auto operation = std::make_shared<BackgroundOperation>(Private{}, std::move(work), std::move(done));
  // The thread holds the operation until it has finished; WaitFinished synchronises with its
  // end, so nothing waits for the thread object itself.
  std::thread([self = operation] { self->Run(); }).detach();
  return operation;
}

void BackgroundOperation::Run() {
  Status status = RunOperationHere(work_, context_);
  {
    std::lock_guard lock(mutex_);
    final_status_ = status;
    ended_ = true;
  }
  try {
    if (done_) done_(status);
  } catch (...) {
    // A completion that throws has nobody to tell; the operation still ends.
  }
  {
    std::lock_guard lock(mutex_);
    finished_ = true;
  }
  changed_.notify_all();
}

OperationProgress BackgroundOperation::Report() const {
  OperationProgress progress;
  progress.completion = context_.completion();
  progress.current = context_.current();
  std::lock_guard lock(mutex_);
  progress.finished = ended_;
  progress.final_status = final_status_;
  return progress;
}

void BackgroundOperation::Cancel() {
  context_.Cancel();
  WaitFinished();
}

void BackgroundOperation::WaitFinished() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return finished_; });
}

}  // namespace vdisk
