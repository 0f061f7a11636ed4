// The one place where a core Status becomes a Win32 error code.
#pragma once

#include "api/abi.h"
#include "base/status.h"

namespace vdisk::api {

DWORD ToWin32Error(Code code) noexcept;
// Records `status` as the calling thread's last failure (for tracing and tools) and returns
// its Win32 code.
DWORD Fail(const Status& status) noexcept;

}  // namespace vdisk::api
