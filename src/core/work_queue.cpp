#include "core/work_queue.h"

#include <algorithm>

namespace vdisk {

WorkQueue::WorkQueue(std::size_t threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkQueue::Submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  ready_.notify_one();
}

void WorkQueue::Run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task();
    } catch (...) {
      // A task completes its own request, errors included (DiskHandle::Transfer); one that
      // throws anyway must not end the process or this worker.
    }
  }
}

WorkQueue& WorkQueue::Io() {
  // Leaked on purpose: it must outlive every handle, including ones closed from atexit handlers.
  static WorkQueue* queue = new WorkQueue(std::max(4u, std::thread::hardware_concurrency()));
  return *queue;
}

}  // namespace vdisk
