// Call tracing (VIRTDISK_TRACE=1 logs to stderr, any other value is a file to append to) and
// the calling thread's last failure message.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

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

// One argument of a trace line: a handle or pointer in hex, a flags or version enum in hex, a
// count in decimal, text as it is. A WCHAR string must be passed through Quote (or it would print
// as a pointer).
inline std::string TraceArg(const void* pointer) { return Hex(pointer); }
inline std::string TraceArg(const char* text) { return text; }
inline std::string TraceArg(std::string text) { return text; }
std::string TraceArg(PCWSTR text) = delete;
template <typename Enum>
requires std::is_enum_v<Enum> std::string TraceArg(Enum value) { return Hex(Raw(value)); }
template <typename Number>
requires std::is_integral_v<Number> std::string TraceArg(Number value) {
  return std::to_string(value);
}

// The arguments of a trace line, joined with ", ".
template <typename... Args>
std::string TraceArgs(const Args&... args) {
  std::string text;
  bool first = true;
  ((text += first ? "" : ", ", first = false, text += TraceArg(args)), ...);
  return text;
}

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
