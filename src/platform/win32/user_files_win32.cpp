// Per-user directories and files, and process liveness, on Windows. The registry lives under
// %LOCALAPPDATA%, which the user's profile ACL keeps private already.
#include <windows.h>

#include <fstream>
#include <system_error>

#include "platform/file.h"
#include "platform/user_files.h"

namespace vdisk::platform {
namespace fs = std::filesystem;

std::string CurrentUserId() { return {}; }

Status EnsureUserDirectory(const fs::path& path, DirectoryPolicy policy,
                           std::string_view remedy) {
  (void)policy;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) {
    return Status(Code::kIoError,
                  "creating " + path.string() + ": " + ec.message() + " (" + std::string(remedy) +
                      ")",
                  ec.value());
  }
  return Status::Ok();
}

Status CreatePrivateDirectory(const fs::path& path) {
  if (!CreateDirectoryW(path.c_str(), nullptr)) {
    return OsError(static_cast<int>(GetLastError()), "create directory", path);
  }
  return Status::Ok();
}

Status WritePrivateFile(const fs::path& path, std::string_view text) {
  HANDLE file = CreateFileW(path.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW,
                            FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (file == INVALID_HANDLE_VALUE) return OsError(static_cast<int>(GetLastError()), "create", path);
  DWORD written = 0;
  const bool ok = WriteFile(file, text.data(), static_cast<DWORD>(text.size()), &written, nullptr) &&
                  written == text.size();
  const DWORD err = ok ? 0 : GetLastError();
  CloseHandle(file);
  if (!ok) {
    DeleteFileW(path.c_str());
    return OsError(static_cast<int>(err), "write", path);
  }
  return Status::Ok();
}

std::int64_t CurrentProcessId() { return static_cast<std::int64_t>(GetCurrentProcessId()); }

namespace {
std::uint64_t CreationTime(HANDLE process) {
  FILETIME created, exited, kernel, user;
  if (!GetProcessTimes(process, &created, &exited, &kernel, &user)) return 0;
  return (static_cast<std::uint64_t>(created.dwHighDateTime) << 32) | created.dwLowDateTime;
}
}  // namespace

std::uint64_t ProcessStartTime(std::int64_t pid) {
  if (pid == CurrentProcessId()) return CreationTime(GetCurrentProcess());
  HANDLE process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (process == nullptr) return 0;
  const std::uint64_t time = CreationTime(process);
  CloseHandle(process);
  return time;
}

bool ProcessAlive(std::int64_t pid, std::uint64_t start_time) {
  HANDLE process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (process == nullptr) return GetLastError() == ERROR_ACCESS_DENIED;
  DWORD code = 0;
  bool alive = GetExitCodeProcess(process, &code) && code == STILL_ACTIVE;
  if (alive && start_time != 0) {
    const std::uint64_t now = CreationTime(process);
    if (now != 0) alive = now == start_time;
  }
  CloseHandle(process);
  return alive;
}

}  // namespace vdisk::platform
