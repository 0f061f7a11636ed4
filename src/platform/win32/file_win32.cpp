// File over Win32: CreateFileW handles on which reads and writes are positional NtReadFile /
// NtWriteFile calls, and share modes for cross-process exclusion.
//
// Why ntdll and not ReadFile/WriteFile with an OVERLAPPED offset: kernel32 passes the OVERLAPPED as
// the I/O's completion context, and Wine then makes a wineserver round trip per call in case a
// completion port is bound to the file (33 us against 2.6 us for the same 512-byte read). These
// handles are ours and never bound to a port, so no completion context is passed. On Windows both
// reach the same system call. Also, a ReadFile from inside the library would pass through the
// DLL's own kernel32 hooks, which only disk handles need.
#include <windows.h>
#include <winternl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "platform/file.h"

namespace vdisk::platform {
namespace {

constexpr DWORD kMaxChunk = 1u << 30;
constexpr NTSTATUS kStatusPending = 0x00000103;
constexpr NTSTATUS kStatusEndOfFile = static_cast<NTSTATUS>(0xC0000011);

using NtTransferFn = NTSTATUS(NTAPI*)(HANDLE, HANDLE, PIO_APC_ROUTINE, PVOID, PIO_STATUS_BLOCK,
                                      PVOID, ULONG, PLARGE_INTEGER, PULONG);
using StatusToErrorFn = ULONG(NTAPI*)(NTSTATUS);

struct NtFileIo {
  NtTransferFn read;
  NtTransferFn write;
  StatusToErrorFn to_win32_error;
};

const NtFileIo& Nt() {
  static const NtFileIo io = [] {
    const HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    return NtFileIo{
        reinterpret_cast<NtTransferFn>(
            reinterpret_cast<void*>(GetProcAddress(ntdll, "NtReadFile"))),
        reinterpret_cast<NtTransferFn>(
            reinterpret_cast<void*>(GetProcAddress(ntdll, "NtWriteFile"))),
        reinterpret_cast<StatusToErrorFn>(
            reinterpret_cast<void*>(GetProcAddress(ntdll, "RtlNtStatusToDosError")))};
  }();
  return io;
}

// One positional transfer of at most kMaxChunk bytes; `moved` is what it moved. A synchronous
// handle finishes the I/O before returning; STATUS_PENDING is handled anyway, by waiting on the
// file object, which is what the system signals when no event is given.
NTSTATUS Transfer(NtTransferFn fn, HANDLE handle, void* buffer, DWORD length, std::uint64_t offset,
                  DWORD& moved) {
  IO_STATUS_BLOCK iosb{};
  LARGE_INTEGER at{};
  at.QuadPart = static_cast<LONGLONG>(offset);
  NTSTATUS status = fn(handle, nullptr, nullptr, nullptr, &iosb, buffer, length, &at, nullptr);
  if (status == kStatusPending) {
    WaitForSingleObject(handle, INFINITE);
    status = iosb.Status;
  }
  moved = status >= 0 ? static_cast<DWORD>(iosb.Information) : 0;
  return status;
}

class Win32File final : public File {
 public:
  Win32File(HANDLE handle, std::filesystem::path path, bool writable)
      : handle_(handle), path_(std::move(path)), writable_(writable) {}
  ~Win32File() override { CloseHandle(handle_); }
  Win32File(const Win32File&) = delete;
  Win32File& operator=(const Win32File&) = delete;

  Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const DWORD want = static_cast<DWORD>(std::min<std::size_t>(out.size() - done, kMaxChunk));
      DWORD got = 0;
      const NTSTATUS status =
          Transfer(Nt().read, handle_, out.data() + done, want, offset + done, got);
      if (status < 0 && status != kStatusEndOfFile) return NtError(status, "read");
      if (got == 0) {
        return Status(Code::kFileCorrupt, path_.string() + ": file ends before offset " +
                                              std::to_string(offset + out.size()));
      }
      done += got;
    }
    return Status::Ok();
  }

  Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const DWORD want = static_cast<DWORD>(std::min<std::size_t>(data.size() - done, kMaxChunk));
      DWORD put = 0;
      // NtWriteFile does not write through the buffer; the cast only fits its signature.
      void* source = const_cast<std::byte*>(data.data() + done);
      const NTSTATUS status = Transfer(Nt().write, handle_, source, want, offset + done, put);
      if (status < 0) return NtError(status, "write");
      if (put == 0) return Status(Code::kIoError, path_.string() + ": write moved no bytes");
      done += put;
    }
    return Status::Ok();
  }

  Status Flush() override {
    if (!FlushFileBuffers(handle_)) return OsError(static_cast<int>(GetLastError()), "flush", path_);
    return Status::Ok();
  }

  Result<std::uint64_t> Size() override {
    LARGE_INTEGER size{};
    if (!GetFileSizeEx(handle_, &size)) return OsError(static_cast<int>(GetLastError()), "size", path_);
    return static_cast<std::uint64_t>(size.QuadPart);
  }

  Status Resize(std::uint64_t size) override {
    FILE_END_OF_FILE_INFO info{};
    info.EndOfFile.QuadPart = static_cast<LONGLONG>(size);
    if (!SetFileInformationByHandle(handle_, FileEndOfFileInfo, &info, sizeof info))
      return OsError(static_cast<int>(GetLastError()), "resize", path_);
    return Status::Ok();
  }

  Status Allocate(std::uint64_t offset, std::uint64_t length) override {
    VDISK_ASSIGN_OR_RETURN(const std::uint64_t size, Size());
    if (offset + length <= size) return Status::Ok();
    FILE_ALLOCATION_INFO info{};
    info.AllocationSize.QuadPart = static_cast<LONGLONG>(offset + length);
    if (SetFileInformationByHandle(handle_, FileAllocationInfo, &info, sizeof info))
      return Resize(offset + length);
    // Some Win32 implementations (Wine) lack FileAllocationInfo: write the zeros instead.
    const std::vector<std::byte> zeros(1 << 20);
    for (std::uint64_t at = std::max(offset, size); at < offset + length;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), offset + length - at));
      VDISK_RETURN_IF_ERROR(WriteAt(at, std::span(zeros).first(n)));
      at += n;
    }
    return Status::Ok();
  }

  Result<std::uint64_t> AllocatedBytes() override {
    FILE_STANDARD_INFO info{};
    if (!GetFileInformationByHandleEx(handle_, FileStandardInfo, &info, sizeof info))
      return OsError(static_cast<int>(GetLastError()), "query", path_);
    return static_cast<std::uint64_t>(info.AllocationSize.QuadPart);
  }

  // Exclusion comes from the share mode the file was opened with.
  Status Lock(bool) override { return Status::Ok(); }
  bool writable() const override { return writable_; }
  const std::filesystem::path& path() const override { return path_; }
  std::optional<NativeHandle> native_handle() const override { return handle_; }

 private:
  Status NtError(NTSTATUS status, std::string_view operation) const {
    return OsError(static_cast<int>(Nt().to_win32_error(status)), operation, path_);
  }

  HANDLE handle_;
  std::filesystem::path path_;
  bool writable_;
};

}  // namespace

