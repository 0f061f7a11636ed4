// File over POSIX pread/pwrite, with OFD locks for cross-process exclusion; copy_file_range for
// file-to-file copies and SEEK_DATA/SEEK_HOLE for finding data (Linux).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "platform/file.h"

namespace vdisk::platform {
namespace {

// The lock covers one byte far past any real data, so that it never conflicts with the byte
// ranges other tools lock in the same file (qemu locks bytes 100..).
constexpr off_t kLockByte = off_t{1} << 62;

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::filesystem::path path, bool writable)
      : fd_(fd), path_(std::move(path)), writable_(writable) {}
  ~PosixFile() override { ::close(fd_); }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done,
                                static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return OsError(errno, "read at offset " + std::to_string(offset + done), path_);
      }
      if (n == 0) {
        return Status(Code::kFileCorrupt, path_.string() + ": file ends before offset " +
                                              std::to_string(offset + out.size()));
      }
      done += static_cast<std::size_t>(n);
    }
    return Status::Ok();
  }

  Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return OsError(errno, "write at offset " + std::to_string(offset + done), path_);
      }
      done += static_cast<std::size_t>(n);
    }
    return Status::Ok();
  }

  Status Flush() override {
    if (::fdatasync(fd_) != 0) return OsError(errno, "flush", path_);
    return Status::Ok();
  }

  Result<std::uint64_t> Size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return OsError(errno, "stat", path_);
    return static_cast<std::uint64_t>(st.st_size);
  }

  Status Resize(std::uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return OsError(errno, "resize", path_);
    return Status::Ok();
  }

  Status Allocate(std::uint64_t offset, std::uint64_t length) override {
    const int rc = ::posix_fallocate(fd_, static_cast<off_t>(offset), static_cast<off_t>(length));
    if (rc != 0) return OsError(rc, "allocate", path_);
    return Status::Ok();
  }

  Result<std::uint64_t> AllocatedBytes() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return OsError(errno, "stat", path_);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }

  Status Lock(bool exclusive) override {
    struct flock fl {};
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = kLockByte;
    fl.l_len = 1;
    if (::fcntl(fd_, F_OFD_SETLK, &fl) == 0) return Status::Ok();
    if (errno == EAGAIN || errno == EACCES) {
      return Status(Code::kSharingViolation,
                    path_.string() + ": in use by another process (" +
                        (exclusive ? "needs exclusive access" : "held for writing") + ")",
                    errno);
    }
    if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP) return Status::Ok();
    return OsError(errno, "lock", path_);
  }

  bool writable() const override { return writable_; }
  const std::filesystem::path& path() const override { return path_; }

  std::optional<NativeHandle> native_handle() const override { return fd_; }

  bool CanCopyInKernelFrom(const File& source) const override {
#ifdef __linux__
    const auto source_fd = source.native_handle();
    if (!source_fd) return false;
    struct stat mine {};
    struct stat theirs {};
    // copy_file_range works across filesystems only in some kernels, and reflinks only within
    // one: one filesystem is the case worth taking.
    return ::fstat(fd_, &mine) == 0 && ::fstat(*source_fd, &theirs) == 0 &&
           mine.st_dev == theirs.st_dev;
#else
    (void)source;
    return false;
#endif
  }

  Result<CopyMethod> CopyFrom(File& source, std::uint64_t source_offset, std::uint64_t offset,
                              std::uint64_t length) override {
#ifdef __linux__
    if (const auto source_fd = source.native_handle()) {
      std::uint64_t done = 0;
      while (done < length) {
        auto in = static_cast<loff_t>(source_offset + done);
        auto out = static_cast<loff_t>(offset + done);
        const auto want =
            static_cast<std::size_t>(std::min<std::uint64_t>(length - done, 1u << 30));
        const ssize_t n = ::copy_file_range(*source_fd, &in, fd_, &out, want, 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          // Filesystems (or kernels) that cannot copy between these two files: the rest goes
          // through memory.
          if (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) break;
          return OsError(errno,
                         "copy of " + std::to_string(length - done) + " bytes from " +
                             source.path().string() + " at offset " +
                             std::to_string(source_offset + done) + " to offset " +
                             std::to_string(offset + done),
                         path_);
        }
        if (n == 0) {
          return Status(Code::kFileCorrupt, source.path().string() + ": file ends before offset " +
                                                std::to_string(source_offset + length));
        }
        done += static_cast<std::uint64_t>(n);
      }
      if (done == length) return CopyMethod::kKernel;
      auto rest = File::CopyFrom(source, source_offset + done, offset + done, length - done);
      if (!rest.ok()) return rest.status();
      return CopyMethod::kBuffered;
    }
#endif
    return File::CopyFrom(source, source_offset, offset, length);
  }

  Result<FileRange> FindData(std::uint64_t begin, std::uint64_t end) override {
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
    if (begin >= end) return FileRange{end, end};
    const off_t data = ::lseek(fd_, static_cast<off_t>(begin), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return FileRange{end, end};  // nothing but hole from `begin` on
      if (errno == EINVAL || errno == EOPNOTSUPP) return FileRange{begin, end};  // cannot tell
      return OsError(errno, "find data from offset " + std::to_string(begin), path_);
    }
    const auto data_begin = static_cast<std::uint64_t>(data);
    if (data_begin >= end) return FileRange{end, end};
    const off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) {
      return OsError(errno, "find a hole from offset " + std::to_string(data_begin), path_);
    }
    return FileRange{data_begin, std::min(end, static_cast<std::uint64_t>(hole))};
