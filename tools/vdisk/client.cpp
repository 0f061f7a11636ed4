#ifdef _WIN32
#include <initguid.h>  // defines the SDK's GUIDs in this one file
#endif
#include "client.h"

#include <fmt/format.h>

#include <cstring>
#include <new>

#include "errors.h"
#include "options.h"

#if !defined(_WIN32)
#include <virtdisk/extensions.h>
#endif

namespace vdisk_tool {

void OwnedHandle::Close(const std::string& file) {
  HANDLE handle = std::exchange(handle_, nullptr);
  if (handle != nullptr && handle != INVALID_HANDLE_VALUE && !CloseHandle(handle)) {
    Fail(GetLastError(), file, "closing the disk");
  }
}

void OwnedHandle::Reset() {
  if (handle_ != nullptr && handle_ != INVALID_HANDLE_VALUE) CloseHandle(handle_);
  handle_ = nullptr;
}

WString ToWide(const fs::path& path) {
  const std::wstring wide = fs::absolute(path).wstring();
  return WString(wide.begin(), wide.end());
}

std::string ToNarrow(const WCHAR* text, std::size_t length) {
  const std::wstring wide(text, text + length);
  try {
    return fs::path(wide).string();
  } catch (const std::exception&) {
    std::string out;  // not representable: keep ASCII, mark the rest
    for (const wchar_t c : wide) out.push_back(c < 0x80 ? static_cast<char>(c) : '?');
    return out;
  }
}

std::string ToNarrow(const WCHAR* text) {
  return ToNarrow(text, std::char_traits<WCHAR>::length(text));
}

std::string GuidString(const GUID& guid) {
  return fmt::format("{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     static_cast<unsigned long>(guid.Data1), guid.Data2, guid.Data3,
                     guid.Data4[0], guid.Data4[1], guid.Data4[2], guid.Data4[3], guid.Data4[4],
                     guid.Data4[5], guid.Data4[6], guid.Data4[7]);
}

bool ParseGuid(const std::string& text, GUID* guid) {
  std::string hex;
  for (const char c : text) {
    if (c == '{' || c == '}' || c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    hex.push_back(c);
  }
  if (hex.size() != 32) return false;
  const auto value = [&](std::size_t at, std::size_t digits) {
    return std::stoull(hex.substr(at, digits), nullptr, 16);
  };
  guid->Data1 = static_cast<decltype(guid->Data1)>(value(0, 8));
  guid->Data2 = static_cast<unsigned short>(value(8, 4));
  guid->Data3 = static_cast<unsigned short>(value(12, 4));
  for (std::size_t i = 0; i < 8; ++i) guid->Data4[i] = static_cast<unsigned char>(value(16 + 2 * i, 2));
  return true;
}

VIRTUAL_STORAGE_TYPE StorageType(ULONG device) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = device;
  if (device != VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN) {
    const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
    type.VendorId = microsoft;
  }
  return type;
}

const char* DeviceName(ULONG device) {
  switch (device) {
    case VIRTUAL_STORAGE_TYPE_DEVICE_ISO:
      return "ISO";
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHD:
      return "VHD";
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHDX:
      return "VHDX";
    case VIRTUAL_STORAGE_TYPE_DEVICE_VHDSET:
      return "VHD Set";
    default:
      return "unknown";
  }
}

const char* SubtypeName(ULONG subtype) {
  switch (subtype) {
    case 2:
      return "fixed";
    case 3:
      return "dynamic";
    case 4:
      return "differencing";
    default:
      return "unknown";
  }
}

DWORD TryOpen(const fs::path& path, OpenMode mode, OwnedHandle* disk, OPEN_VIRTUAL_DISK_FLAG flags) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN);
  OPEN_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.GetInfoOnly = mode == OpenMode::kInfoOnly ? TRUE : FALSE;
  parameters.Version2.ReadOnly = mode == OpenMode::kReadWrite ? FALSE : TRUE;
  const WString wide = ToWide(path);
  return OpenVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, flags, &parameters,
                         disk->Receive());
}

OwnedHandle OpenDisk(const fs::path& path, OpenMode mode, OPEN_VIRTUAL_DISK_FLAG flags) {
  OwnedHandle disk;
  Check(TryOpen(path, mode, &disk, flags), path.string(),
        mode == OpenMode::kReadWrite ? "opening read-write" : "opening");
  return disk;
}

DWORD QueryInfo(HANDLE disk, GET_VIRTUAL_DISK_INFO_VERSION version, InfoReply* reply) {
  ULONG size = sizeof(GET_VIRTUAL_DISK_INFO);
  for (int attempt = 0; attempt < 4; ++attempt) {
    reply->storage_.assign((size + sizeof(std::uint64_t) - 1) / sizeof(std::uint64_t) + 1, 0);
    auto* info = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(reply->storage_.data());
    info->Version = version;
    const ULONG offered = size;
    ULONG used = 0;
    const DWORD error = GetVirtualDiskInformation(disk, &size, info, &used);
    if (error == ERROR_INSUFFICIENT_BUFFER && size > offered) continue;
    reply->used_ = used != 0 ? used : size;
    return error;
  }
  return ERROR_INSUFFICIENT_BUFFER;
}

InfoReply Query(HANDLE disk, GET_VIRTUAL_DISK_INFO_VERSION version, const std::string& file) {
  InfoReply reply;
  Check(QueryInfo(disk, version, &reply), file,
        fmt::format("GetVirtualDiskInformation (version {})", static_cast<int>(version)));
  return reply;
}

