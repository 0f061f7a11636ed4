// Positional file I/O: the only way formats touch storage.
//
// Every format reads and writes its image through File, so tests can substitute an in-memory file
// with fault injection (FaultInjectingFile) and the OS-specific code stays in src/platform.
// Paths that bypass ReadAt/WriteAt (the io_uring queue, copy_file_range) take the OS handle from
// native_handle(); a wrapper has none, so with a wrapped file those paths fall back to
// ReadAt/WriteAt and the wrapper sees every byte.
// Thread safety: ReadAt/WriteAt/CopyFrom/FindData may be called concurrently from several threads
// (they are positional, like pread/pwrite); Resize and Allocate must not race with I/O to the
// same range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "base/status.h"

namespace vdisk::platform {

enum class FileAccess {
  kRead,
  kReadWrite,
  // Reading a file that another process may hold for writing (the view of a disk an attach host
  // serves): no lock is taken, and on Windows the open shares write and delete access, which the
  // writer's open needs. On POSIX the same as kRead.
  kReadShared,
};
enum class FileDisposition {
  kOpenExisting,  // fails with kFileNotFound if missing
  kCreateNew,     // fails with kFileExists if present
};

// The OS object behind a File: a file descriptor on POSIX, a HANDLE on Windows.
#ifdef _WIN32
using NativeHandle = void*;
#else
using NativeHandle = int;
#endif

// How CopyFrom moved the bytes.
enum class CopyMethod {
  kKernel,    // copy_file_range: never through this process's memory (a reflink on CoW filesystems)
  kBuffered,  // read into memory and written back
};

// A range of a file: [begin, end).
struct FileRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  bool empty() const { return begin >= end; }
};

class File {
 public:
  virtual ~File() = default;

  // Reads exactly out.size() bytes at `offset`. Reading past the end of the file fails with
  // kFileCorrupt ("file ends at ..."): image structures never lie past the end.
  virtual Status ReadAt(std::uint64_t offset, std::span<std::byte> out) = 0;
  // Writes all of `data` at `offset`, extending the file if needed.
  virtual Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) = 0;
  // Makes every completed write durable (fdatasync / FlushFileBuffers).
  virtual Status Flush() = 0;
  virtual Result<std::uint64_t> Size() = 0;
  // Sets the file's length; growing leaves a hole that reads as zeros.
  virtual Status Resize(std::uint64_t size) = 0;
  // Reserves real storage for [offset, offset+length) (fallocate); the range reads as zeros.
  virtual Status Allocate(std::uint64_t offset, std::uint64_t length) = 0;
  // Bytes of storage the file occupies (st_blocks * 512), for fragmentation and sparseness.
  virtual Result<std::uint64_t> AllocatedBytes() = 0;
  // Takes an advisory whole-image lock shared with other processes: exclusive for a writer,
  // shared for readers. Fails with kSharingViolation when another process holds a conflicting
  // one. The lock ends with the File.
  virtual Status Lock(bool exclusive) = 0;
  virtual bool writable() const = 0;
  virtual const std::filesystem::path& path() const = 0;

  // The OS handle, for I/O that does not go through ReadAt/WriteAt. Only files that are plain OS
  // files answer; wrappers (fault injection) and memory files do not (the default), so that
  // such paths fall back to ReadAt/WriteAt.
  virtual std::optional<NativeHandle> native_handle() const { return std::nullopt; }
  // Whether CopyFrom(source, ...) can copy in the kernel: both are OS files on one filesystem
  // and the OS has copy_file_range. The default: no.
  virtual bool CanCopyInKernelFrom(const File& source) const {
    (void)source;
    return false;
  }
  // Writes `length` bytes of `source` from `source_offset` at `offset` of this file (extending
  // it if needed), as ReadAt + WriteAt would. Copies in the kernel where it can; where the
  // kernel refuses (EXDEV, EOPNOTSUPP, EINVAL, ENOSYS) or a file has no native handle, reads and
  // writes through a bounded buffer, via source.ReadAt and this->WriteAt. Returns how it copied.
  // Reading past the end of `source` fails with kFileCorrupt, as ReadAt does.
  // REQUIRES: the two ranges do not overlap if source is this file.
  virtual Result<CopyMethod> CopyFrom(File& source, std::uint64_t source_offset,
                                      std::uint64_t offset, std::uint64_t length);
  // The first range of [begin, end) at or after `begin` that may hold data (SEEK_DATA /
  // SEEK_HOLE); an empty range at `end` when the rest is a hole. Files that cannot tell (the
  // default) answer the whole range: a caller skips only what is certainly a hole.
  virtual Result<FileRange> FindData(std::uint64_t begin, std::uint64_t end) {
    return FileRange{begin, end};
  }
};

