// The non-SDK entry points of libvirtdisk.so (include/virtdisk/extensions.h): the calling
// thread's failure sentence, a disk's allocated ranges, the structural check of an image file,
// and the user's attachments with what the attach registry records of each. Linux only: VirtDisk.dll's export table is exactly the SDK's (exports.def), so nothing
// here is built for Windows.
#ifndef _WIN32

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <virtdisk/extensions.h>

#include "api/abi.h"
#include "api/disk_api_support.h"
#include "api/error_map.h"
#include "api/strings.h"
#include "api/trace.h"
#include "attach/attach_registry.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_check.h"
#include "formats/vhdx/vhdx_check.h"

namespace vdisk::api {
namespace {

DWORD AllocatedRangesImpl(HANDLE handle, ULONG64 offset, ULONG64 length,
                          VIRTDISK_ALLOCATED_RANGE* ranges, PULONG count) {
  if (count == nullptr || (ranges == nullptr && *count != 0)) return ERROR_INVALID_PARAMETER;
  DWORD error = ERROR_SUCCESS;
  auto handle_disk = LookupDisk(handle, &error);
  if (!handle_disk) return error;
  if (!handle_disk->Allows(VIRTUAL_DISK_ACCESS_GET_INFO)) return ERROR_ACCESS_DENIED;
  const auto disk = handle_disk->disk();
  const std::uint64_t size = disk->size();
  if (offset > size || length > size - offset) {
    return Fail(Status(Code::kInvalidParameter,
                       "the range " + std::to_string(offset) + "+" + std::to_string(length) +
                           " runs past the end of the disk (" + std::to_string(size) + " bytes)"));
  }
  const ULONG room = *count;
  ULONG written = 0;
  auto add = [&](const VIRTDISK_ALLOCATED_RANGE& range) {
    if (written > 0) {
      VIRTDISK_ALLOCATED_RANGE& last = ranges[written - 1];
      const bool contiguous = last.Kind != VIRTDISK_RANGE_DATA ||
                              last.FileOffset + last.Length == range.FileOffset;
      if (last.Kind == range.Kind && last.Depth == range.Depth && contiguous) {
        last.Length += range.Length;
        return true;
      }
    }
    if (written == room) return false;
    ranges[written++] = range;
    return true;
  };
  const auto& chain = disk->chain();
  for (std::uint64_t at = offset; at < offset + length;) {
    std::uint64_t want = offset + length - at;
    VIRTDISK_ALLOCATED_RANGE range{};
    range.Offset = at;
    range.Kind = VIRTDISK_RANGE_UNALLOCATED;
    // The first layer that holds the range decides; each layer may shorten it.
    for (std::size_t depth = 0; depth < chain.size(); ++depth) {
      const auto extent = chain[depth]->Map(at, want);
      if (!extent.ok()) return Fail(extent.status());
      want = std::min(want, extent->length);
      if (extent->kind == Extent::Kind::kParent) continue;
      range.Depth = static_cast<ULONG>(depth);
      if (extent->kind == Extent::Kind::kData) {
        range.Kind = VIRTDISK_RANGE_DATA;
        range.FileOffset = extent->file_offset;
      } else {
        range.Kind = VIRTDISK_RANGE_ZERO;
      }
      break;
    }
    range.Length = want;
    if (!add(range)) {
      *count = written;
      return ERROR_MORE_DATA;
    }
    at += want;
  }
  *count = written;
  return ERROR_SUCCESS;
}

DWORD CheckImageImpl(PCWSTR path, ULONG flags, VIRTDISK_CHECK_CALLBACK callback, void* context) {
  if (path == nullptr || *path == 0 || callback == nullptr ||
      (flags & ~ULONG{VIRTDISK_CHECK_FLAG_REPAIR}) != 0) {
    return ERROR_INVALID_PARAMETER;
  }
  auto report = [&](CheckFinding::Kind kind, const std::string& message, std::uint64_t bytes) {
    const ULONG severity = kind == CheckFinding::Kind::kCorruption ? VIRTDISK_CHECK_CORRUPTION
                           : kind == CheckFinding::Kind::kLeak     ? VIRTDISK_CHECK_LEAK
                                                                   : VIRTDISK_CHECK_NOTE;
    callback(context, severity, bytes, message.c_str());
  };
  DiskOpenRequest request;
  request.path = ToPath(path);
  // A file that cannot be opened at all (missing, a directory, no permission) is not checked.
  std::error_code ec;
  if (!std::filesystem::exists(request.path, ec)) {
    return Fail(Status(Code::kFileNotFound, request.path.string() + ": no such file"));
  }
  if (std::filesystem::is_directory(request.path, ec)) {
    return Fail(Status(Code::kDirectory, request.path.string() + " is a directory"));
  }
  if ((flags & VIRTDISK_CHECK_FLAG_REPAIR) != 0) {
    // A read-write open rewrites a damaged redundant copy and replays the log; closing flushes.
    DiskOpenRequest writable = request;
    writable.options.read_only = false;
    writable.no_parents = true;
    auto opened = VirtualDisk::Open(BuiltinProviders(), writable);
    if (opened.ok()) {
      // A writer's first write begins its session, which rewrites a damaged VHDX header (the
      // spec's header update) and a damaged VHD footer copy: rewrite the first sector that holds
      // data with its own bytes (or, on a disk without data, the first sector, as zeros).
      VirtualDisk& disk = **opened;
      std::uint64_t at = 0;
      for (std::uint64_t offset = 0; offset < disk.size();) {
        auto extent = disk.top().Map(offset, disk.size() - offset);
        if (!extent.ok()) return Fail(extent.status());
        if (extent->kind == Extent::Kind::kData) {
          at = offset;
          break;
        }
        offset += extent->length;
      }
      std::vector<std::byte> sector(disk.sector_size());
      Status status = disk.Read(at, sector);
      if (status.ok()) status = disk.Write(at, sector);
      if (status.ok()) status = disk.Flush();
      if (!status.ok()) return Fail(status);
      report(CheckFinding::Kind::kNote,
             "repair: opened read-write and rewrote the sector at offset " + std::to_string(at) +
                 " with its own bytes",
             0);
    }
  }
  // The file alone first: a failure here is damage to the file itself.
  request.no_parents = true;
  auto alone = VirtualDisk::Open(BuiltinProviders(), request);
  if (!alone.ok()) {
    const Code code = alone.status().code();
    if (code == Code::kAccessDenied || code == Code::kSharingViolation ||
        code == Code::kNotEnoughMemory) {
      return Fail(alone.status());
    }
    report(CheckFinding::Kind::kCorruption, std::string(alone.status().message()), 0);
    return ERROR_SUCCESS;
  }
  const Image& top = (*alone)->top();
  CheckFindings findings;
  if (top.format() == DiskFormat::kVhd) {
    findings = vhd::CheckVhdStructures(top);
  } else if (top.format() == DiskFormat::kVhdx) {
    findings = vhdx::CheckVhdxStructures(top);
  }
  for (const auto& finding : findings) report(finding.kind, finding.message, finding.bytes);
  // Then the parent link: the chain must open, each parent matching its child's record.
  if (top.parent()) {
    alone->reset();
    request.no_parents = false;
    auto chain = VirtualDisk::Open(BuiltinProviders(), request);
    if (!chain.ok()) {
      report(CheckFinding::Kind::kCorruption,
             "parent link: " + std::string(chain.status().message()), 0);
    }
  }
  return ERROR_SUCCESS;
}

DWORD EnumerateAttachmentsImpl(VIRTDISK_ATTACHMENT_CALLBACK callback, void* context) {
  if (callback == nullptr) return ERROR_INVALID_PARAMETER;
  auto registry = attach::AttachRegistry::ForCurrentUser();
  if (!registry.ok()) return Fail(registry.status());
  auto records = registry->List();
  if (!records.ok()) return Fail(records.status());
  for (const auto& record : *records) {
    const auto disk_path = ToWide(record.disk_path.string());
    const auto uri = ToWide(record.uri);
    VIRTDISK_ATTACHMENT attachment{};
    attachment.DiskPath = disk_path.c_str();
    attachment.PhysicalPath = uri.c_str();
    if (record.read_only) attachment.Flags |= VIRTDISK_ATTACHMENT_FLAG_READ_ONLY;
    if (record.permanent) attachment.Flags |= VIRTDISK_ATTACHMENT_FLAG_PERMANENT;
    attachment.ProcessId = record.server.pid;
    callback(context, &attachment);
  }
  return ERROR_SUCCESS;
}

}  // namespace
}  // namespace vdisk::api

