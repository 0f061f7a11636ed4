#include "api/overlapped.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace vdisk::api {
namespace {

constexpr ULONG_PTR kStatusSuccess = 0;
constexpr ULONG_PTR kStatusPending = 0x103u;
constexpr ULONG_PTR kStatusCancelled = 0xC0000120u;
constexpr ULONG_PTR kFacilityWin32 = 0xC0070000u;

std::mutex& CompletionMutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::condition_variable& CompletionSignal() {
  static auto* cv = new std::condition_variable;
  return *cv;
}

std::atomic_ref<ULONG_PTR> InternalOf(const OVERLAPPED* overlapped) {
  return std::atomic_ref<ULONG_PTR>(const_cast<OVERLAPPED*>(overlapped)->Internal);
}

}  // namespace

ULONG_PTR ToNtStatus(DWORD error) noexcept {
  if (error == ERROR_SUCCESS) return kStatusSuccess;
  if (error == ERROR_OPERATION_ABORTED) return kStatusCancelled;
  if ((error & 0xC0000000u) == 0xC0000000u) return error;
  return kFacilityWin32 | (error & 0xFFFFu);
}

DWORD FromNtStatus(ULONG_PTR status) noexcept {
  const auto value = static_cast<DWORD>(status);
  if (value == kStatusSuccess) return ERROR_SUCCESS;
  if (value == kStatusPending) return ERROR_IO_INCOMPLETE;
  if (value == kStatusCancelled) return ERROR_OPERATION_ABORTED;
  if ((value & 0xFFFF0000u) == kFacilityWin32) return value & 0xFFFFu;
  return value;
}

void MarkPending(OVERLAPPED* overlapped) noexcept {
  overlapped->InternalHigh = 0;
  InternalOf(overlapped).store(kStatusPending, std::memory_order_release);
}

bool IsComplete(const OVERLAPPED* overlapped) noexcept {
  return InternalOf(overlapped).load(std::memory_order_acquire) != kStatusPending;
}

void CompleteOverlapped(OVERLAPPED* overlapped, DWORD error, DWORD bytes,
                        const std::shared_ptr<KernelObject>& port, ULONG_PTR key) noexcept {
  const HANDLE event = overlapped->hEvent;
  const bool skip_port = (reinterpret_cast<ULONG_PTR>(event) & 1) != 0;
  const HANDLE real_event =
      reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(event) & ~static_cast<ULONG_PTR>(1));
  overlapped->InternalHigh = bytes;
  {
    std::lock_guard lock(CompletionMutex());
    InternalOf(overlapped).store(ToNtStatus(error), std::memory_order_release);
  }
  // From here on the caller may reuse or free *overlapped: touch only the copies above.
  if (real_event != nullptr) SetEvent(real_event);
  CompletionSignal().notify_all();
  if (port && !skip_port) PostToPort(*port, bytes, key, overlapped);
}

void WaitForCompletion(const OVERLAPPED* overlapped) noexcept {
  std::unique_lock lock(CompletionMutex());
  CompletionSignal().wait(lock, [&] { return IsComplete(overlapped); });
}

}  // namespace vdisk::api
