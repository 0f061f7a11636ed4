// OVERLAPPED completion as Windows does it: Internal holds an NTSTATUS (STATUS_PENDING while the
// request runs), InternalHigh the byte count; then the event is set and, if the handle is bound
// to an I/O completion port, a packet is queued (unless the event's low bit is set).
#pragma once

#include <memory>

#include "api/abi.h"
#include "api/handle_table.h"

namespace vdisk::api {

// NTSTATUS <-> Win32 for OVERLAPPED.Internal. Win32 codes that are already NTSTATUS-shaped
// (ERROR_VHD_* = 0xC03A....) are stored as they are; cancellation is STATUS_CANCELLED.
ULONG_PTR ToNtStatus(DWORD error) noexcept;
DWORD FromNtStatus(ULONG_PTR status) noexcept;

void MarkPending(OVERLAPPED* overlapped) noexcept;
// REQUIRES: overlapped was marked pending. `port` may be null.
void CompleteOverlapped(OVERLAPPED* overlapped, DWORD error, DWORD bytes,
                        const std::shared_ptr<KernelObject>& port, ULONG_PTR key) noexcept;
bool IsComplete(const OVERLAPPED* overlapped) noexcept;
// Blocks until `overlapped` completes (used when it has no event).
void WaitForCompletion(const OVERLAPPED* overlapped) noexcept;

// An I/O completion port (Linux). Defined in kernel32_posix.cpp.
class CompletionPortObject;
void PostToPort(KernelObject& port, DWORD bytes, ULONG_PTR key, OVERLAPPED* overlapped) noexcept;

}  // namespace vdisk::api
