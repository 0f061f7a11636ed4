#include "host_shell.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/wait.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "support/wait.h"

namespace vdisk_unit {
namespace {

std::string SingleQuoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

#ifdef _WIN32

// Wine's own exports from kernel32 for translating between its drive paths and Unix paths.
using UnixNameFunction = char*(__cdecl*)(const wchar_t*);
using DosNameFunction = wchar_t*(__cdecl*)(const char*);

template <typename Function>
Function WineExport(const char* name) {
  return reinterpret_cast<Function>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"kernel32.dll"), name)));
}

std::string UnixName(const std::filesystem::path& path) {
  static const auto convert = WineExport<UnixNameFunction>("wine_get_unix_file_name");
  if (convert == nullptr) return path.string();
  char* name = convert(std::filesystem::absolute(path).wstring().c_str());
  if (name == nullptr) return path.string();
  std::string out(name);
  HeapFree(GetProcessHeap(), 0, name);
  return out;
}

// The spool directory served by tests/host_shell.sh, as a Windows path; empty if none.
const std::filesystem::path& Spool() {
  static const std::filesystem::path spool = []() -> std::filesystem::path {
    const char* dir = std::getenv("VIRTDISK_HOST_SHELL");
    const auto convert = WineExport<DosNameFunction>("wine_get_dos_file_name");
    if (dir == nullptr || *dir == 0 || convert == nullptr) return {};
    wchar_t* name = convert(dir);
    if (name == nullptr) return {};
    std::filesystem::path out(name);
    HeapFree(GetProcessHeap(), 0, name);
    std::error_code ec;
    return std::filesystem::is_directory(out, ec) ? out : std::filesystem::path();
  }();
  return spool;
}

std::string ReadAll(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

#endif

}  // namespace

std::string ShellQuote(const std::filesystem::path& path) {
#ifdef _WIN32
  return SingleQuoted(UnixName(path));
#else
  return SingleQuoted(path.string());
#endif
}

#ifdef _WIN32

bool HostShellAvailable() { return !Spool().empty(); }

int HostShell(const std::string& command, std::string* output) {
  if (Spool().empty()) return -1;
  static std::atomic<unsigned> counter{0};
  const std::string id = std::to_string(GetCurrentProcessId()) + "-" +
                         std::to_string(counter++) + "-" + std::to_string(std::random_device()());
  const auto request = Spool() / (id + ".sh");
  const auto out = Spool() / (id + ".out");
  const auto rc = Spool() / (id + ".rc");
  {
    std::ofstream script(Spool() / (id + ".tmp"), std::ios::binary);
    script << command << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(Spool() / (id + ".tmp"), request, ec);
  if (ec) return -1;
  // The server's answer is the .rc file it renames into the spool: the wait is on a change
  // notification of the directory (Wine serves it with inotify), with a check of the file after
  // each change and, in case a notification is lost, every 100 ms. Bounded only so that a stopped
  // server fails the test instead of hanging it.
  HANDLE change = FindFirstChangeNotificationW(Spool().wstring().c_str(), FALSE,
                                               FILE_NOTIFY_CHANGE_FILE_NAME);
  const bool answered = vdisk_testing::WaitUntil(
      [&] {
        if (std::filesystem::exists(rc, ec)) return true;
        if (change != INVALID_HANDLE_VALUE && WaitForSingleObject(change, 100) == WAIT_OBJECT_0) {
          FindNextChangeNotification(change);
        }
        return std::filesystem::exists(rc, ec);
      },
      std::chrono::minutes(10));
  if (change != INVALID_HANDLE_VALUE) FindCloseChangeNotification(change);
  if (!answered) return -1;
  const int status = std::atoi(ReadAll(rc).c_str());
  if (output != nullptr) *output = ReadAll(out);
  std::filesystem::remove(rc, ec);
  std::filesystem::remove(out, ec);
  return status;
}

#else

bool HostShellAvailable() { return true; }

int HostShell(const std::string& command, std::string* output) {
  FILE* pipe = ::popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) text.append(buffer, n);
  const int status = ::pclose(pipe);
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif

bool OraclesRequired() {
  const char* value = std::getenv("VIRTDISK_REQUIRE_ORACLES");
  return value != nullptr && std::string(value) == "1";
}

std::string HostTool(const std::string& name) {
  if (!HostShellAvailable()) return {};
  std::string found;
  const std::string quoted = SingleQuoted(name);
  if (HostShell("command -v " + quoted + " || { test -x /usr/sbin/" + name +
                    " && echo /usr/sbin/" + name + "; } || { test -x /sbin/" + name +
                    " && echo /sbin/" + name + "; }",
                &found) != 0)
    return {};
  while (!found.empty() && (found.back() == '\n' || found.back() == '\r')) found.pop_back();
  return found;
}

}  // namespace vdisk_unit
