#include "interop_support.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace vdisk_interop {

// --- processes -----------------------------------------------------------------------------------

std::string CommandResult::Describe() const {
  std::string text = command + " => exit " + std::to_string(exit_code);
  if (!out.empty()) text += "\nstdout: " + out;
  if (!err.empty()) text += "\nstderr: " + err;
  return text;
}

CommandResult RunTool(const std::vector<std::string>& argv) {
  CommandResult result;
  for (const auto& arg : argv) {
    if (!result.command.empty()) result.command += ' ';
    result.command += arg;
  }
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return result;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.err = std::string("cannot run: ") + std::strerror(rc);
    return result;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  while (open_count > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buffer[65536];
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.exit_code = 128 + WTERMSIG(status);
  return result;
}

bool HaveTool(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + std::string(name);
    if (access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

// --- files ---------------------------------------------------------------------------------------

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/virtdisk-interop-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back(0);
  if (mkdtemp(buffer.data()) == nullptr)
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  path_ = buffer.data();
}

ScratchDir::~ScratchDir() {
  if (std::getenv("VIRTDISK_KEEP_TEST_FILES") != nullptr) {
    std::fprintf(stderr, "kept test files in %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Bytes ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(in.tellg());
  in.seekg(0);
  Bytes data(size);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return data;
}

void WriteWholeFile(const std::filesystem::path& path, std::span<const std::uint8_t> data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void WriteFileAt(const std::filesystem::path& path, std::uint64_t offset,
                 std::span<const std::uint8_t> data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path.string());
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pwrite(fd, data.data() + done, data.size() - done,
                             static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      throw std::system_error(errno, std::generic_category(), "pwrite " + path.string());
    }
    done += static_cast<std::size_t>(n);
  }
  close(fd);
}

std::optional<std::size_t> FirstDifference(std::span<const std::uint8_t> a,
                                           std::span<const std::uint8_t> b) {
  const auto n = std::min(a.size(), b.size());
  const auto mismatch = std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n),
                                      b.begin());
  if (mismatch.first != a.begin() + static_cast<std::ptrdiff_t>(n))
    return static_cast<std::size_t>(mismatch.first - a.begin());
  if (a.size() != b.size()) return n;
  return std::nullopt;
}

std::string CompareBytes(std::span<const std::uint8_t> actual,
                         std::span<const std::uint8_t> expected) {
  const auto at = FirstDifference(actual, expected);
  if (!at) return "equal";
  char text[160];
  if (*at < actual.size() && *at < expected.size()) {
    // Count the differing bytes too: one sector or whole blocks tell different stories.
    std::size_t differing = 0;
    for (std::size_t i = *at; i < std::min(actual.size(), expected.size()); ++i)
      differing += actual[i] != expected[i];
    std::snprintf(text, sizeof text,
                  "differ first at byte %zu (sector %zu, 2 MiB block %zu): 0x%02x, expected "
                  "0x%02x; %zu bytes differ in all",
                  *at, *at / 512, *at >> 21, actual[*at], expected[*at], differing);
  } else {
    std::snprintf(text, sizeof text, "sizes differ: %zu bytes, expected %zu", actual.size(),
                  expected.size());
  }
  return text;
}

// --- qemu ----------------------------------------------------------------------------------------

std::optional<std::uint64_t> QemuVirtualSize(const std::filesystem::path& image,
                                             std::string_view format) {
  const auto r = RunTool({"qemu-img", "info", "--output=json", "-f", std::string(format),
                      image.string()});
  if (r.exit_code != 0) return std::nullopt;
  // The first "virtual-size" is the image's own (backing images come later, nested).
  const auto key = r.out.find("\"virtual-size\":");
  if (key == std::string::npos) return std::nullopt;
  return std::strtoull(r.out.c_str() + key + 15, nullptr, 10);
}

std::optional<Bytes> QemuReadAll(const std::filesystem::path& image, std::string_view format,
                                 const std::filesystem::path& scratch, std::string* error) {
  const auto raw = scratch / (image.filename().string() + ".qemu.raw");
  const auto r = RunTool({"qemu-img", "convert", "-f", std::string(format), "-O", "raw",
                      image.string(), raw.string()});
  if (r.exit_code != 0) {
    if (error) *error = r.Describe();
    return std::nullopt;
  }
  Bytes data = ReadWholeFile(raw);
  std::filesystem::remove(raw);
  return data;
}

QemuCheck QemuCheckVpc(const std::filesystem::path& image) {
  const auto r = RunTool({"qemu-img", "check", "-f", "vpc", image.string()});
  QemuCheck check;
  check.detail = r.Describe();
  if (r.exit_code == 63 && r.err.find("does not support checks") != std::string::npos) {
    check.supported = false;
    check.passed = true;  // nothing was checked; the caller must validate another way
    return check;
  }
  check.supported = true;
  check.passed = r.exit_code == 0;
  return check;
}

// --- the library under test ----------------------------------------------------------------------

WString Wide(const std::filesystem::path& path) {
  const std::wstring w = path.wstring();
  return WString(w.begin(), w.end());
}

VIRTUAL_STORAGE_TYPE StorageType(ULONG device, bool microsoft) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = device;
  type.VendorId = microsoft ? VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT
                            : VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN;
  return type;
}

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    Close();
    h_ = other.h_;
    other.h_ = nullptr;
  }
  return *this;
}

