#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "platform/random.h"

namespace vdisk::platform {

Status FillRandom(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return Status(Code::kIoError, std::string("getrandom: ") + std::strerror(err), err);
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

}  // namespace vdisk::platform