#else
    return File::FindData(begin, end);
#endif
  }

 private:
  int fd_;
  std::filesystem::path path_;
  bool writable_;
};

const char* FileKindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a file";
}

}  // namespace

Status OsError(int os_error, std::string_view operation, const std::filesystem::path& path) {
  Code code = Code::kIoError;
  switch (os_error) {
    case ENOENT: code = Code::kFileNotFound; break;
    case ENOTDIR: code = Code::kPathNotFound; break;
    case EACCES:
    case EPERM: code = Code::kAccessDenied; break;
    case EEXIST: code = Code::kFileExists; break;
    case EISDIR: code = Code::kDirectory; break;
    case EROFS: code = Code::kWriteProtect; break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: code = Code::kDiskFull; break;
    case ENOMEM: code = Code::kNotEnoughMemory; break;
    case ETXTBSY:
    case EBUSY: code = Code::kSharingViolation; break;
    case EINVAL: code = Code::kInvalidParameter; break;
    default: break;
  }
  return Status(code, path.string() + ": " + std::string(operation) + ": " + std::strerror(os_error),
                os_error);
}

Result<std::unique_ptr<File>> OpenOsFile(const std::filesystem::path& path, FileAccess access,
                                         FileDisposition disposition) {
  // O_NONBLOCK so that opening a FIFO cannot wait for a writer, O_NOCTTY so that a terminal
  // never becomes the controlling one; the type is then checked on the descriptor itself, so
  // nothing can swap the file between the check and its use.
  int flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
              (access == FileAccess::kReadWrite ? O_RDWR : O_RDONLY);
  if (disposition == FileDisposition::kCreateNew) flags |= O_CREAT | O_EXCL;
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) {
    const int err = errno;
    // Opening a socket fails with ENXIO and a directory for writing with EISDIR: say what the
    // path is rather than what open(2) thought of it.
    struct stat st {};
    if ((err == ENXIO || err == EISDIR || err == ENODEV || err == EOPNOTSUPP) &&
        ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return NotRegularFile(path, FileKindOf(st.st_mode));
    }
    // Windows tells a missing directory (ERROR_PATH_NOT_FOUND) from a missing file.
    std::error_code ec;
    if (err == ENOENT && path.has_parent_path() &&
        !std::filesystem::is_directory(path.parent_path(), ec)) {
      return OsError(ENOTDIR, "open", path);
    }
    return OsError(err, "open", path);
  }
  // From here on neither the descriptor nor a file this call created may outlive a failure,
  // an error or an exception.
  const bool created = disposition == FileDisposition::kCreateNew;
  auto abandon = [&] {
    ::close(fd);
    if (created) ::unlink(path.c_str());
  };
  try {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      abandon();
      return OsError(err, "stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
      abandon();
      return NotRegularFile(path, FileKindOf(st.st_mode));
    }
    const int status_flags = ::fcntl(fd, F_GETFL);
    if (status_flags < 0 || ::fcntl(fd, F_SETFL, status_flags & ~O_NONBLOCK) != 0) {
      const int err = errno;
      abandon();
      return OsError(err, "fcntl(F_SETFL)", path);
    }
    return std::unique_ptr<File>(
        std::make_unique<PosixFile>(fd, path, access == FileAccess::kReadWrite));
  } catch (...) {
    abandon();
    throw;
  }
}

std::optional<FileIdentity> IdentifyFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

Status RemoveFile(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return OsError(errno, "remove", path);
  return Status::Ok();
}

}  // namespace vdisk::platform