// Copies `length` bytes of `source` at `source_offset` through one buffer of at most 1 MiB, a
// piece at a time, each stored by write(offset_in_range, piece); stops at the first failure.
// File::CopyFrom's fallback, and the copy of the formats' WriteFromFile.
Status CopyThroughBuffer(
    File& source, std::uint64_t source_offset, std::uint64_t length,
    const std::function<Status(std::uint64_t, std::span<const std::byte>)>& write);

using FileOpener = std::function<Result<std::unique_ptr<File>>(const std::filesystem::path&,
                                                               FileAccess, FileDisposition)>;

// Opens a file through the current opener (the OS's unless a test replaced it).
Result<std::unique_ptr<File>> OpenFile(
    const std::filesystem::path& path, FileAccess access,
    FileDisposition disposition = FileDisposition::kOpenExisting);
// Test seam: replaces the opener and returns the previous one. Pass nullptr to restore the OS's.
FileOpener SetFileOpenerForTesting(FileOpener opener);
// The OS's own opener. Only regular files open: a directory, FIFO, socket or device fails at
// once (never blocks) with kNotRegularFile, checked on the opened descriptor or handle.
Result<std::unique_ptr<File>> OpenOsFile(const std::filesystem::path& path, FileAccess access,
                                         FileDisposition disposition);

// What tells one file from another: the device and inode number on POSIX, the volume serial
// number and file index on Windows. Two paths name the same file exactly when these agree.
struct FileIdentity {
  std::uint64_t volume = 0;
  std::uint64_t index = 0;
  bool operator==(const FileIdentity&) const = default;
};
// The identity of the file `path` names (links followed); nullopt if it cannot be had.
std::optional<FileIdentity> IdentifyFile(const std::filesystem::path& path);

// Deletes a file (used to remove a half-created image). Missing files are not an error.
Status RemoveFile(const std::filesystem::path& path);

// A file the current call is creating: once Arm()ed (the file is ours), it is removed when the
// guard goes out of scope, by an error return or an exception, unless Keep() was called.
// Declare it before the objects that hold the file open, so that they close it first.
class NewFileGuard {
 public:
  explicit NewFileGuard(std::filesystem::path path) : path_(std::move(path)) {}
  ~NewFileGuard() {
    if (!armed_) return;
    try {
      (void)RemoveFile(path_);
    } catch (...) {
      // Nothing more can be done for a file that cannot be removed while unwinding.
    }
  }
  NewFileGuard(const NewFileGuard&) = delete;
  NewFileGuard& operator=(const NewFileGuard&) = delete;
  void Arm() noexcept { armed_ = true; }
  void Keep() noexcept { armed_ = false; }

 private:
  std::filesystem::path path_;
  bool armed_ = false;
};

// kNotRegularFile: "<path> is <kind>, not a regular file" (kind: "a FIFO", "a directory", ...).
Status NotRegularFile(const std::filesystem::path& path, std::string_view kind);

// Turns an OS error number (errno / GetLastError) into a Status naming the operation and path.
Status OsError(int os_error, std::string_view operation, const std::filesystem::path& path);

}  // namespace vdisk::platform
