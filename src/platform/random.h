// Random bytes from the operating system's cryptographic generator: what secrets (an attached
// disk's TLS key or export name) are made of.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "base/status.h"

namespace vdisk::platform {

// Fills `out` from getrandom(2) on Linux, rand_s (RtlGenRandom) on Windows.
Status FillRandom(std::span<std::byte> out);

// `bytes` random bytes as lowercase hex (2 * bytes characters).
Result<std::string> RandomHex(std::size_t bytes);

}  // namespace vdisk::platform
