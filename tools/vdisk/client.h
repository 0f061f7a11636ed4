// The small client layer over the public VirtDisk API that every command uses: owners of
// handles and buffers, opening a disk by path, GetVirtualDiskInformation with its size
// protocol, and raw sector I/O on an attached disk handle.
#pragma once

#include "platform_api.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace vdisk_tool {

namespace fs = std::filesystem;
using WString = std::basic_string<WCHAR>;

// Raw I/O moves whole logical sectors; 512 bytes is the smallest there is.
inline constexpr std::uint64_t kMinimumSector = 512;

// Owns one HANDLE (CloseHandle on destruction).
class OwnedHandle {
 public:
  OwnedHandle() = default;
  explicit OwnedHandle(HANDLE handle) : handle_(handle) {}
  ~OwnedHandle() { Reset(); }
  OwnedHandle(OwnedHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  OwnedHandle& operator=(OwnedHandle&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;

  HANDLE get() const { return handle_; }
  explicit operator bool() const { return handle_ != nullptr && handle_ != INVALID_HANDLE_VALUE; }
  HANDLE* Receive() {
    Reset();
    return &handle_;
  }
  // Closes now and throws a Failure naming `file` if that fails (a disk handle's close writes
  // its metadata back).
  void Close(const std::string& file);
  void Reset();

 private:
  HANDLE handle_ = nullptr;
};

// The API takes absolute WCHAR paths; the command line gives the system's narrow encoding.
WString ToWide(const fs::path& path);
std::string ToNarrow(const WCHAR* text);
std::string ToNarrow(const WCHAR* text, std::size_t length);
std::string GuidString(const GUID& guid);
bool ParseGuid(const std::string& text, GUID* guid);  // "{...}" or without braces

VIRTUAL_STORAGE_TYPE StorageType(ULONG device);
const char* DeviceName(ULONG device);   // "VHD", "VHDX", "ISO"
const char* SubtypeName(ULONG subtype); // "fixed", "dynamic", "differencing"

enum class OpenMode { kInfoOnly, kReadOnly, kReadWrite };

// OpenVirtualDisk, version 2 parameters, the format detected from the file.
DWORD TryOpen(const fs::path& path, OpenMode mode, OwnedHandle* disk,
              OPEN_VIRTUAL_DISK_FLAG flags = OPEN_VIRTUAL_DISK_FLAG_NONE);
// The same, throwing a Failure that names the file.
OwnedHandle OpenDisk(const fs::path& path, OpenMode mode,
                     OPEN_VIRTUAL_DISK_FLAG flags = OPEN_VIRTUAL_DISK_FLAG_NONE);

// One GetVirtualDiskInformation reply, in storage aligned for the struct.
class InfoReply {
 public:
  const GET_VIRTUAL_DISK_INFO& operator*() const {
    return *reinterpret_cast<const GET_VIRTUAL_DISK_INFO*>(storage_.data());
  }
  const GET_VIRTUAL_DISK_INFO* operator->() const { return &**this; }
  std::size_t size() const { return used_; }

 private:
  friend DWORD QueryInfo(HANDLE disk, GET_VIRTUAL_DISK_INFO_VERSION version, InfoReply* reply);
  std::vector<std::uint64_t> storage_;
  std::size_t used_ = 0;
};
// Asks, and asks again with the size the reply names (ERROR_INSUFFICIENT_BUFFER).
DWORD QueryInfo(HANDLE disk, GET_VIRTUAL_DISK_INFO_VERSION version, InfoReply* reply);
InfoReply Query(HANDLE disk, GET_VIRTUAL_DISK_INFO_VERSION version, const std::string& file);

struct Geometry {
  std::uint64_t virtual_size = 0;
  std::uint64_t sector_size = kMinimumSector;
  std::uint64_t block_size = 0;
};
Geometry GeometryOf(HANDLE disk, const std::string& file);

// A 1 MiB buffer aligned for unbuffered I/O.
class WorkBuffer {
 public:
  static constexpr std::size_t kSize = std::size_t{1} << 20;
  static constexpr std::size_t kAlignment = 4096;
  WorkBuffer();
  std::span<std::byte> first(std::size_t count) const { return {bytes_.get(), count}; }
  std::size_t size() const { return kSize; }

 private:
  struct Release {
    void operator()(std::byte* bytes) const;
  };
  std::unique_ptr<std::byte, Release> bytes_;
};

bool AllZero(std::span<const std::byte> bytes);

// A disk opened and attached with ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST: raw sector I/O on its
// handle through ReadFile/WriteFile with an OVERLAPPED offset.
class RawDisk {
 public:
  RawDisk(const fs::path& path, bool writable, OPEN_VIRTUAL_DISK_FLAG flags = OPEN_VIRTUAL_DISK_FLAG_NONE);
  const Geometry& geometry() const { return geometry_; }
  const std::string& name() const { return name_; }
  HANDLE handle() const { return disk_.get(); }
  // Throws a UsageError when the range is not sector-aligned or runs past the end.
  void CheckRange(std::uint64_t offset, std::uint64_t length) const;
  void Read(std::uint64_t offset, std::span<std::byte> buffer);
  void Write(std::uint64_t offset, std::span<const std::byte> buffer);
  void Close();

 private:
  void Transfer(std::uint64_t offset, std::byte* data, std::size_t length, bool write);
  std::string name_;
  OwnedHandle disk_;
  OwnedHandle event_;
  Geometry geometry_;
};

// A range of a virtual disk and whether it holds data.
struct DiskRange {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool data = true;        // false: reads as zeros (unallocated, or allocated as zeros)
  bool allocated = true;   // held by a file of the chain (data or zero blocks)
  unsigned depth = 0;      // which file: 0 the opened one, 1 its parent, ...
  std::uint64_t file_offset = 0;
  bool file_offset_known = false;
};
// The disk's ranges (libvirtdisk's VirtDiskGetAllocatedRanges; elsewhere one data range for
// the whole disk).
std::vector<DiskRange> AllocatedRanges(HANDLE disk, std::uint64_t size, const std::string& file);

}  // namespace vdisk_tool
