#include "api_test_support.h"

#include <gtest/gtest.h>
#ifdef _WIN32
#include <psapi.h>
#else
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <stdexcept>

#include "support/file_bytes.h"

namespace vdisk_test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device device;
  path_ = std::filesystem::temp_directory_path() /
          ("vdisk-api-" + std::to_string(device()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

WString ToWide(const std::filesystem::path& path) {
  const std::wstring w = path.wstring();
  return WString(w.begin(), w.end());
}

WString TempDir::Wide(const std::string& name) const { return ToWide(path_ / name); }

VIRTUAL_STORAGE_TYPE StorageType(ULONG device, bool microsoft) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = device;
  const GUID vendor = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  if (microsoft) type.VendorId = vendor;
  return type;
}

DWORD CreateVhd(const WString& path, ULONGLONG size, bool fixed, HANDLE* handle, ULONG block_size,
                const WString& parent, ULONG device) {
  VIRTUAL_STORAGE_TYPE type = StorageType(device);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = parent.empty() ? size : 0;
  params.Version2.BlockSizeInBytes = block_size;
  params.Version2.SectorSizeInBytes = 512;
  params.Version2.ParentPath = parent.empty() ? nullptr : parent.c_str();
  return CreateVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                           fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                 : CREATE_VIRTUAL_DISK_FLAG_NONE,
                           0, &params, nullptr, handle);
}

DWORD OpenV2(const WString& path, bool read_only, HANDLE* handle, ULONG device) {
  VIRTUAL_STORAGE_TYPE type = StorageType(device, false);
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  params.Version2.ReadOnly = read_only ? TRUE : FALSE;
  return OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                         OPEN_VIRTUAL_DISK_FLAG_NONE, &params, handle);
}

DWORD AttachRaw(HANDLE handle, bool read_only) {
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ATTACH_VIRTUAL_DISK_FLAG flags = ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST;
  if (read_only) flags = static_cast<ATTACH_VIRTUAL_DISK_FLAG>(flags | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY);
  return AttachVirtualDisk(handle, nullptr, flags, 0, &params, nullptr);
}

namespace {

DWORD Transfer(HANDLE handle, std::uint64_t offset, void* buffer, DWORD length, bool write) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  DWORD done = 0;
  BOOL ok = write ? WriteFile(handle, buffer, length, &done, &ov)
                  : ReadFile(handle, buffer, length, &done, &ov);
  DWORD error = ERROR_SUCCESS;
  if (!ok) {
    error = GetLastError();
    if (error == ERROR_IO_PENDING) {
      error = GetOverlappedResult(handle, &ov, &done, TRUE) ? ERROR_SUCCESS : GetLastError();
    }
  }
  if (error == ERROR_SUCCESS && done != length) error = ERROR_HANDLE_EOF;
  CloseHandle(ov.hEvent);
  return error;
}

}  // namespace

DWORD ReadAt(HANDLE handle, std::uint64_t offset, void* buffer, DWORD length) {
  return Transfer(handle, offset, buffer, length, false);
}

DWORD WriteAt(HANDLE handle, std::uint64_t offset, const void* buffer, DWORD length) {
  return Transfer(handle, offset, const_cast<void*>(buffer), length, true);
}

ULONGLONG VirtualSize(HANDLE handle) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  if (GetVirtualDiskInformation(handle, &size, &info, nullptr) != ERROR_SUCCESS) return 0;
  return info.Size.VirtualSize;
}

std::vector<unsigned char> Pattern(std::size_t length, std::uint32_t seed) {
  std::vector<unsigned char> out(length);
  std::mt19937 engine(seed);
  for (auto& b : out) b = static_cast<unsigned char>(engine());
  return out;
}

void Patch(const std::filesystem::path& file, std::uint64_t offset,
           const std::vector<unsigned char>& bytes) {
  vdisk_testing::WriteFileBytes(file, offset, std::as_bytes(std::span(bytes)));
}

void Truncate(const std::filesystem::path& file, std::uint64_t size) {
  std::filesystem::resize_file(file, size);
}

std::uint64_t FileSize(const std::filesystem::path& file) {
  return std::filesystem::file_size(file);
}

std::vector<unsigned char> ReadBytes(const std::filesystem::path& file, std::uint64_t offset,
                                     std::size_t length) {
  std::ifstream f(file, std::ios::binary);
  std::vector<unsigned char> out(length);
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(length));
  out.resize(static_cast<std::size_t>(f.gcount()));
  return out;
}

void SetEnv(const char* name, const std::string& value) {
#ifdef _WIN32
  _putenv_s(name, value.c_str());
#else
  ::setenv(name, value.c_str(), 1);
#endif
}

void UnsetEnv(const char* name) {
#ifdef _WIN32
  _putenv_s(name, "");
#else
  ::unsetenv(name);
#endif
}

