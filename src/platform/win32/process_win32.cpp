// Processes over Win32: the module's directory, and the daemon protocol of process.h.
//
// Windows has no fork, so the two halves divide the work differently than on POSIX:
//  - StartDaemon creates the program directly as a process of its own: DETACHED_PROCESS (no
//    console), CREATE_NEW_PROCESS_GROUP (no Ctrl+C of the starter's console reaches it),
//    CREATE_BREAKAWAY_FROM_JOB where the starter's job allows it (so that closing the starter's
//    job does not end it). The write end of the report pipe is the only handle it inherits
//    (PROC_THREAD_ATTRIBUTE_HANDLE_LIST, with NUL as stdin, stdout and stderr); its value is
//    passed in the environment variable kReportHandleVariable, added to the starter's own
//    environment. Arguments travel as UTF-16 on the command line, quoted as CommandLineToArgvW
//    splits them.
//  - BecomeDaemon has nothing left to do.
//  - SendReport writes to the handle named by kReportHandleVariable and closes it.
//  - There are no termination signals: a detached process gets no console control events, so
//    WaitForTerminationSignal waits until a console control event arrives (close, logoff,
//    shutdown) where there is a console, and otherwise for ever; a host ends by a detach request.
#include <windows.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "platform/file.h"
#include "platform/process.h"

namespace vdisk::platform {
namespace {

constexpr const wchar_t* kReportHandleVariable = L"VIRTDISK_REPORT_HANDLE";

class OwnedHandle {
 public:
  OwnedHandle() = default;
  explicit OwnedHandle(HANDLE h) : h_(h) {}
  ~OwnedHandle() { Close(); }
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;
  HANDLE get() const { return h_; }
  HANDLE* out() { return &h_; }
  void Close() {
    if (h_ != nullptr && h_ != INVALID_HANDLE_VALUE) CloseHandle(h_);
    h_ = nullptr;
  }