bool Handle::Close() {
  if (h_ == nullptr) return true;
  const bool ok = CloseHandle(h_) != FALSE;
  h_ = nullptr;
  return ok;
}

DWORD OpenV2(const std::filesystem::path& path, VIRTUAL_STORAGE_TYPE type, bool read_only,
             Handle& handle, OPEN_VIRTUAL_DISK_FLAG flags) {
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  params.Version2.ReadOnly = read_only ? TRUE : FALSE;
  const WString wide = Wide(path);
  return OpenVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, flags, &params,
                         handle.out());
}

DWORD OpenV1(const std::filesystem::path& path, VIRTUAL_STORAGE_TYPE type,
             VIRTUAL_DISK_ACCESS_MASK mask, Handle& handle) {
  const WString wide = Wide(path);
  return OpenVirtualDisk(&type, wide.c_str(), mask, OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr,
                         handle.out());
}

DWORD CreateVhd(const std::filesystem::path& path, const CreateSpec& spec, Handle& handle) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD, true);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = spec.size;
  params.Version2.BlockSizeInBytes = spec.block_size;
  params.Version2.SectorSizeInBytes = 512;
  const WString parent = Wide(spec.parent);
  if (!spec.parent.empty()) params.Version2.ParentPath = parent.c_str();
  const WString wide = Wide(path);
  const CREATE_VIRTUAL_DISK_FLAG flags = spec.fixed
                                             ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                             : CREATE_VIRTUAL_DISK_FLAG_NONE;
  return CreateVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr, flags, 0,
                           &params, nullptr, handle.out());
}

DWORD AttachRaw(HANDLE handle, bool read_only) {
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ATTACH_VIRTUAL_DISK_FLAG flags = ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST;
  if (read_only) flags = flags | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY;
  return AttachVirtualDisk(handle, nullptr, flags, 0, &params, nullptr);
}

namespace {

template <typename Buffer, typename Call>
DWORD Overlapped(HANDLE handle, std::uint64_t offset, Buffer buffer, Call call) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  DWORD n = 0;
  if (!call(handle, buffer.data(), static_cast<DWORD>(buffer.size()), &n, &ov)) {
    const DWORD error = GetLastError();
    if (error != ERROR_IO_PENDING) return error;
    if (!GetOverlappedResult(handle, &ov, &n, TRUE)) return GetLastError();
  }
  return n == buffer.size() ? ERROR_SUCCESS : ERROR_HANDLE_EOF;
}

DWORD Seek(HANDLE handle, std::uint64_t offset) {
  LARGE_INTEGER to{};
  to.QuadPart = static_cast<LONGLONG>(offset);
  return SetFilePointerEx(handle, to, nullptr, FILE_BEGIN) ? ERROR_SUCCESS : GetLastError();
}

}  // namespace

