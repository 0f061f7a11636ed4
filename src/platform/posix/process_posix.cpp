// Processes over POSIX: dladdr for the module's directory, posix_spawn and a report pipe for
// daemons (see process.h for the protocol).
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "platform/file.h"
#include "platform/process.h"

extern char** environ;

namespace vdisk::platform {
namespace {

// Closes a descriptor at scope exit.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() { Close(); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Fills `out` with the signals BlockTerminationSignals blocks.
void TerminationSignals(sigset_t* out) {
  sigemptyset(out);
  sigaddset(out, SIGTERM);
  sigaddset(out, SIGINT);
  sigaddset(out, SIGHUP);
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

Result<std::filesystem::path> ThisModuleDirectory() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&ThisModuleDirectory), &info) == 0 ||
      info.dli_fname == nullptr) {
    return Status(Code::kNotFound, "dladdr cannot name the module this code is linked into");
  }
  std::error_code ec;
  std::filesystem::path module = std::filesystem::weakly_canonical(info.dli_fname, ec);
  if (ec) module = std::filesystem::absolute(info.dli_fname, ec);
  return module.parent_path();
}

Result<std::string> StartDaemon(const std::filesystem::path& program,
                                const std::vector<std::string>& arguments) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return OsError(errno, "pipe", program);
  Descriptor read_end(ends[0]);
  // The write end is moved above the standard descriptors (and kReportDescriptor) first: the
  // child's file actions open /dev/null on 0..2 and dup onto 3, which must not clobber it.
  Descriptor write_end(::fcntl(ends[1], F_DUPFD_CLOEXEC, 10));
  ::close(ends[1]);
  if (write_end.get() < 0) return OsError(errno, "fcntl F_DUPFD", program);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (int rc = ::posix_spawn_file_actions_init(&actions); rc != 0) {
    return OsError(rc, "posix_spawn_file_actions_init", program);
  }
  if (int rc = ::posix_spawnattr_init(&attributes); rc != 0) {
    ::posix_spawn_file_actions_destroy(&actions);
    return OsError(rc, "posix_spawnattr_init", program);
  }
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  // dup2 onto another number clears close-on-exec on the copy.
  ::posix_spawn_file_actions_adddup2(&actions, write_end.get(), kReportDescriptor);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Descriptors the caller opened without close-on-exec stay behind too.
  ::posix_spawn_file_actions_addclosefrom_np(&actions, kReportDescriptor + 1);
#endif
  // A caller's blocked or ignored signals must not be the daemon's (ignored dispositions
  // survive exec): an empty mask and default actions for everything.
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attributes, &none);
  ::posix_spawnattr_setsigdefault(&attributes, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
#ifdef POSIX_SPAWN_SETSID
  flags |= POSIX_SPAWN_SETSID;
#endif
  ::posix_spawnattr_setflags(&attributes, flags);

  std::vector<std::string> argv_text;
  argv_text.push_back(program.string());
  argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& text : argv_text) argv.push_back(text.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attributes, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attributes);
  write_end.Close();  // from now on only the program holds a write end
  if (rc != 0) return OsError(rc, "starting", program);

  std::string report;
  char chunk[512];
  for (;;) {
    const ssize_t n = ::read(read_end.get(), chunk, sizeof chunk);
    if (n > 0) {
      report.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  // The started process exits as soon as the daemon has forked off (or has died).
  int status = 0;
  pid_t reaped = 0;
  do {
    reaped = ::waitpid(pid, &status, 0);
  } while (reaped < 0 && errno == EINTR);
  if (report.empty()) {
    return Status(Code::kIoError,
                  program.string() + " ended without reporting (" +
                      (reaped == pid ? DescribeExit(status) : std::string("not reaped")) + ")");
  }
  return report;
}

Status BecomeDaemon() {
  const pid_t child = ::fork();
  if (child < 0) return OsError(errno, "fork", "");
  if (child > 0) ::_exit(0);
  // The child of the started process leads no process group, so setsid succeeds, and it can
  // never acquire a controlling terminal again.
  (void)::setsid();
  if (::chdir("/") != 0) return OsError(errno, "chdir", "/");
  return Status::Ok();
}

Status SendReport(std::string_view text) {
  static std::atomic<bool> sent{false};
  if (sent.exchange(true)) return Status::Ok();
  std::size_t done = 0;
  Status status;
  while (done < text.size()) {
    const ssize_t n = ::write(kReportDescriptor, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      status = OsError(errno, "writing the report", "");
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(kReportDescriptor);
  return status;
}

Status BlockTerminationSignals() {
  sigset_t set;
  TerminationSignals(&set);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return OsError(rc, "pthread_sigmask", "");
  }
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, nullptr);
  return Status::Ok();
}

int WaitForTerminationSignal() {
  sigset_t set;
  TerminationSignals(&set);
  int signal_number = 0;
  while (::sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

}  // namespace vdisk::platform
