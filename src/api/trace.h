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
// A handle or pointer, in hex (as the traces name disk handles).
std::string Hex(const void* pointer);
std::string Quote(PCWSTR text);

enum class TraceWhen { kAlways, kOnFailure };

// Every export runs through this, the C boundary: it clears the thread's last failure message,
// runs `body` (an exception becomes ERROR_NOT_ENOUGH_MEMORY or ERROR_INTERNAL_ERROR, see
// GuardedCall) and, only when tracing is on, builds the argument text with `args()` and logs
// "name(args) -> result [reason]". Nothing thrown leaves it.
template <typename Body, typename Args>
DWORD ExportCall(const char* name, Body&& body, Args&& args,
                 TraceWhen when = TraceWhen::kAlways) noexcept {
  ClearLastFailureMessage();
  const DWORD result = GuardedCall(name, std::forward<Body>(body));
  if (TraceEnabled() && (when == TraceWhen::kAlways || result != ERROR_SUCCESS)) {
    try {
      TraceCall(name, args(), result);
    } catch (...) {
      TraceLine(name);  // the arguments could not be formatted; the call is still logged
    }
  }
  return result;
}

}  // namespace vdisk::api