 private:
  HANDLE h_ = nullptr;
};

// One argument quoted so that CommandLineToArgvW (and the C runtime) give it back unchanged:
// backslashes are literal except before a quote, where they are doubled.
void AppendQuoted(std::wstring& line, const std::wstring& argument) {
  if (!line.empty()) line.push_back(L' ');
  if (!argument.empty() && argument.find_first_of(L" \t\n\v\"") == std::wstring::npos) {
    line += argument;
    return;
  }
  line.push_back(L'"');
  std::size_t backslashes = 0;
  for (const wchar_t c : argument) {
    if (c == L'\\') {
      ++backslashes;
      continue;
    }
    if (c == L'"') backslashes = backslashes * 2 + 1;
    line.append(backslashes, L'\\');
    backslashes = 0;
    line.push_back(c);
  }
  line.append(backslashes * 2, L'\\');
  line.push_back(L'"');
}

std::wstring Widen(const std::string& utf8) {
  return std::filesystem::path(std::u8string(utf8.begin(), utf8.end())).wstring();
}

// The starter's environment with kReportHandleVariable=<handle> added (any old value dropped).
std::vector<wchar_t> EnvironmentWith(HANDLE report) {
  std::vector<wchar_t> block;
  const std::wstring prefix = std::wstring(kReportHandleVariable) + L"=";
  if (wchar_t* strings = GetEnvironmentStringsW(); strings != nullptr) {
    for (const wchar_t* p = strings; *p != 0;) {
      const std::wstring entry(p);
      p += entry.size() + 1;
      if (entry.compare(0, prefix.size(), prefix) == 0) continue;
      block.insert(block.end(), entry.begin(), entry.end());
      block.push_back(0);
    }
    FreeEnvironmentStringsW(strings);
  }
  const std::wstring entry =
      prefix + std::to_wstring(static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(report)));
  block.insert(block.end(), entry.begin(), entry.end());
  block.push_back(0);
  block.push_back(0);
  return block;
}

HANDLE g_termination_event = nullptr;

BOOL WINAPI OnConsoleControl(DWORD event) {
  if (event == CTRL_CLOSE_EVENT || event == CTRL_LOGOFF_EVENT || event == CTRL_SHUTDOWN_EVENT ||
      event == CTRL_BREAK_EVENT || event == CTRL_C_EVENT) {
    SetEvent(g_termination_event);
    return TRUE;
  }
  return FALSE;
}

}  // namespace

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
  SECURITY_ATTRIBUTES inheritable{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  OwnedHandle read_end, write_end;
  if (!CreatePipe(read_end.out(), write_end.out(), &inheritable, 0)) {
    return OsError(static_cast<int>(GetLastError()), "CreatePipe for the report of", program);
  }
  SetHandleInformation(read_end.get(), HANDLE_FLAG_INHERIT, 0);
  OwnedHandle null(CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE,
                               FILE_SHARE_READ | FILE_SHARE_WRITE, &inheritable, OPEN_EXISTING, 0,
                               nullptr));
  if (null.get() == INVALID_HANDLE_VALUE) {
    return OsError(static_cast<int>(GetLastError()), "opening NUL for", program);
  }

  HANDLE inherited[2] = {write_end.get(), null.get()};
  SIZE_T list_size = 0;
  InitializeProcThreadAttributeList(nullptr, 1, 0, &list_size);
  std::vector<unsigned char> list_storage(list_size);
  auto* list = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(list_storage.data());
  if (!InitializeProcThreadAttributeList(list, 1, 0, &list_size) ||
      !UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherited,
                                 sizeof inherited, nullptr, nullptr)) {
    return OsError(static_cast<int>(GetLastError()), "preparing the handle list of", program);
  }
  STARTUPINFOEXW startup{};
  startup.StartupInfo.cb = sizeof startup;
  startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  startup.StartupInfo.hStdInput = null.get();
  startup.StartupInfo.hStdOutput = null.get();
  startup.StartupInfo.hStdError = null.get();
  startup.lpAttributeList = list;

  std::wstring command_line;
  AppendQuoted(command_line, program.wstring());
  for (const std::string& argument : arguments) AppendQuoted(command_line, Widen(argument));
  std::vector<wchar_t> environment = EnvironmentWith(write_end.get());

  PROCESS_INFORMATION process{};
  DWORD flags = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_UNICODE_ENVIRONMENT |
                EXTENDED_STARTUPINFO_PRESENT | CREATE_BREAKAWAY_FROM_JOB;
  BOOL created = CreateProcessW(program.c_str(), command_line.data(), nullptr, nullptr, TRUE, flags,
                                environment.data(), nullptr, &startup.StartupInfo, &process);
  if (!created && GetLastError() == ERROR_ACCESS_DENIED) {
    // The starter's job does not allow breaking away: the host stays in it.
    flags &= ~static_cast<DWORD>(CREATE_BREAKAWAY_FROM_JOB);
    created = CreateProcessW(program.c_str(), command_line.data(), nullptr, nullptr, TRUE, flags,
                             environment.data(), nullptr, &startup.StartupInfo, &process);
  }
  const DWORD create_error = GetLastError();
  DeleteProcThreadAttributeList(list);
  write_end.Close();  // from now on only the program holds a write end
  null.Close();
  if (!created) return OsError(static_cast<int>(create_error), "starting", program);
  OwnedHandle process_handle(process.hProcess);
  CloseHandle(process.hThread);

  std::string report;
  char chunk[512];
  DWORD n = 0;
  while (ReadFile(read_end.get(), chunk, sizeof chunk, &n, nullptr) && n > 0) {
    report.append(chunk, n);
  }
  if (report.empty()) {
    // The pipe closed unwritten: the program ended (or closed it, and ends now).
    WaitForSingleObject(process_handle.get(), 10000);
    DWORD code = STILL_ACTIVE;
    GetExitCodeProcess(process_handle.get(), &code);
    return Status(Code::kIoError,
                  program.string() + " ended without reporting (" +
                      (code == STILL_ACTIVE ? std::string("still running")
                                            : "exit code " + std::to_string(code)) +
                      ")");
  }
  return report;
}

Status BecomeDaemon() { return Status::Ok(); }

Status SendReport(std::string_view text) {
  static std::atomic<bool> sent{false};
  if (sent.exchange(true)) return Status::Ok();
  wchar_t value[32] = {};
  const DWORD length = GetEnvironmentVariableW(kReportHandleVariable, value, 32);
  if (length == 0 || length >= 32) {
    return Status(Code::kNotFound, "no report handle: the program was not started by StartDaemon");
  }
  SetEnvironmentVariableW(kReportHandleVariable, nullptr);  // not inherited by anything later
  const auto handle =
      reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>(std::wcstoull(value, nullptr, 10)));
  Status status;
  std::size_t done = 0;
  while (done < text.size()) {
    DWORD n = 0;
    if (!WriteFile(handle, text.data() + done, static_cast<DWORD>(text.size() - done), &n,
                   nullptr) ||
        n == 0) {
      status = OsError(static_cast<int>(GetLastError()), "writing the report", "");
      break;
    }
    done += n;
  }
  CloseHandle(handle);
  return status;
}

Status BlockTerminationSignals() {
  if (g_termination_event == nullptr) {
    g_termination_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    if (g_termination_event == nullptr) {
      return OsError(static_cast<int>(GetLastError()), "CreateEvent", "");
    }
  }
  SetConsoleCtrlHandler(OnConsoleControl, TRUE);
  return Status::Ok();
}

int WaitForTerminationSignal() {
  if (g_termination_event == nullptr) Sleep(INFINITE);
  WaitForSingleObject(g_termination_event, INFINITE);
  return 15;  // as SIGTERM
}

}  // namespace vdisk::platform