using vdisk::api::ExportCall;
using vdisk::api::Hex;

extern "C" {

VIRTDISK_API const char* VirtDiskGetLastFailureMessage(void) {
  return vdisk::api::LastFailureMessage();
}

VIRTDISK_API DWORD WINAPI VirtDiskGetAllocatedRanges(HANDLE VirtualDiskHandle, ULONG64 Offset,
                                                     ULONG64 Length,
                                                     VIRTDISK_ALLOCATED_RANGE* Ranges,
                                                     PULONG RangeCount) {
  return ExportCall(
      "VirtDiskGetAllocatedRanges",
      [&] {
        return vdisk::api::AllocatedRangesImpl(VirtualDiskHandle, Offset, Length, Ranges,
                                               RangeCount);
      },
      [&] {
        return std::string(Hex(VirtualDiskHandle) + ", " +
                           std::to_string(Offset) + ", " + std::to_string(Length));
      });
}

VIRTDISK_API DWORD WINAPI VirtDiskCheckImage(PCWSTR Path, ULONG Flags,
                                             VIRTDISK_CHECK_CALLBACK Callback, void* Context) {
  return ExportCall(
      "VirtDiskCheckImage",
      [&] { return vdisk::api::CheckImageImpl(Path, Flags, Callback, Context); },
      [&] { return std::string(vdisk::api::Quote(Path) + ", " + Hex(Flags)); });
}

VIRTDISK_API DWORD WINAPI VirtDiskEnumerateAttachments(VIRTDISK_ATTACHMENT_CALLBACK Callback,
                                                       void* Context) {
  return ExportCall(
      "VirtDiskEnumerateAttachments",
      [&] { return vdisk::api::EnumerateAttachmentsImpl(Callback, Context); },
      [&] { return std::string(); });
}

}  // extern "C"

#endif  // _WIN32
