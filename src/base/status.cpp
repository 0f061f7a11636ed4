#include "base/status.h"

#include <exception>
#include <new>

namespace vdisk {
namespace {

// Made before anything can run out of memory, so that reporting it allocates nothing.
const Status& OutOfMemory() noexcept {
  static const Status status(Code::kNotEnoughMemory, "out of memory");
  return status;
}
[[maybe_unused]] const Status& out_of_memory_at_startup = OutOfMemory();

}  // namespace

Status StatusFromCurrentException() noexcept {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return OutOfMemory();
  } catch (const std::exception& e) {
    try {
      return Status(Code::kInternal, std::string("internal error: ") + e.what());
    } catch (...) {
      return OutOfMemory();
    }
  } catch (...) {
    try {
      return Status(Code::kInternal, "internal error: an unknown exception");
    } catch (...) {
      return OutOfMemory();
    }
  }
}

}  // namespace vdisk