Geometry GeometryOf(HANDLE disk, const std::string& file) {
  const InfoReply reply = Query(disk, GET_VIRTUAL_DISK_INFO_SIZE, file);
  Geometry geometry;
  geometry.virtual_size = reply->Size.VirtualSize;
  geometry.block_size = reply->Size.BlockSize;
  if (reply->Size.SectorSize != 0) geometry.sector_size = reply->Size.SectorSize;
  return geometry;
}

WorkBuffer::WorkBuffer()
    : bytes_(static_cast<std::byte*>(::operator new (kSize, std::align_val_t{kAlignment}))) {}

void WorkBuffer::Release::operator()(std::byte* bytes) const {
  ::operator delete (bytes, std::align_val_t{kAlignment});
}

bool AllZero(std::span<const std::byte> bytes) {
  return bytes.empty() || (bytes[0] == std::byte{0} &&
                           std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
}

RawDisk::RawDisk(const fs::path& path, bool writable, OPEN_VIRTUAL_DISK_FLAG flags)
    : name_(path.string()) {
  disk_ = OpenDisk(path, writable ? OpenMode::kReadWrite : OpenMode::kReadOnly, flags);
  ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ATTACH_VIRTUAL_DISK_FLAG attach = ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST;
  if (!writable) attach = attach | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY;
  Check(AttachVirtualDisk(disk_.get(), nullptr, attach, 0, &parameters, nullptr), name_,
        "attaching for raw I/O (NO_LOCAL_HOST)");
  geometry_ = GeometryOf(disk_.get(), name_);
  event_ = OwnedHandle(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  if (!event_) Fail(GetLastError(), name_, "CreateEventW");
}

void RawDisk::CheckRange(std::uint64_t offset, std::uint64_t length) const {
  const std::uint64_t sector = geometry_.sector_size;
  if (offset % sector != 0 || length % sector != 0) {
    throw UsageError(fmt::format(
        "{}: offset and length must be multiples of the logical sector size ({} bytes)", name_,
        sector));
  }
  if (offset > geometry_.virtual_size || length > geometry_.virtual_size - offset) {
    throw UsageError(fmt::format("{}: the range {}+{} runs past the end (virtual size {})", name_,
                                 offset, length, Bytes(geometry_.virtual_size)));
  }
}

void RawDisk::Read(std::uint64_t offset, std::span<std::byte> buffer) {
  Transfer(offset, buffer.data(), buffer.size(), false);
}

void RawDisk::Write(std::uint64_t offset, std::span<const std::byte> buffer) {
  Transfer(offset, const_cast<std::byte*>(buffer.data()), buffer.size(), true);
}

void RawDisk::Close() {
  event_.Reset();
  disk_.Close(name_);
}

void RawDisk::Transfer(std::uint64_t offset, std::byte* data, std::size_t length, bool write) {
  const auto what = [&] {
    return fmt::format("{} of {} bytes at offset {}", write ? "writing" : "reading", length, offset);
  };
  OVERLAPPED overlapped{};
  overlapped.Offset = static_cast<DWORD>(offset);
  overlapped.OffsetHigh = static_cast<DWORD>(offset >> 32);
  overlapped.hEvent = event_.get();
  ResetEvent(event_.get());
  DWORD done = 0;
  const DWORD count = static_cast<DWORD>(length);
  const BOOL ok = write ? WriteFile(disk_.get(), data, count, &done, &overlapped)
                        : ReadFile(disk_.get(), data, count, &done, &overlapped);
  if (!ok) {
    const DWORD error = GetLastError();
    if (error != ERROR_IO_PENDING) Fail(error, name_, what());
    if (!GetOverlappedResult(disk_.get(), &overlapped, &done, TRUE)) Fail(GetLastError(), name_, what());
  }
  if (done != count) Fail(ERROR_HANDLE_EOF, name_, what() + fmt::format(": only {} moved", done));
}

std::vector<DiskRange> AllocatedRanges(HANDLE disk, std::uint64_t size, const std::string& file) {
  std::vector<DiskRange> out;
#if defined(_WIN32)
  (void)disk;
  (void)file;
  out.push_back({0, size, true, true, 0, 0, false});
#else
  std::vector<VIRTDISK_ALLOCATED_RANGE> ranges(4096);
  for (std::uint64_t at = 0; at < size;) {
    ULONG count = static_cast<ULONG>(ranges.size());
    const DWORD error = VirtDiskGetAllocatedRanges(disk, at, size - at, ranges.data(), &count);
    if (error != ERROR_SUCCESS && error != ERROR_MORE_DATA) {
      Fail(error, file, "VirtDiskGetAllocatedRanges");
    }
    for (ULONG i = 0; i < count; ++i) {
      const auto& range = ranges[i];
      DiskRange item;
      item.offset = range.Offset;
      item.length = range.Length;
      item.data = range.Kind == VIRTDISK_RANGE_DATA;
      item.allocated = range.Kind != VIRTDISK_RANGE_UNALLOCATED;
      item.depth = range.Depth;
      item.file_offset = range.FileOffset;
      item.file_offset_known = item.data;
      out.push_back(item);
      at = range.Offset + range.Length;
    }
    if (count == 0) break;
  }
#endif
  return out;
}

}  // namespace vdisk_tool
