#include "support/process.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#endif

namespace vdisk_testing {

#ifdef _WIN32

namespace {
// WaitForSingleObject on the process for `timeout`; true if it has ended (or is gone).
bool WaitOnProcess(std::int64_t pid, DWORD timeout) {
  HANDLE process = OpenProcess(SYNCHRONIZE, FALSE, static_cast<DWORD>(pid));
  if (process == nullptr) return true;
  const bool ended = WaitForSingleObject(process, timeout) == WAIT_OBJECT_0;
  CloseHandle(process);
  return ended;
}
}  // namespace

bool ProcessEnded(std::int64_t pid) { return WaitOnProcess(pid, 0); }

bool WaitProcessEnded(std::int64_t pid, std::chrono::milliseconds timeout) {
  return WaitOnProcess(pid, static_cast<DWORD>(timeout.count()));
}

#else

bool ProcessEnded(std::int64_t pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  const std::filesystem::path dir = "/proc/" + std::to_string(pid);
  std::ifstream stat(dir / "stat");
  std::string text;
  std::getline(stat, text);
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'Z')
    return false;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir / "task", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().filename() != std::to_string(pid)) return false;
  }
  return true;
}

bool WaitProcessEnded(std::int64_t pid, std::chrono::milliseconds timeout) {
#ifdef SYS_pidfd_open
  // A pidfd polls readable once the process has exited with all its threads (pidfd_open(2)).
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd >= 0) {
    pollfd entry{fd, POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int ready = 0;
    do {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      ready = ::poll(&entry, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    } while (ready < 0 && errno == EINTR);
    ::close(fd);
    if (ready > 0) return WaitUntil([&] { return ProcessEnded(pid); }, timeout);
    if (ready == 0) return ProcessEnded(pid);
  } else if (errno == ESRCH) {
    return true;
  }
#endif
  // Without pidfds (a kernel before 5.3): the process's state, polled.
  return WaitUntil([&] { return ProcessEnded(pid); }, timeout);
}

#endif

}  // namespace vdisk_testing