#ifdef _WIN32

std::filesystem::path ProgramBeside(const std::string& name) {
  std::vector<wchar_t> self(32768);
  const DWORD n = GetModuleFileNameW(nullptr, self.data(), static_cast<DWORD>(self.size()));
  return std::filesystem::path(std::wstring(self.data(), n)).parent_path() / (name + ".exe");
}

namespace {

// One argument quoted as CommandLineToArgvW parses it.
std::wstring Quoted(const std::wstring& argument) {
  std::wstring out = L"\"";
  std::size_t backslashes = 0;
  for (wchar_t c : argument) {
    if (c == L'\\') {
      ++backslashes;
      continue;
    }
    out.append(c == L'"' ? backslashes * 2 + 1 : backslashes, L'\\');
    backslashes = 0;
    out.push_back(c);
  }
  out.append(backslashes * 2, L'\\');
  return out + L"\"";
}

}  // namespace

ProgramResult RunProgram(const std::filesystem::path& program,
                         const std::vector<std::string>& arguments) {
  ProgramResult result;
  std::wstring command = Quoted(program.wstring());
  for (const std::string& argument : arguments)
    command += L" " + Quoted(std::filesystem::path(argument).wstring());
  SECURITY_ATTRIBUTES inherit{sizeof inherit, nullptr, TRUE};
  HANDLE read_end = nullptr;
  HANDLE write_end = nullptr;
  if (!CreatePipe(&read_end, &write_end, &inherit, 0)) return result;
  SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
  STARTUPINFOW startup{};
  startup.cb = sizeof startup;
  startup.dwFlags = STARTF_USESTDHANDLES;
  startup.hStdOutput = write_end;
  startup.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  startup.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  PROCESS_INFORMATION process{};
  const BOOL started = CreateProcessW(program.wstring().c_str(), command.data(), nullptr, nullptr,
                                      TRUE, 0, nullptr, nullptr, &startup, &process);
  CloseHandle(write_end);
  if (started) {
    char buffer[4096];
    DWORD n = 0;
    while (ReadFile(read_end, buffer, sizeof buffer, &n, nullptr) && n > 0)
      result.output.append(buffer, n);
    WaitForSingleObject(process.hProcess, INFINITE);
    DWORD code = 0;
    GetExitCodeProcess(process.hProcess, &code);
    result.exit_code = static_cast<int>(code);
    CloseHandle(process.hThread);
    CloseHandle(process.hProcess);
  }
  CloseHandle(read_end);
  return result;
}

// Counted with NtQuerySystemInformation(SystemHandleInformation = 16): GetProcessHandleCount
// answers 0 under Wine 8.
long ProcessHandleCount() {
  using QuerySystemInformation = LONG(WINAPI*)(ULONG, PVOID, ULONG, PULONG);
  struct Entry {
    ULONG owner;
    BYTE type;
    BYTE flags;
    USHORT value;
    PVOID object;
    ACCESS_MASK access;
  };
  auto query = reinterpret_cast<QuerySystemInformation>(reinterpret_cast<void*>(
      GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQuerySystemInformation")));
  if (query == nullptr) return -1;
  std::vector<unsigned char> buffer(1 << 20);
  LONG status = 0;
  for (;;) {
    ULONG needed = 0;
    status = query(16, buffer.data(), static_cast<ULONG>(buffer.size()), &needed);
    if (status != static_cast<LONG>(0xC0000004)) break;  // STATUS_INFO_LENGTH_MISMATCH
    buffer.resize(buffer.size() * 2);
  }
  if (status != 0) return -1;
  ULONG count = 0;
  std::memcpy(&count, buffer.data(), sizeof count);
  const auto* entries = reinterpret_cast<const Entry*>(buffer.data() + sizeof(void*));
  long mine = 0;
  for (ULONG i = 0; i < count; ++i) mine += entries[i].owner == GetCurrentProcessId();
  return mine;
}

long long ProcessMemoryBytes() {
  PROCESS_MEMORY_COUNTERS counters{};
  if (!GetProcessMemoryInfo(GetCurrentProcess(), &counters, sizeof counters)) return -1;
  return static_cast<long long>(counters.PagefileUsage);
}

#else

std::filesystem::path ProgramBeside(const std::string& name) {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / name;
}

ProgramResult RunProgram(const std::filesystem::path& program,
                         const std::vector<std::string>& arguments) {
  ProgramResult result;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return result;
  std::vector<std::string> argv_storage{program.string()};
  argv_storage.insert(argv_storage.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  char buffer[4096];
  for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    result.output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  return result;
}

long ProcessHandleCount() {
  std::error_code ec;
  long count = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++count;
  return ec ? -1 : count;
}

long long ProcessMemoryBytes() { return static_cast<long long>(::mallinfo2().uordblks); }

#endif

}  // namespace vdisk_test
