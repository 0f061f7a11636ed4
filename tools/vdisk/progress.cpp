#include "progress.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#ifndef _WIN32
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#else
#include <io.h>
#endif

#include "errors.h"
#include "options.h"

namespace vdisk_tool {
namespace {

volatile std::sig_atomic_t g_signal = 0;
#ifndef _WIN32
int g_wake_pipe[2] = {-1, -1};
#endif

extern "C" void OnSignal(int signal) {
  g_signal = signal;
#ifndef _WIN32
  if (g_wake_pipe[1] >= 0) {
    const char byte = 1;
    (void)!write(g_wake_pipe[1], &byte, 1);
  }
#endif
}

bool StderrIsTerminal() {
#ifdef _WIN32
  return _isatty(_fileno(stderr)) != 0;
#else
  return isatty(STDERR_FILENO) != 0;
#endif
}

std::string Duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

}  // namespace

ProgressBar::ProgressBar(std::string label, Mode mode)
    : label_(std::move(label)),
      terminal_(StderrIsTerminal()),
      enabled_(mode == Mode::kForced || (mode == Mode::kTerminal && terminal_)),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_ && terminal_) std::fputc('\n', stderr);
}

void ProgressBar::Update(std::uint64_t current, std::uint64_t total) {
  if (!enabled_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double fraction = static_cast<double>(current) / static_cast<double>(total);
  const int percent = static_cast<int>(fraction * 100);
  if (!terminal_) {
    const int step = percent / 10;
    if (step == last_step_) return;
    last_step_ = step;
    std::fprintf(stderr, "%s: %d%% %s of %s\n", label_.c_str(), percent,
                 HumanBytes(current).c_str(), HumanBytes(total).c_str());
    std::fflush(stderr);
    return;
  }
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100) && current != total) return;
  last_draw_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(current) / seconds : 0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<std::size_t>(filled), '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  const std::string eta =
      rate > 0 && current < total
          ? "ETA " + Duration(static_cast<double>(total - current) / rate)
          : "";
  std::fprintf(stderr, "\r%s %3d%% [%s] %s/%s %s/s %s\033[K", label_.c_str(), percent, bar.c_str(),
               HumanBytes(current).c_str(), HumanBytes(total).c_str(),
               HumanBytes(static_cast<std::uint64_t>(rate)).c_str(), eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish(bool complete) {
  if (!enabled_) return;
  if (terminal_ && drawn_) {
    std::fputc('\n', stderr);
    drawn_ = false;
  } else if (!terminal_ && complete && last_step_ != 10) {
    std::fprintf(stderr, "%s: 100%%\n", label_.c_str());
  }
  std::fflush(stderr);
}

void InstallInterruptHandlers() {
#ifndef _WIN32
  if (g_wake_pipe[0] < 0 && pipe(g_wake_pipe) == 0) {
    // Non-blocking both ends: the handler never blocks, and draining never waits.
    for (int fd : g_wake_pipe) (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
#else
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGBREAK, OnSignal);
#endif
}

int InterruptSignal() { return static_cast<int>(g_signal); }

bool WaitForInterrupt(std::chrono::milliseconds timeout) {
  if (g_signal != 0) return true;
#ifndef _WIN32
  if (g_wake_pipe[0] >= 0) {
    pollfd wake{g_wake_pipe[0], POLLIN, 0};
    (void)poll(&wake, 1, static_cast<int>(timeout.count()));
    return g_signal != 0;
  }
#endif
  std::this_thread::sleep_for(timeout);
  return g_signal != 0;
}

OperationOutcome FollowOperation(HANDLE disk, OVERLAPPED* overlapped, ProgressBar* bar,
                                 const std::string& file,
                                 const std::function<bool(const VIRTUAL_DISK_PROGRESS&)>& stop) {
  OperationOutcome outcome;
  bool cancelled = false;
  for (;;) {
    Check(GetVirtualDiskOperationProgress(disk, overlapped, &outcome.progress), file,
          "GetVirtualDiskOperationProgress");
    const auto& progress = outcome.progress;
    if (bar != nullptr) bar->Update(progress.CurrentValue, progress.CompletionValue);
    outcome.status = progress.OperationStatus;
    if (progress.OperationStatus != ERROR_IO_PENDING) return outcome;
    if (!cancelled && stop && stop(progress)) return outcome;
    if (!cancelled && InterruptSignal() != 0) {
      outcome.signal = InterruptSignal();
      cancelled = true;
      if (!CancelIoEx(disk, overlapped)) Fail(GetLastError(), file, "cancelling (CancelIoEx)");
    }
    WaitForInterrupt(std::chrono::milliseconds(cancelled ? 5 : 50));
  }
}

}  // namespace vdisk_tool
