#include <exception>
#include <random>
#include <string>

#include "platform/random.h"

namespace vdisk::platform {

Status FillRandom(std::span<std::byte> out) {
  try {
    // mingw-w64's random_device is rand_s, which is RtlGenRandom: the system's cryptographic
    // generator (as socket_win32.cpp's control-channel secret uses it).
    std::random_device random;
    for (std::byte& b : out) b = static_cast<std::byte>(random() & 0xFF);
  } catch (const std::exception& e) {
    return Status(Code::kIoError, std::string("the system's random generator failed: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace vdisk::platform
