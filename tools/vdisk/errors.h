// How vdisk fails: the exit codes, and the errors that carry a file, a Win32 code, its name and
// the library's reason sentence.
#pragma once

#include "platform_api.h"

#include <optional>
#include <stdexcept>
#include <string>

namespace vdisk_tool {

// Exit codes (docs/vdisk.1 lists them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;         // the operation failed
inline constexpr int kExitCheckCorrupt = 2;    // check: corruption found
inline constexpr int kExitCheckLeaks = 3;      // check: leaked space only
inline constexpr int kExitCompareDiffer = 1;   // compare: the disks differ
inline constexpr int kExitCompareError = 2;    // compare: it could not compare
inline constexpr int kExitUsage = 64;          // a command line vdisk cannot act on (EX_USAGE)
inline constexpr int kExitSignalBase = 128;    // 128 + the signal that interrupted (130: SIGINT)

// A failed step on a file. `code` is the Win32 error when a call returned one; `reason` the
// library's sentence for it (captured right after the call, before any other call replaces it).
class Failure : public std::runtime_error {
 public:
  Failure(std::string file, std::string what, std::optional<DWORD> code = std::nullopt,
          std::string reason = {});
  const std::string& file() const { return file_; }
  const std::optional<DWORD>& code() const { return code_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string file_;
  std::optional<DWORD> code_;
  std::string reason_;
};

// A command line vdisk cannot act on.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "ERROR_INVALID_PARAMETER", or "error 0x...": the name of a Win32 code.
std::string ErrorName(DWORD code);

// The library's reason sentence for the calling thread's last failed call ("" when it has none
// or the library offers none, e.g. Microsoft's VirtDisk.dll).
std::string LastReason();

// Throws Failure(file, what, error, LastReason()) unless error is ERROR_SUCCESS.
void Check(DWORD error, const std::string& file, const std::string& what);
[[noreturn]] void Fail(DWORD error, const std::string& file, const std::string& what);

// "vdisk: FILE: ERROR_NAME (87): reason" on stderr.
void Report(const Failure& failure);

}  // namespace vdisk_tool
