// Status and Result: how every core operation reports success or failure.
//
// A Status is cheap when OK (one enum, no allocation) and carries a message with context (file,
// offset, structure) when not. It keeps the semantic code, which src/api maps to a Win32 error in
// one place (src/api/error_map.cpp), and the original OS error (errno on POSIX, GetLastError on
// Windows) beside it, so that nothing about the cause is lost on the way up.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace vdisk {

// Semantic error codes. Names follow the Windows error each one becomes; see error_map.cpp.
enum class Code : std::uint16_t {
  kOk = 0,
  kInvalidParameter,   // a bad argument (ERROR_INVALID_PARAMETER)
  kInvalidHandle,      // not a handle of ours, or closed
  kNotSupported,       // a valid request this disk or provider cannot do
  kFileNotFound,
  kPathNotFound,
  kFileExists,
  kAccessDenied,
  kSharingViolation,   // another open holds the file in a conflicting mode
  kWriteProtect,       // write to a read-only disk or handle
  kNotEnoughMemory,
  kDiskFull,
  kIoError,            // an OS I/O error without a closer match (EIO)
  kInsufficientBuffer,
  kMoreData,
  kIoPending,
  kOperationAborted,
  kInvalidState,       // e.g. raw I/O on a disk that is not attached
  kNotFound,           // no such item (metadata, attachment)
  kFileCorrupt,        // corrupt image without a more specific code
  kDirectory,          // a directory where a file was expected (EISDIR from the OS)
  kNotRegularFile,     // an image path that names a directory, FIFO, socket or device
  kInternal,
  // Virtual disk specific (ERROR_VHD_* / ERROR_VIRTDISK_*).
  kVhdFooterMissing,
  kVhdFooterChecksumMismatch,
  kVhdFooterCorrupt,
  kVhdFormatUnknown,
  kVhdUnsupportedVersion,
  kVhdSparseHeaderChecksumMismatch,
  kVhdSparseHeaderUnsupportedVersion,
  kVhdSparseHeaderCorrupt,
  kVhdBlockAllocationFailure,
  kVhdBlockAllocationTableCorrupt,
  kVhdInvalidBlockSize,
  kVhdBitmapMismatch,
  kVhdParentNotFound,
  kVhdChildParentIdMismatch,
  kVhdChildParentTimestampMismatch,
  kVhdMetadataReadFailure,
  kVhdMetadataWriteFailure,
  kVhdInvalidSize,
  kVhdInvalidFileSize,
  kProviderNotFound,
  kNotVirtualDisk,
  kVhdParentAccessDenied,
  kVhdChildParentSizeMismatch,
  kVhdChainCycle,
  kVhdChainTooDeep,    // more differencing levels than kMaxChainDepth (core/virtual_disk.h)
  kVhdChainErrorInParent,
  kVirtualDiskLimitation,
  kVhdInvalidType,
  kVhdInvalidState,
  kUnsupportedSectorSize,
  kDiskAlreadyOwned,
  kVhdResizeWouldTruncateData,           // a shrink below the partitions' end
  kVhdAlreadyAtOrBelowMinimumVirtualSize,  // RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE with nothing to cut
};

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Code code, std::string message, int os_error = 0)
      : detail_(code == Code::kOk ? nullptr
                                  : std::make_shared<Detail>(Detail{code, os_error,
                                                                    std::move(message)})) {}

  static Status Ok() noexcept { return {}; }

  bool ok() const noexcept { return detail_ == nullptr; }
  explicit operator bool() const noexcept { return ok(); }
  Code code() const noexcept { return detail_ ? detail_->code : Code::kOk; }
  // The OS error behind this status (errno or GetLastError), or 0.
  int os_error() const noexcept { return detail_ ? detail_->os_error : 0; }
  std::string_view message() const noexcept {
    return detail_ ? std::string_view(detail_->message) : std::string_view("ok");
  }
  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return Status(code(), std::string(context) + ": " + detail_->message, os_error());
  }

 private:
  struct Detail {
    Code code;
    int os_error;
    std::string message;
  };
  std::shared_ptr<const Detail> detail_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                  // NOLINT(runtime/explicit)
  Result(Status status) : v_(std::move(status)) {}            // NOLINT(runtime/explicit)

  bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }
  // REQUIRES: !ok()
  const Status& status() const { return std::get<Status>(v_); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

// For a catch (...) block: the exception in flight as a Status, kNotEnoughMemory for
// std::bad_alloc, else kInternal with its what(). Never throws (it allocates nothing for
// std::bad_alloc).
Status StatusFromCurrentException() noexcept;

// Runs `body` (returning Status or a Result) so that nothing thrown leaves it: for the bodies of
// threads and callbacks that have nobody to throw to, and for steps that must be undone when
// they fail.
template <typename Body>
auto CatchAsStatus(Body&& body) noexcept -> std::invoke_result_t<Body&> {
  try {
    return body();
  } catch (...) {
    return StatusFromCurrentException();
  }
}

}  // namespace vdisk

// Returns from the enclosing function if `expr` yields a failed Status.
#define VDISK_RETURN_IF_ERROR(expr)            \
  do {                                         \
    ::vdisk::Status vdisk_status_ = (expr);    \
    if (!vdisk_status_.ok()) return vdisk_status_; \
  } while (0)

#define VDISK_CONCAT_INNER_(a, b) a##b
#define VDISK_CONCAT_(a, b) VDISK_CONCAT_INNER_(a, b)
// Declares `lhs` from a Result, or returns its Status from the enclosing function.
#define VDISK_ASSIGN_OR_RETURN(lhs, expr) \
  VDISK_ASSIGN_OR_RETURN_IMPL_(VDISK_CONCAT_(vdisk_result_, __LINE__), lhs, expr)
#define VDISK_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