DWORD ReadAt(HANDLE handle, std::uint64_t offset, std::span<std::uint8_t> out) {
  return Overlapped(handle, offset, out,
                    [](HANDLE h, void* b, DWORD l, DWORD* n, OVERLAPPED* o) {
                      return ReadFile(h, b, l, n, o);
                    });
}

DWORD WriteAt(HANDLE handle, std::uint64_t offset, std::span<const std::uint8_t> data) {
  return Overlapped(handle, offset, data,
                    [](HANDLE h, const void* b, DWORD l, DWORD* n, OVERLAPPED* o) {
                      return WriteFile(h, b, l, n, o);
                    });
}

DWORD ReadSync(HANDLE handle, std::uint64_t offset, std::span<std::uint8_t> out) {
  if (DWORD e = Seek(handle, offset); e != ERROR_SUCCESS) return e;
  DWORD n = 0;
  if (!ReadFile(handle, out.data(), static_cast<DWORD>(out.size()), &n, nullptr))
    return GetLastError();
  return n == out.size() ? ERROR_SUCCESS : ERROR_HANDLE_EOF;
}

DWORD WriteSync(HANDLE handle, std::uint64_t offset, std::span<const std::uint8_t> data) {
  if (DWORD e = Seek(handle, offset); e != ERROR_SUCCESS) return e;
  DWORD n = 0;
  if (!WriteFile(handle, data.data(), static_cast<DWORD>(data.size()), &n, nullptr))
    return GetLastError();
  return n == data.size() ? ERROR_SUCCESS : ERROR_HANDLE_EOF;
}

std::optional<Bytes> ReadAll(HANDLE handle, std::uint64_t size, DWORD* error) {
  constexpr std::uint64_t kChunk = 1 << 20;
  Bytes data(static_cast<std::size_t>(size));
  for (std::uint64_t offset = 0; offset < size; offset += kChunk) {
    const auto n = static_cast<std::size_t>(std::min(kChunk, size - offset));
    const DWORD e = ReadAt(handle, offset, std::span(data).subspan(offset, n));
    if (e != ERROR_SUCCESS) {
      if (error) *error = e;
      return std::nullopt;
    }
  }
  return data;
}

std::optional<SizeInfo> QuerySize(HANDLE handle, DWORD* error) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  const DWORD e = GetVirtualDiskInformation(handle, &size, &info, nullptr);
  if (e != ERROR_SUCCESS) {
    if (error) *error = e;
    return std::nullopt;
  }
  return SizeInfo{info.Size.VirtualSize, info.Size.PhysicalSize, info.Size.BlockSize,
                  info.Size.SectorSize};
}

std::optional<VIRTUAL_STORAGE_TYPE> QueryStorageType(HANDLE handle, DWORD* error) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE;
  ULONG size = sizeof info;
  const DWORD e = GetVirtualDiskInformation(handle, &size, &info, nullptr);
  if (e != ERROR_SUCCESS) {
    if (error) *error = e;
    return std::nullopt;
  }
  return info.VirtualStorageType;
}

namespace {

std::string ErrorText(DWORD e) {
  char text[48];
  std::snprintf(text, sizeof text, "%u (0x%08X)", e, e);
  return text;
}

}  // namespace

std::optional<Bytes> ReadImageThroughApi(const std::filesystem::path& path, std::string* error) {
  Handle h;
  DWORD e = OpenV2(path, StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), true, h);
  if (e != ERROR_SUCCESS) {
    if (error) *error = "OpenVirtualDisk(read-only) failed with " + ErrorText(e);
    return std::nullopt;
  }
  const auto size = QuerySize(h.get(), &e);
  if (!size) {
    if (error) *error = "GetVirtualDiskInformation(SIZE) failed with " + ErrorText(e);
    return std::nullopt;
  }
  e = AttachRaw(h.get(), true);
  if (e != ERROR_SUCCESS) {
    if (error) *error = "AttachVirtualDisk(READ_ONLY|NO_LOCAL_HOST) failed with " + ErrorText(e);
    return std::nullopt;
  }
  auto data = ReadAll(h.get(), size->virtual_size, &e);
  if (!data && error) *error = "ReadFile failed with " + ErrorText(e);
  return data;
}

}  // namespace vdisk_interop
