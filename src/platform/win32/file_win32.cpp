// File over Win32: CreateFileW handles with positional ReadFile/WriteFile (OVERLAPPED offsets on
// a synchronous handle), share modes for cross-process exclusion.
#include <windows.h>

#include <algorithm>
#include <string>
#include <vector>

#include "platform/file.h"

namespace vdisk::platform {
namespace {

constexpr DWORD kMaxChunk = 1u << 30;

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
      OVERLAPPED ov{};
      const std::uint64_t at = offset + done;
      ov.Offset = static_cast<DWORD>(at);
      ov.OffsetHigh = static_cast<DWORD>(at >> 32);
      const DWORD want = static_cast<DWORD>(std::min<std::size_t>(out.size() - done, kMaxChunk));
      DWORD got = 0;
      if (!ReadFile(handle_, out.data() + done, want, &got, &ov)) {
        const DWORD err = GetLastError();
        if (err != ERROR_HANDLE_EOF) return OsError(static_cast<int>(err), "read", path_);
        got = 0;
      }
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
      OVERLAPPED ov{};
      const std::uint64_t at = offset + done;
      ov.Offset = static_cast<DWORD>(at);
      ov.OffsetHigh = static_cast<DWORD>(at >> 32);
      const DWORD want = static_cast<DWORD>(std::min<std::size_t>(data.size() - done, kMaxChunk));
      DWORD put = 0;
      if (!WriteFile(handle_, data.data() + done, want, &put, &ov))
        return OsError(static_cast<int>(GetLastError()), "write", path_);
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
  const DWORD attributes = GetFileAttributesW(path.c_str());
  if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY) != 0)
    return Status(Code::kDirectory, path.string() + ": is a directory, not an image file");
  HANDLE handle =
      CreateFileW(path.c_str(), desired, share, nullptr, creation, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (handle == INVALID_HANDLE_VALUE)
    return OsError(static_cast<int>(GetLastError()), "open", path);
  return std::unique_ptr<File>(std::make_unique<Win32File>(handle, path, write));
}

Status RemoveFile(const std::filesystem::path& path) {
  if (!DeleteFileW(path.c_str())) {
    const DWORD err = GetLastError();
    if (err != ERROR_FILE_NOT_FOUND) return OsError(static_cast<int>(err), "remove", path);
  }
  return Status::Ok();
}

}  // namespace vdisk::platform