Status OsError(int os_error, std::string_view operation, const std::filesystem::path& path) {
  Code code = Code::kIoError;
  switch (static_cast<DWORD>(os_error)) {
    case ERROR_FILE_NOT_FOUND: code = Code::kFileNotFound; break;
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE: code = Code::kPathNotFound; break;
    case ERROR_ACCESS_DENIED: code = Code::kAccessDenied; break;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS: code = Code::kFileExists; break;
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION: code = Code::kSharingViolation; break;
    case ERROR_WRITE_PROTECT: code = Code::kWriteProtect; break;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: code = Code::kDiskFull; break;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: code = Code::kNotEnoughMemory; break;
    case ERROR_DIRECTORY: code = Code::kDirectory; break;
    case ERROR_INVALID_PARAMETER: code = Code::kInvalidParameter; break;
    default: break;
  }
  return Status(code,
                path.string() + ": " + std::string(operation) + " failed (Win32 error " +
                    std::to_string(os_error) + ")",
                os_error);
}

Result<std::unique_ptr<File>> OpenOsFile(const std::filesystem::path& path, FileAccess access,
                                         FileDisposition disposition) {
  const bool write = access == FileAccess::kReadWrite;
  const DWORD desired = GENERIC_READ | (write ? GENERIC_WRITE : 0);
  // Readers share with readers; a writer shares reading only, as the VHD stack does.
  const DWORD share = access == FileAccess::kReadShared
                          ? FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
                          : FILE_SHARE_READ;
  const DWORD creation = disposition == FileDisposition::kCreateNew ? CREATE_NEW : OPEN_EXISTING;
  HANDLE handle =
      CreateFileW(path.c_str(), desired, share, nullptr, creation, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (handle == INVALID_HANDLE_VALUE) {
    const DWORD err = GetLastError();
    // Without FILE_FLAG_BACKUP_SEMANTICS a directory fails to open with ERROR_ACCESS_DENIED
    // (STATUS_FILE_IS_A_DIRECTORY); say so rather than suggest a permission problem.
    const DWORD attributes = GetFileAttributesW(path.c_str());
    if (err == ERROR_ACCESS_DENIED && attributes != INVALID_FILE_ATTRIBUTES &&
        (attributes & FILE_ATTRIBUTE_DIRECTORY) != 0) {
      return NotRegularFile(path, "a directory");
    }
    return OsError(static_cast<int>(err), "open", path);
  }
  // The type is checked on the opened handle, so nothing can swap the file in between: a
  // character device (NUL, a console) or a pipe is no image.
  const char* kind = nullptr;
  switch (GetFileType(handle)) {
    case FILE_TYPE_DISK: break;
    case FILE_TYPE_CHAR: kind = "a character device"; break;
    case FILE_TYPE_PIPE: kind = "a pipe"; break;
    default: kind = "not a file"; break;
  }
  BY_HANDLE_FILE_INFORMATION info{};
  if (kind == nullptr && GetFileInformationByHandle(handle, &info) &&
      (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0) {
    kind = "a directory";
  }
  if (kind != nullptr) {
    CloseHandle(handle);
    return NotRegularFile(path, kind);
  }
  try {
    return std::unique_ptr<File>(std::make_unique<Win32File>(handle, path, write));
  } catch (...) {
    // Neither the handle nor a file this call created may outlive the failure.
    CloseHandle(handle);
    if (creation == CREATE_NEW) DeleteFileW(path.c_str());
    throw;
  }
}

std::optional<FileIdentity> IdentifyFile(const std::filesystem::path& path) {
  // No access asked: only the attributes are read; backup semantics let it open a directory.
  HANDLE handle = CreateFileW(path.c_str(), 0,
                              FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                              OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (handle == INVALID_HANDLE_VALUE) return std::nullopt;
  BY_HANDLE_FILE_INFORMATION info{};
  const bool ok = GetFileInformationByHandle(handle, &info) != FALSE;
  CloseHandle(handle);
  if (!ok) return std::nullopt;
  return FileIdentity{info.dwVolumeSerialNumber,
                      (static_cast<std::uint64_t>(info.nFileIndexHigh) << 32) |
                          info.nFileIndexLow};
}

Status RemoveFile(const std::filesystem::path& path) {
  if (!DeleteFileW(path.c_str())) {
    const DWORD err = GetLastError();
    if (err != ERROR_FILE_NOT_FOUND) return OsError(static_cast<int>(err), "remove", path);
  }
  return Status::Ok();
}

}  // namespace vdisk::platform
