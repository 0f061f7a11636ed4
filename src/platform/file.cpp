#include "platform/file.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>

namespace vdisk::platform {
namespace {

std::mutex& OpenerMutex() {
  static std::mutex mutex;
  return mutex;
}

FileOpener& CurrentOpener() {
  static FileOpener opener;
  return opener;
}

// The bounce buffer of a copy through memory: enough for large sequential requests, small
// enough to allocate per call (the kernel path is the common one).
constexpr std::uint64_t kCopyBufferBytes = 1 << 20;

}  // namespace

Status CopyThroughBuffer(
    File& source, std::uint64_t source_offset, std::uint64_t length,
    const std::function<Status(std::uint64_t, std::span<const std::byte>)>& write) {
  if (length == 0) return Status::Ok();
  const auto buffer_bytes = static_cast<std::size_t>(std::min(length, kCopyBufferBytes));
  auto buffer = std::make_unique_for_overwrite<std::byte[]>(buffer_bytes);
  for (std::uint64_t done = 0; done < length;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_bytes, length - done));
    const std::span<std::byte> piece(buffer.get(), n);
    VDISK_RETURN_IF_ERROR(source.ReadAt(source_offset + done, piece));
    VDISK_RETURN_IF_ERROR(write(done, piece));
    done += n;
  }
  return Status::Ok();
}

Result<CopyMethod> File::CopyFrom(File& source, std::uint64_t source_offset, std::uint64_t offset,
                                  std::uint64_t length) {
  VDISK_RETURN_IF_ERROR(CopyThroughBuffer(
      source, source_offset, length, [&](std::uint64_t done, std::span<const std::byte> piece) {
        return WriteAt(offset + done, piece);
      }));
  return CopyMethod::kBuffered;
}

Status NotRegularFile(const std::filesystem::path& path, std::string_view kind) {
  return Status(Code::kNotRegularFile,
                path.string() + " is " + std::string(kind) + ", not a regular file");
}

Result<std::unique_ptr<File>> OpenFile(const std::filesystem::path& path, FileAccess access,
                                       FileDisposition disposition) {
  FileOpener opener;
  {
    std::lock_guard lock(OpenerMutex());
    opener = CurrentOpener();
  }
  if (opener) return opener(path, access, disposition);
  return OpenOsFile(path, access, disposition);
}

FileOpener SetFileOpenerForTesting(FileOpener opener) {
  std::lock_guard lock(OpenerMutex());
  return std::exchange(CurrentOpener(), std::move(opener));
}

}  // namespace vdisk::platform
