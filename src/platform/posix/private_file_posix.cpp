#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "platform/file.h"
#include "platform/private_file.h"

namespace vdisk::platform {

Status CreatePrivateDirectory(const std::filesystem::path& path) {
  if (::mkdir(path.c_str(), 0700) != 0) return OsError(errno, "mkdir", path);
  // mkdir applies the umask, which can only narrow 0700; chmod makes it exactly 0700.
  if (::chmod(path.c_str(), 0700) != 0) {
    const int err = errno;
    ::rmdir(path.c_str());
    return OsError(err, "chmod 0700", path);
  }
  return Status::Ok();
}

Status WritePrivateFile(const std::filesystem::path& path, std::string_view text) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return OsError(errno, "create", path);
  Status status;
  if (::fchmod(fd, 0600) != 0) status = OsError(errno, "chmod 0600", path);
  for (std::size_t done = 0; status.ok() && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = OsError(errno, "write", path);
    } else {
      done += static_cast<std::size_t>(n);
    }
  }
  if (::close(fd) != 0 && status.ok()) status = OsError(errno, "close", path);
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

}  // namespace vdisk::platform
