// Processes over Win32: the module's directory. Daemons (PERMANENT_LIFETIME hosts) are POSIX
// only for now: a Windows host would need a process that outlives its starter and a named-pipe
// control channel, which is not built.
#include <windows.h>

#include <string>

#include "platform/process.h"

namespace vdisk::platform {

Result<std::filesystem::path> ThisModuleDirectory() {
  HMODULE module = nullptr;
  if (!GetModuleHandleExW(
          GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
          reinterpret_cast<LPCWSTR>(&ThisModuleDirectory), &module)) {
    return Status(Code::kNotFound, "GetModuleHandleExW cannot name this module",
                  static_cast<int>(GetLastError()));
  }
  std::wstring name(MAX_PATH, L'\0');
  for (;;) {
    const DWORD n = GetModuleFileNameW(module, name.data(), static_cast<DWORD>(name.size()));
    if (n == 0) {
      return Status(Code::kNotFound, "GetModuleFileNameW failed", static_cast<int>(GetLastError()));
    }
    if (n < name.size()) {
      name.resize(n);
      break;
    }
    name.resize(name.size() * 2);
  }
  return std::filesystem::path(name).parent_path();
}

Result<std::string> StartDaemon(const std::filesystem::path& program,
                                const std::vector<std::string>& arguments) {
  (void)arguments;
  return Status(Code::kNotSupported,
                program.string() + ": starting an attach host is not supported on Windows");
}

Status BecomeDaemon() {
  return Status(Code::kNotSupported, "daemons are not supported on Windows");
}

Status SendReport(std::string_view text) {
  (void)text;
  return Status(Code::kNotSupported, "daemons are not supported on Windows");
}

Status BlockTerminationSignals() {
  return Status(Code::kNotSupported, "termination signals are POSIX");
}

int WaitForTerminationSignal() { return 0; }

}  // namespace vdisk::platform
