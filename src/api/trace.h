// Call tracing (VIRTDISK_TRACE=1 logs to stderr, any other value is a file to append to) and
// the calling thread's last failure message.
#pragma once

#include <string>
#include <string_view>

#include "api/abi.h"

namespace vdisk::api {

bool TraceEnabled() noexcept;
// Writes one line "virtdisk: <text>" when tracing is on.
void TraceLine(std::string_view text) noexcept;
// "Name(args) -> result [message]" for an export that returned `result`.
void TraceCall(const char* name, const std::string& args, DWORD result) noexcept;

void SetLastFailureMessage(std::string_view message) noexcept;
void ClearLastFailureMessage() noexcept;
const char* LastFailureMessage() noexcept;

std::string Hex(unsigned long long value);
std::string Quote(PCWSTR text);

}  // namespace vdisk::api
