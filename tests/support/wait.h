// Waiting for a condition that no event announces (a progress counter, a file another process
// creates, a handle count coming back down): the condition is polled until it holds or a
// deadline passes. Where an event exists (a Win32 event, a condition variable, a pipe, a pidfd),
// tests wait on it instead.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace vdisk_testing {

// How long WaitUntil waits by default: only a broken build gets near it.
inline constexpr std::chrono::milliseconds kWaitTimeout = std::chrono::seconds(60);

// Polls `condition` until it returns true (then returns true) or `timeout` has passed (then
// returns the condition's last value). The pauses between polls start at a yield and grow to a
// millisecond, so that a condition that turns true quickly is seen at once.
template <typename Condition>
bool WaitUntil(Condition condition, std::chrono::milliseconds timeout = kWaitTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::microseconds pause{0};
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    if (pause.count() == 0) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);  // the one pause of a poll: see the header comment
    }
    pause = std::min(pause + std::chrono::microseconds(50), std::chrono::microseconds(1000));
  }
}

}  // namespace vdisk_testing
