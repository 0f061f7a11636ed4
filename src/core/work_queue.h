// WorkQueue: a fixed set of threads running submitted tasks in order of submission.
//
// Used for OVERLAPPED requests on disk handles. The destructor drains the queue and joins.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vdisk {

class WorkQueue {
 public:
  explicit WorkQueue(std::size_t threads);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Submit(std::function<void()> task);

  // The process-wide queue for asynchronous disk I/O.
  static WorkQueue& Io();

 private:
  void Run();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace vdisk
