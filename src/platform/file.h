// Positional file I/O: the only way formats touch storage.
//
// Every format reads and writes its image through File, so tests can substitute an in-memory file
// with fault injection (FaultInjectingFile) and the OS-specific code stays in src/platform.
// Thread safety: ReadAt/WriteAt may be called concurrently from several threads (they are
// positional, like pread/pwrite); Resize and Allocate must not race with I/O to the same range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>

#include "core/status.h"

namespace vdisk::platform {

enum class FileAccess { kRead, kReadWrite };
enum class FileDisposition {
  kOpenExisting,  // fails with kFileNotFound if missing
  kCreateNew,     // fails with kFileExists if present
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
};

using FileOpener = std::function<Result<std::unique_ptr<File>>(
    const std::filesystem::path&, FileAccess, FileDisposition)>;

// Opens a file through the current opener (the OS's unless a test replaced it).
Result<std::unique_ptr<File>> OpenFile(const std::filesystem::path& path, FileAccess access,
                                       FileDisposition disposition = FileDisposition::kOpenExisting);
// Test seam: replaces the opener and returns the previous one. Pass nullptr to restore the OS's.
FileOpener SetFileOpenerForTesting(FileOpener opener);
// The OS's own opener.
Result<std::unique_ptr<File>> OpenOsFile(const std::filesystem::path& path, FileAccess access,
                                         FileDisposition disposition);

// Deletes a file (used to remove a half-created image). Missing files are not an error.
Status RemoveFile(const std::filesystem::path& path);

// Turns an OS error number (errno / GetLastError) into a Status naming the operation and path.
Status OsError(int os_error, std::string_view operation, const std::filesystem::path& path);

}  // namespace vdisk::platform
