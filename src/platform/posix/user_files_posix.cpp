// Per-user directories and files, and process liveness, on POSIX.
//
// The private directory follows what tmux and systemd do for theirs in shared places: mkdir with
// mode 0700, then lstat (a symbolic link planted there is refused, never followed), and accept
// only a directory that this user owns with no permission for anyone else. A directory that
// another user created first, or that has wider permissions, is refused rather than changed.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "platform/file.h"
#include "platform/user_files.h"

namespace vdisk::platform {
namespace fs = std::filesystem;

namespace {

std::string Octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

Status Refuse(const fs::path& path, const std::string& why, std::string_view remedy) {
  return Status(Code::kAccessDenied,
                path.string() + ": " + why + "; refusing to use it (" + std::string(remedy) + ")");
}

// Field 22 of /proc/<pid>/stat (starttime, in clock ticks since boot); 0 if unknown.
std::uint64_t StartTimeOf(std::int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return 0;
  // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

// The state letter of /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat), '?' if unknown.
char StateOf(const fs::path& stat_file) {
  std::ifstream in(stat_file);
  std::string text;
  if (!in || !std::getline(in, text)) return '?';
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() ? text[close + 2] : '?';
}

// Whether a process that still has a pid has ended: a zombie (killed, not yet reaped) serves
// nothing, but only once its last thread is gone. The leader of a killed multi-threaded process
// turns zombie while its other threads are still exiting, and they hold its descriptors (an
// image's lock, a socket) until then.
bool Exited(std::int64_t pid) {
  const fs::path dir = "/proc/" + std::to_string(pid);
  const char state = StateOf(dir / "stat");
  if (state != 'Z' && state != 'X') return false;
  std::error_code ec;
  for (fs::directory_iterator it(dir / "task", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() != std::to_string(pid)) return false;
  }
  return true;
}

}  // namespace

std::string CurrentUserId() { return std::to_string(::getuid()); }

Status EnsureUserDirectory(const fs::path& path, DirectoryPolicy policy,
                           std::string_view remedy) {
  if (policy == DirectoryPolicy::kChosen && path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);  // a failure shows in the mkdir below
  }
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return OsError(errno, "mkdir", path);
  }
  struct stat st {};
  const int rc = policy == DirectoryPolicy::kPrivate ? ::lstat(path.c_str(), &st)
                                                     : ::stat(path.c_str(), &st);
  if (rc != 0) return OsError(errno, "stat", path);
  if (S_ISLNK(st.st_mode)) return Refuse(path, "is a symbolic link, not a directory", remedy);
  if (!S_ISDIR(st.st_mode)) return Refuse(path, "is not a directory", remedy);
  if (st.st_uid != ::getuid()) {
    return Refuse(path,
                  "belongs to user " + std::to_string(st.st_uid) + ", not to this user (" +
                      std::to_string(::getuid()) + ")",
                  remedy);
  }
  if (policy == DirectoryPolicy::kPrivate && (st.st_mode & 07777) != 0700) {
    return Refuse(path, "has mode " + Octal(st.st_mode) + ", not 0700", remedy);
  }
  if (policy == DirectoryPolicy::kChosen && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Refuse(path, "has mode " + Octal(st.st_mode) + ": other users can write to it",
                  remedy);
  }
  return Status::Ok();
}

Status CreatePrivateDirectory(const fs::path& path) {
  if (::mkdir(path.c_str(), 0700) != 0) return OsError(errno, "mkdir", path);
  // mkdir applies the umask, which can only narrow 0700; chmod makes it exactly 0700.
  if (::chmod(path.c_str(), 0700) != 0) {
    const int err = errno;
    ::rmdir(path.c_str());
    return OsError(err, "chmod 0700", path);
  }
  return Status::Ok();
}

Status WritePrivateFile(const fs::path& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return OsError(errno, "create", path);
  Status status;
  // The umask can only narrow the mode; fchmod makes it exactly 0600 all the same.
  if (::fchmod(fd, 0600) != 0) status = OsError(errno, "fchmod 0600", path);
  std::size_t done = 0;
  while (status.ok() && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = OsError(errno, "write", path);
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 && status.ok()) status = OsError(errno, "close", path);
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

std::int64_t CurrentProcessId() { return static_cast<std::int64_t>(::getpid()); }

std::uint64_t ProcessStartTime(std::int64_t pid) { return StartTimeOf(pid); }

bool ProcessAlive(std::int64_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  if (start_time == 0) return true;
  if (Exited(pid)) return false;
  const std::uint64_t now = StartTimeOf(pid);
  return now == 0 || now == start_time;
}

}  // namespace vdisk::platform
