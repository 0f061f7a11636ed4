// Long operations: the progress bar, Ctrl-C / SIGTERM, and waiting for an asynchronous VirtDisk
// operation (mirror, resize, compact, ...) through GetVirtualDiskOperationProgress.
#pragma once

#include "platform_api.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace vdisk_tool {

// A bar on a terminal ("mirror  42% [=====>    ] 420 MiB/1 GiB 210 MiB/s ETA 3s"), redrawn at
// most ten times a second. Off a terminal it is silent, unless forced (-p): then one line per
// 10 % ("mirror: 40% 420 MiB of 1 GiB"), which a script can follow.
class ProgressBar {
 public:
  enum class Mode {
    kOff,       // never
    kTerminal,  // a bar when standard error is a terminal, else silent
    kForced,    // -p: a bar on a terminal, else a line per 10 %
  };
  ProgressBar(std::string label, Mode mode);
  ~ProgressBar();
  void Update(std::uint64_t current, std::uint64_t total);
  // Ends the bar's line (a final 100 % when `complete`).
  void Finish(bool complete);

 private:
  std::string label_;
  bool terminal_ = false;
  bool enabled_ = false;
  bool drawn_ = false;
  int last_step_ = -1;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// SIGINT and SIGTERM (Ctrl-C, Ctrl-Break on Windows) set a flag instead of killing the process,
// so that a command can cancel through the API and clean up.
void InstallInterruptHandlers();
int InterruptSignal();  // 0, or the signal that arrived
// Sleeps up to `timeout`, less when a signal arrives. True when one has.
bool WaitForInterrupt(std::chrono::milliseconds timeout);

struct OperationOutcome {
  DWORD status = ERROR_SUCCESS;   // the operation's final status
  int signal = 0;                 // nonzero: interrupted by this signal and cancelled
  VIRTUAL_DISK_PROGRESS progress{};
};

// Polls GetVirtualDiskOperationProgress on `overlapped` (the operation already started on
// `disk`) and draws `bar` until `stop(progress)` says so or the operation ends. On a signal it
// cancels the operation (CancelIoEx) and waits for it to end. Throws a Failure naming `file` if
// the polling itself fails.
OperationOutcome FollowOperation(HANDLE disk, OVERLAPPED* overlapped, ProgressBar* bar,
                                 const std::string& file,
                                 const std::function<bool(const VIRTUAL_DISK_PROGRESS&)>& stop = {});

}  // namespace vdisk_tool
