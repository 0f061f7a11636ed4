// vdisk - create, inspect, read, write and export virtual disks from the command line.
//
// A client of the public VirtDisk API and nothing else: it includes only <virtdisk.h> (plus
// <windows.h> on Windows) and the C++ standard library, and calls the functions any Win32
// program would (CreateVirtualDisk, OpenVirtualDisk, AttachVirtualDisk with
// ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, ReadFile/WriteFile with OVERLAPPED offsets,
// GetVirtualDiskInformation). So it builds unchanged against libvirtdisk.so and against
// VirtDisk.dll, ours or Microsoft's.
#ifdef _WIN32
#include <initguid.h>
#include <windows.h>
#endif
#include <virtdisk.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;

using WString = std::basic_string<WCHAR>;

constexpr std::size_t kWorkBufferSize = std::size_t{1} << 20;  // 1 MiB
// Raw I/O on a virtual disk moves whole logical sectors; 512 bytes is the smallest there is.
constexpr std::uint64_t kMinimumSector = 512;
// Buffers are aligned for unbuffered I/O on Windows (FILE_FLAG_NO_BUFFERING rules).
constexpr std::size_t kBufferAlignment = 4096;

// ---------------------------------------------------------------------------------------------
// Errors

// Names of the Win32 codes a VirtDisk client commonly meets.
struct ErrorName {
  DWORD code;
  const char* name;
};
#define VDISK_ERROR_NAME(e) \
  ErrorName { static_cast<DWORD>(e), #e }
const ErrorName kErrorNames[] = {
    VDISK_ERROR_NAME(ERROR_SUCCESS),
    VDISK_ERROR_NAME(ERROR_INVALID_FUNCTION),
    VDISK_ERROR_NAME(ERROR_FILE_NOT_FOUND),
    VDISK_ERROR_NAME(ERROR_PATH_NOT_FOUND),
    VDISK_ERROR_NAME(ERROR_ACCESS_DENIED),
    VDISK_ERROR_NAME(ERROR_INVALID_HANDLE),
    VDISK_ERROR_NAME(ERROR_NOT_ENOUGH_MEMORY),
    VDISK_ERROR_NAME(ERROR_INVALID_DATA),
    VDISK_ERROR_NAME(ERROR_OUTOFMEMORY),
    VDISK_ERROR_NAME(ERROR_WRITE_PROTECT),
    VDISK_ERROR_NAME(ERROR_CRC),
    VDISK_ERROR_NAME(ERROR_SEEK),
    VDISK_ERROR_NAME(ERROR_WRITE_FAULT),
    VDISK_ERROR_NAME(ERROR_READ_FAULT),
    VDISK_ERROR_NAME(ERROR_GEN_FAILURE),
    VDISK_ERROR_NAME(ERROR_SHARING_VIOLATION),
    VDISK_ERROR_NAME(ERROR_LOCK_VIOLATION),
    VDISK_ERROR_NAME(ERROR_HANDLE_EOF),
    VDISK_ERROR_NAME(ERROR_HANDLE_DISK_FULL),
    VDISK_ERROR_NAME(ERROR_NOT_SUPPORTED),
    VDISK_ERROR_NAME(ERROR_DEV_NOT_EXIST),
    VDISK_ERROR_NAME(ERROR_FILE_EXISTS),
    VDISK_ERROR_NAME(ERROR_INVALID_PARAMETER),
    VDISK_ERROR_NAME(ERROR_BROKEN_PIPE),
    VDISK_ERROR_NAME(ERROR_OPEN_FAILED),
    VDISK_ERROR_NAME(ERROR_DISK_FULL),
    VDISK_ERROR_NAME(ERROR_CALL_NOT_IMPLEMENTED),
    VDISK_ERROR_NAME(ERROR_INSUFFICIENT_BUFFER),
    VDISK_ERROR_NAME(ERROR_INVALID_NAME),
    VDISK_ERROR_NAME(ERROR_INVALID_LEVEL),
    VDISK_ERROR_NAME(ERROR_BUSY),
    VDISK_ERROR_NAME(ERROR_ALREADY_EXISTS),
    VDISK_ERROR_NAME(ERROR_FILE_TOO_LARGE),
    VDISK_ERROR_NAME(ERROR_MORE_DATA),
    VDISK_ERROR_NAME(ERROR_OPERATION_ABORTED),
    VDISK_ERROR_NAME(ERROR_IO_INCOMPLETE),
    VDISK_ERROR_NAME(ERROR_IO_PENDING),
    VDISK_ERROR_NAME(ERROR_NOACCESS),
    VDISK_ERROR_NAME(ERROR_INVALID_FLAGS),
    VDISK_ERROR_NAME(ERROR_FILE_INVALID),
    VDISK_ERROR_NAME(ERROR_IO_DEVICE),
    VDISK_ERROR_NAME(ERROR_DEVICE_NOT_CONNECTED),
    VDISK_ERROR_NAME(ERROR_NOT_FOUND),
    VDISK_ERROR_NAME(ERROR_CANCELLED),
    VDISK_ERROR_NAME(ERROR_INTERNAL_ERROR),
    VDISK_ERROR_NAME(ERROR_FILE_CORRUPT),
    VDISK_ERROR_NAME(ERROR_DISK_CORRUPT),
    VDISK_ERROR_NAME(ERROR_TIMEOUT),
    VDISK_ERROR_NAME(ERROR_INVALID_STATE),
    VDISK_ERROR_NAME(ERROR_VHD_DRIVE_FOOTER_MISSING),
    VDISK_ERROR_NAME(ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_DRIVE_FOOTER_CORRUPT),
    VDISK_ERROR_NAME(ERROR_VHD_FORMAT_UNKNOWN),
    VDISK_ERROR_NAME(ERROR_VHD_FORMAT_UNSUPPORTED_VERSION),
    VDISK_ERROR_NAME(ERROR_VHD_SPARSE_HEADER_CHECKSUM_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_SPARSE_HEADER_UNSUPPORTED_VERSION),
    VDISK_ERROR_NAME(ERROR_VHD_SPARSE_HEADER_CORRUPT),
    VDISK_ERROR_NAME(ERROR_VHD_BLOCK_ALLOCATION_FAILURE),
    VDISK_ERROR_NAME(ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT),
    VDISK_ERROR_NAME(ERROR_VHD_INVALID_BLOCK_SIZE),
    VDISK_ERROR_NAME(ERROR_VHD_BITMAP_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_PARENT_VHD_NOT_FOUND),
    VDISK_ERROR_NAME(ERROR_VHD_CHILD_PARENT_ID_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_CHILD_PARENT_TIMESTAMP_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_METADATA_READ_FAILURE),
    VDISK_ERROR_NAME(ERROR_VHD_METADATA_WRITE_FAILURE),
    VDISK_ERROR_NAME(ERROR_VHD_INVALID_SIZE),
    VDISK_ERROR_NAME(ERROR_VHD_INVALID_FILE_SIZE),
    VDISK_ERROR_NAME(ERROR_VIRTDISK_PROVIDER_NOT_FOUND),
    VDISK_ERROR_NAME(ERROR_VIRTDISK_NOT_VIRTUAL_DISK),
    VDISK_ERROR_NAME(ERROR_VHD_PARENT_VHD_ACCESS_DENIED),
    VDISK_ERROR_NAME(ERROR_VHD_CHILD_PARENT_SIZE_MISMATCH),
    VDISK_ERROR_NAME(ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED),
    VDISK_ERROR_NAME(ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT),
    VDISK_ERROR_NAME(ERROR_VIRTUAL_DISK_LIMITATION),
    VDISK_ERROR_NAME(ERROR_VHD_INVALID_TYPE),
    VDISK_ERROR_NAME(ERROR_VHD_INVALID_STATE),
    VDISK_ERROR_NAME(ERROR_VIRTDISK_UNSUPPORTED_DISK_SECTOR_SIZE),
    VDISK_ERROR_NAME(ERROR_VIRTDISK_DISK_ALREADY_OWNED),
    VDISK_ERROR_NAME(ERROR_VIRTDISK_DISK_ONLINE_AND_WRITABLE),
    VDISK_ERROR_NAME(ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA),
    VDISK_ERROR_NAME(ERROR_VHD_METADATA_FULL),
    VDISK_ERROR_NAME(ERROR_VHD_SHARED),
};
#undef VDISK_ERROR_NAME

const char* ErrorNameOf(DWORD code) {
  for (const auto& entry : kErrorNames) {
    if (entry.code == code) return entry.name;
  }
  return nullptr;
}

// "0x00000057 (87) ERROR_INVALID_PARAMETER"
std::string DescribeError(DWORD code) {
  char text[64];
  std::snprintf(text, sizeof text, "0x%08lX (%lu)", static_cast<unsigned long>(code),
                static_cast<unsigned long>(code));
  std::string out = text;
  if (const char* name = ErrorNameOf(code)) out += std::string(" ") + name;
  return out;
}

// A failed step: what the tool was doing and, for a failed call, the Win32 code it returned.
class Failure : public std::runtime_error {
 public:
  explicit Failure(const std::string& what) : std::runtime_error(what) {}
  Failure(const std::string& what, DWORD code) : std::runtime_error(what), code_(code) {}
  const std::optional<DWORD>& code() const { return code_; }

 private:
  std::optional<DWORD> code_;
};

// A command line the tool cannot act on.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void Check(DWORD error, const std::string& what) {
  if (error != ERROR_SUCCESS) throw Failure(what, error);
}

// ---------------------------------------------------------------------------------------------
// Strings, numbers, paths

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A size or offset: decimal or 0x-hex, optionally followed by K, M, G or T (powers of 1024),
// which may be spelled KiB/KB/k too. Whole bytes only.
std::uint64_t ParseSize(std::string_view option, std::string_view text) {
  const auto bad = [&](const char* why) {
    return UsageError(std::string(option) + " '" + std::string(text) + "': " + why);
  };
  std::uint64_t value = 0;
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (ec == std::errc::result_out_of_range) throw bad("too large");
  if (ec != std::errc() || end == digits.data()) throw bad("not a number (e.g. 512, 64K, 1M, 2G)");
  const std::string suffix = Lower(std::string_view(end, digits.data() + digits.size() - end));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (base == 16) {
    throw bad("a hexadecimal number takes no suffix");
  } else {
    static const std::map<std::string, unsigned> kShifts = {
        {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20}, {"mb", 20}, {"mib", 20},
        {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40}, {"tb", 40}, {"tib", 40}};
    const auto it = kShifts.find(suffix);
    if (it == kShifts.end()) throw bad("unknown suffix (use K, M, G or T)");
    shift = it->second;
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) throw bad("too large");
  return value << shift;
}

unsigned ParseByte(std::string_view option, std::string_view text) {
  const std::uint64_t value = ParseSize(option, text);
  if (value > 0xFF)
    throw UsageError(std::string(option) + " '" + std::string(text) +
                     "': a byte is 0..255 (0x00..0xFF)");
  return static_cast<unsigned>(value);
}

// "67108864 bytes (64 MiB)"
std::string Bytes(std::uint64_t value) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  std::string out = std::to_string(value) + (value == 1 ? " byte" : " bytes");
  if (value < 1024) return out;
  int unit = -1;
  double scaled = static_cast<double>(value);
  while (scaled >= 1024 && unit < 4) {
    scaled /= 1024;
    ++unit;
  }
  char text[48];
  const std::uint64_t whole = std::uint64_t{1} << (10 * (unit + 1));
  if (value % whole == 0) {
    std::snprintf(text, sizeof text, " (%llu %s)", static_cast<unsigned long long>(value / whole),
                  kUnits[unit]);
  } else {
    std::snprintf(text, sizeof text, " (%.2f %s)", scaled, kUnits[unit]);
  }
  return out + text;
}

std::string Hex(std::uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

// The API takes absolute WCHAR paths; the command line gives paths in the system's narrow
// encoding (UTF-8 on Linux, the ANSI code page on Windows), which std::filesystem converts.
WString ToWide(const fs::path& path) {
  const std::wstring wide = fs::absolute(path).wstring();
  return WString(wide.begin(), wide.end());
}

std::string ToNarrow(const WCHAR* text) {
  const std::wstring wide(text, text + std::char_traits<WCHAR>::length(text));
  try {
    return fs::path(wide).string();
  } catch (const std::exception&) {
    std::string out;  // not representable: keep ASCII, mark the rest
    for (const wchar_t c : wide) out.push_back(c < 0x80 ? static_cast<char>(c) : '?');
    return out;
  }
}

std::string GuidString(const GUID& guid) {
  char text[40];
  std::snprintf(text, sizeof text, "{%08lX-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
                static_cast<unsigned long>(guid.Data1), guid.Data2, guid.Data3, guid.Data4[0],
                guid.Data4[1], guid.Data4[2], guid.Data4[3], guid.Data4[4], guid.Data4[5],
                guid.Data4[6], guid.Data4[7]);
  return text;
}

bool SameGuid(const GUID& a, const GUID& b) { return std::memcmp(&a, &b, sizeof(GUID)) == 0; }

// ---------------------------------------------------------------------------------------------
// Owners of OS objects and buffers

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
  // For APIs that return a handle through a PHANDLE.
  HANDLE* Receive() {
    Reset();
    return &handle_;
  }
  // Closes now and reports a failure (a disk handle's close writes its metadata back).
  void Close(const std::string& what) {
    HANDLE handle = std::exchange(handle_, nullptr);
    if (handle != nullptr && handle != INVALID_HANDLE_VALUE && !CloseHandle(handle)) {
      throw Failure("closing " + what, GetLastError());
    }
  }
  void Reset() {
    if (handle_ != nullptr && handle_ != INVALID_HANDLE_VALUE) CloseHandle(handle_);
    handle_ = nullptr;
  }

 private:
  HANDLE handle_ = nullptr;
};

// The 1 MiB work buffer, aligned for unbuffered I/O.
class WorkBuffer {
 public:
  WorkBuffer()
      : bytes_(static_cast<std::byte*>(
            ::operator new (kWorkBufferSize, std::align_val_t{kBufferAlignment}))) {}
  std::span<std::byte> first(std::size_t count) const {
    return std::span<std::byte>(bytes_.get(), count);
  }
  std::size_t size() const { return kWorkBufferSize; }

 private:
  struct Release {
    void operator()(std::byte* bytes) const {
      ::operator delete (bytes, std::align_val_t{kBufferAlignment});
    }
  };
  std::unique_ptr<std::byte, Release> bytes_;
};

bool AllZero(std::span<const std::byte> bytes) {
  return bytes.empty() || (bytes[0] == std::byte{0} &&
                           std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
}

// ---------------------------------------------------------------------------------------------
// The virtual disk, through the public API

VIRTUAL_STORAGE_TYPE StorageType(ULONG device) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = device;
  if (device != VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN) {
    const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
    type.VendorId = microsoft;
  }
  return type;
}

enum class OpenMode { kInfoOnly, kReadOnly, kReadWrite };

// OpenVirtualDisk with version 2 parameters and VIRTUAL_DISK_ACCESS_NONE, as Microsoft's samples
// do; the format is detected from the file.
DWORD TryOpen(const WString& path, OpenMode mode, OwnedHandle* disk) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN);
  OPEN_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.GetInfoOnly = mode == OpenMode::kInfoOnly ? TRUE : FALSE;
  parameters.Version2.ReadOnly = mode == OpenMode::kReadWrite ? FALSE : TRUE;
  return OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                         &parameters, disk->Receive());
}

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

// Follows the size protocol: asks with a plain GET_VIRTUAL_DISK_INFO; when the reply is longer
// (ERROR_INSUFFICIENT_BUFFER, the size needed written back), asks again with that much room.
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

struct Geometry {
  std::uint64_t virtual_size = 0;
  std::uint64_t sector_size = kMinimumSector;
};

Geometry GeometryOf(HANDLE disk, const std::string& name) {
  InfoReply reply;
  Check(QueryInfo(disk, GET_VIRTUAL_DISK_INFO_SIZE, &reply),
        "GetVirtualDiskInformation(SIZE) on " + name);
  Geometry geometry;
  geometry.virtual_size = reply->Size.VirtualSize;
  if (reply->Size.SectorSize != 0) geometry.sector_size = reply->Size.SectorSize;
  return geometry;
}

// A disk open and attached with ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST: raw sector I/O on its
// handle through ReadFile/WriteFile with an OVERLAPPED offset, completed through an event.
class RawDisk {
 public:
  RawDisk(const fs::path& path, bool writable) : name_(path.string()) {
    const WString wide = ToWide(path);
    Check(
        TryOpen(wide, writable ? OpenMode::kReadWrite : OpenMode::kReadOnly, &disk_),
        std::string("OpenVirtualDisk (") + (writable ? "read-write" : "read-only") + ") " + name_);
    ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
    parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
    ATTACH_VIRTUAL_DISK_FLAG flags = ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST;
    if (!writable) flags = flags | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY;
    Check(AttachVirtualDisk(disk_.get(), nullptr, flags, 0, &parameters, nullptr),
          "AttachVirtualDisk (NO_LOCAL_HOST" + std::string(writable ? "" : " | READ_ONLY") + ") " +
              name_);
    geometry_ = GeometryOf(disk_.get(), name_);
    event_ = OwnedHandle(CreateEventW(nullptr, TRUE, FALSE, nullptr));
    if (event_.get() == nullptr) throw Failure("CreateEventW", GetLastError());
  }

  const Geometry& geometry() const { return geometry_; }
  const std::string& name() const { return name_; }

  // Checks a request before any I/O, so that the message says what is wrong with it.
  void CheckRange(std::uint64_t offset, std::uint64_t length) const {
    const std::uint64_t sector = geometry_.sector_size;
    if (offset % sector != 0 || length % sector != 0) {
      throw UsageError("--offset and --length must be multiples of the logical sector size of " +
                       name_ + " (" + std::to_string(sector) +
                       " bytes): raw I/O moves whole sectors");
    }
    if (offset > geometry_.virtual_size || length > geometry_.virtual_size - offset) {
      throw UsageError("the range " + std::to_string(offset) + "+" + std::to_string(length) +
                       " runs past the end of " + name_ + " (virtual size " +
                       Bytes(geometry_.virtual_size) + ")");
    }
  }

  void Read(std::uint64_t offset, std::span<std::byte> buffer) {
    Transfer(offset, buffer.data(), buffer.size(), false);
  }
  void Write(std::uint64_t offset, std::span<const std::byte> buffer) {
    Transfer(offset, const_cast<std::byte*>(buffer.data()), buffer.size(), true);
  }

  void Close() {
    event_.Reset();
    disk_.Close(name_);
  }

 private:
  void Transfer(std::uint64_t offset, std::byte* data, std::size_t length, bool write) {
    const std::string what = std::string(write ? "WriteFile" : "ReadFile") + " of " +
                             std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                             " of " + name_;
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
      if (error != ERROR_IO_PENDING) throw Failure(what, error);
      if (!GetOverlappedResult(disk_.get(), &overlapped, &done, TRUE)) {
        throw Failure(what, GetLastError());
      }
    }
    if (done != count) {
      throw Failure(what + ": only " + std::to_string(done) + " bytes transferred",
                    ERROR_HANDLE_EOF);
    }
  }

  std::string name_;
  OwnedHandle disk_;
  OwnedHandle event_;
  Geometry geometry_;
};

// ---------------------------------------------------------------------------------------------
// Command line

struct OptionSpec {
  const char* name;  // "--size"
  bool takes_value;
};

struct Arguments {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;

  bool Has(const std::string& name) const { return values.contains(name); }
  std::optional<std::string> Get(const std::string& name) const {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
};

Arguments ParseArguments(const std::vector<std::string>& args, std::span<const OptionSpec> specs) {
  Arguments out;
  bool options_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const auto spec = std::find_if(specs.begin(), specs.end(),
                                   [&](const OptionSpec& s) { return name == s.name; });
    if (spec == specs.end()) throw UsageError("unknown option '" + name + "'");
    if (out.Has(name)) throw UsageError(name + " given twice");
    if (spec->takes_value && !value) {
      if (i + 1 >= args.size()) throw UsageError(name + " needs a value");
      value = args[++i];
    }
    if (!spec->takes_value && value) throw UsageError(name + " takes no value");
    out.values[name] = value.value_or("");
  }
  return out;
}

void ExpectPositional(const Arguments& args, std::size_t count, const char* what) {
  if (args.positional.size() != count) {
    throw UsageError(std::string("expected ") + what + ", got " +
                     std::to_string(args.positional.size()) + " argument(s)");
  }
}

// ---------------------------------------------------------------------------------------------
// vdisk create

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

int CommandCreate(const std::vector<std::string>& argv) {
  static constexpr OptionSpec kSpecs[] = {
      {"--size", true},   {"--type", true},   {"--fixed", false},     {"--block-size", true},
      {"--parent", true}, {"--source", true}, {"--sector-size", true}};
  const Arguments args = ParseArguments(argv, kSpecs);
  ExpectPositional(args, 1, "one PATH");
  const fs::path path = args.positional[0];

  ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN;
  const std::string type = Lower(args.Get("--type").value_or(""));
  const std::string extension = Lower(path.extension().string());
  if (type == "vhd" || (type.empty() && (extension == ".vhd" || extension == ".avhd"))) {
    device = VIRTUAL_STORAGE_TYPE_DEVICE_VHD;
  } else if (type == "vhdx" || (type.empty() && (extension == ".vhdx" || extension == ".avhdx"))) {
    device = VIRTUAL_STORAGE_TYPE_DEVICE_VHDX;
  } else if (!type.empty()) {
    throw UsageError("--type '" + type + "': use vhd or vhdx");
  } else {
    throw UsageError("cannot tell the format from the name '" + path.filename().string() +
                     "': name it .vhd or .vhdx, or give --type vhd|vhdx");
  }

  const bool fixed = args.Has("--fixed");
  const auto parent = args.Get("--parent");
  const auto source = args.Get("--source");
  std::uint64_t size = 0;
  if (const auto text = args.Get("--size")) size = ParseSize("--size", *text);
  if (parent) {
    if (args.Has("--size"))
      throw UsageError("a differencing disk takes its size from --parent; drop --size");
    if (fixed) throw UsageError("a differencing disk cannot be --fixed");
    if (source) throw UsageError("--parent and --source exclude each other");
  } else if (!source && !args.Has("--size")) {
    throw UsageError("--size is required (e.g. --size 64M), unless --parent or --source gives it");
  }
  if (args.Has("--size") && (size == 0 || size % kMinimumSector != 0)) {
    throw UsageError("--size must be a nonzero multiple of 512 bytes, got " + std::to_string(size));
  }
  std::uint64_t block_size = 0;
  if (const auto text = args.Get("--block-size")) {
    block_size = ParseSize("--block-size", *text);
    if (block_size == 0 || block_size > 0xFFFFFFFFU) {
      throw UsageError("--block-size must be between 1 byte and 4 GiB");
    }
  }
  std::uint64_t sector_size = 0;
  if (const auto text = args.Get("--sector-size")) {
    sector_size = ParseSize("--sector-size", *text);
    if (sector_size != 512 && sector_size != 4096) throw UsageError("--sector-size is 512 or 4096");
  }

  const WString wide_path = ToWide(path);
  const WString wide_parent = parent ? ToWide(*parent) : WString();
  const WString wide_source = source ? ToWide(*source) : WString();

  VIRTUAL_STORAGE_TYPE storage_type = StorageType(device);
  CREATE_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.MaximumSize = size;
  parameters.Version2.BlockSizeInBytes = static_cast<ULONG>(block_size);
  parameters.Version2.SectorSizeInBytes = static_cast<ULONG>(sector_size);
  parameters.Version2.ParentPath = parent ? wide_parent.c_str() : nullptr;
  parameters.Version2.SourcePath = source ? wide_source.c_str() : nullptr;
  OwnedHandle disk;
  Check(CreateVirtualDisk(&storage_type, wide_path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                          fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                : CREATE_VIRTUAL_DISK_FLAG_NONE,
                          0, &parameters, nullptr, disk.Receive()),
        "CreateVirtualDisk " + path.string());

  InfoReply sizes;
  InfoReply subtype;
  Check(QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_SIZE, &sizes),
        "GetVirtualDiskInformation(SIZE) on " + path.string());
  Check(QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, &subtype),
        "GetVirtualDiskInformation(PROVIDER_SUBTYPE) on " + path.string());
  disk.Close(path.string());
  std::printf("created %s: %s %s, virtual size %s", path.string().c_str(), DeviceName(device),
              SubtypeName(subtype->ProviderSubtype), Bytes(sizes->Size.VirtualSize).c_str());
  if (sizes->Size.BlockSize != 0) {
    std::printf(", block size %s", Bytes(sizes->Size.BlockSize).c_str());
  }
  if (parent) std::printf(", parent %s", parent->c_str());
  if (source) std::printf(", data from %s", source->c_str());
  std::printf("\n");
  return 0;
}

// ---------------------------------------------------------------------------------------------
// vdisk info

struct InfoVersion {
  GET_VIRTUAL_DISK_INFO_VERSION version;
  const char* name;
};
const InfoVersion kInfoVersions[] = {
    {GET_VIRTUAL_DISK_INFO_SIZE, "SIZE"},
    {GET_VIRTUAL_DISK_INFO_IDENTIFIER, "IDENTIFIER"},
    {GET_VIRTUAL_DISK_INFO_PARENT_LOCATION, "PARENT_LOCATION"},
    {GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER, "PARENT_IDENTIFIER"},
    {GET_VIRTUAL_DISK_INFO_PARENT_TIMESTAMP, "PARENT_TIMESTAMP"},
    {GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE, "VIRTUAL_STORAGE_TYPE"},
    {GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, "PROVIDER_SUBTYPE"},
    {GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED, "IS_4K_ALIGNED"},
    {GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK, "PHYSICAL_DISK"},
    {GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE, "VHD_PHYSICAL_SECTOR_SIZE"},
    {GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE, "SMALLEST_SAFE_VIRTUAL_SIZE"},
    {GET_VIRTUAL_DISK_INFO_FRAGMENTATION, "FRAGMENTATION"},
    {GET_VIRTUAL_DISK_INFO_IS_LOADED, "IS_LOADED"},
    {GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID, "VIRTUAL_DISK_ID"},
    {GET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE, "CHANGE_TRACKING_STATE"},
};

void Field(const char* label, const std::string& value) {
  std::printf("  %-24s %s\n", label, value.c_str());
}

const char* YesNo(BOOL value) { return value ? "yes" : "no"; }

// VHD stores the parent's modification time in seconds since 2000-01-01 00:00:00 UTC.
std::string VhdTimestamp(ULONG seconds) {
  // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
  const std::int64_t unix_seconds = 946684800 + static_cast<std::int64_t>(seconds);
  std::int64_t days = unix_seconds / 86400;
  const std::int64_t rest = unix_seconds % 86400;
  days += 719468;
  const std::int64_t era = days / 146097;
  const std::int64_t doe = days - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char text[48];
  std::snprintf(text, sizeof text, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld UTC",
                static_cast<long long>(year), static_cast<long long>(month),
                static_cast<long long>(day), static_cast<long long>(rest / 3600),
                static_cast<long long>(rest / 60 % 60), static_cast<long long>(rest % 60));
  return text;
}

void PrintInfo(GET_VIRTUAL_DISK_INFO_VERSION version, const InfoReply& reply, ULONG device) {
  const GET_VIRTUAL_DISK_INFO& info = *reply;
  switch (version) {
    case GET_VIRTUAL_DISK_INFO_SIZE:
      Field("virtual size:", Bytes(info.Size.VirtualSize));
      Field("physical size:", Bytes(info.Size.PhysicalSize));
      Field("block size:",
            info.Size.BlockSize == 0 ? "0 (none: fixed)" : Bytes(info.Size.BlockSize));
      Field("logical sector size:", std::to_string(info.Size.SectorSize));
      break;
    case GET_VIRTUAL_DISK_INFO_IDENTIFIER:
      Field("identifier:", GuidString(info.Identifier));
      break;
    case GET_VIRTUAL_DISK_INFO_PARENT_LOCATION: {
      // One path when resolved; otherwise a multi-string of the stored candidate locations.
      const std::size_t offset =
          offsetof(GET_VIRTUAL_DISK_INFO, ParentLocation.ParentLocationBuffer);
      const std::size_t capacity =
          reply.size() > offset ? (reply.size() - offset) / sizeof(WCHAR) : 0;
      const WCHAR* text = info.ParentLocation.ParentLocationBuffer;
      std::vector<std::string> locations;
      for (std::size_t i = 0; i < capacity && text[i] != 0;) {
        std::size_t end = i;
        while (end < capacity && text[end] != 0) ++end;
        locations.push_back(ToNarrow(WString(text + i, text + end).c_str()));
        if (info.ParentLocation.ParentResolved) break;
        i = end + 1;
      }
      Field("parent resolved:", YesNo(info.ParentLocation.ParentResolved));
      if (locations.empty()) Field("parent location:", "(none)");
      for (const auto& location : locations) Field("parent location:", location);
      break;
    }
    case GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER:
      Field("parent identifier:", GuidString(info.ParentIdentifier));
      break;
    case GET_VIRTUAL_DISK_INFO_PARENT_TIMESTAMP:
      Field("parent timestamp:", std::to_string(info.ParentTimestamp) +
                                     (device == VIRTUAL_STORAGE_TYPE_DEVICE_VHD
                                          ? " (" + VhdTimestamp(info.ParentTimestamp) + ")"
                                          : std::string()));
      break;
    case GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE: {
      const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
      const GUID& vendor = info.VirtualStorageType.VendorId;
      Field("storage type:",
            std::string(DeviceName(info.VirtualStorageType.DeviceId)) + " (device " +
                std::to_string(info.VirtualStorageType.DeviceId) + ", vendor " +
                (SameGuid(vendor, microsoft) ? "Microsoft" : GuidString(vendor)) + ")");
      break;
    }
    case GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE:
      Field("provider subtype:", std::string(SubtypeName(info.ProviderSubtype)) + " (" +
                                     std::to_string(info.ProviderSubtype) + ")");
      break;
    case GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED:
      Field("is 4K aligned:", YesNo(info.Is4kAligned));
      break;
    case GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK:
      Field("disk logical sector:", std::to_string(info.PhysicalDisk.LogicalSectorSize));
      Field("disk physical sector:", std::to_string(info.PhysicalDisk.PhysicalSectorSize));
      Field("is remote:", YesNo(info.PhysicalDisk.IsRemote));
      break;
    case GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE:
      Field("physical sector size:", std::to_string(info.VhdPhysicalSectorSize));
      break;
    case GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE:
      Field("smallest safe size:", Bytes(info.SmallestSafeVirtualSize));
      break;
    case GET_VIRTUAL_DISK_INFO_FRAGMENTATION:
      Field("fragmentation:", std::to_string(info.FragmentationPercentage) + "%");
      break;
    case GET_VIRTUAL_DISK_INFO_IS_LOADED:
      Field("is loaded:", YesNo(info.IsLoaded));
      break;
    case GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID:
      Field("virtual disk id:", GuidString(info.VirtualDiskId));
      break;
    case GET_VIRTUAL_DISK_INFO_CHANGE_TRACKING_STATE:
      Field("change tracking:",
            std::string(info.ChangeTrackingState.Enabled ? "enabled" : "disabled") +
                (info.ChangeTrackingState.NewerChanges ? ", newer changes" : ""));
      if (info.ChangeTrackingState.MostRecentId[0] != 0) {
        Field("most recent id:", ToNarrow(info.ChangeTrackingState.MostRecentId));
      }
      break;
    default:
      break;
  }
}

int CommandInfo(const std::vector<std::string>& argv) {
  const Arguments args = ParseArguments(argv, {});
  ExpectPositional(args, 1, "one PATH");
  const fs::path path = args.positional[0];
  const WString wide = ToWide(path);

  // The whole chain first; when a parent cannot be opened, the file alone (GetInfoOnly), so
  // that a broken chain can still be inspected.
  OwnedHandle disk;
  const DWORD open_error = TryOpen(wide, OpenMode::kReadOnly, &disk);
  if (open_error != ERROR_SUCCESS) {
    if (TryOpen(wide, OpenMode::kInfoOnly, &disk) != ERROR_SUCCESS) {
      throw Failure("OpenVirtualDisk " + path.string(), open_error);
    }
    std::printf("note: opening the chain failed with %s; showing this file only\n",
                DescribeError(open_error).c_str());
  }

  ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN;
  if (InfoReply type;
      QueryInfo(disk.get(), GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE, &type) == ERROR_SUCCESS) {
    device = type->VirtualStorageType.DeviceId;
  }

  std::printf("%s\n", path.string().c_str());
  std::map<DWORD, std::vector<std::string>> unavailable;  // error -> versions
  for (const auto& [version, name] : kInfoVersions) {
    InfoReply reply;
    const DWORD error = QueryInfo(disk.get(), version, &reply);
    if (error == ERROR_SUCCESS) {
      PrintInfo(version, reply, device);
    } else {
      unavailable[error].push_back(name);
    }
  }
  for (const auto& [error, names] : unavailable) {
    std::string list;
    for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
    std::printf("  not available: %s: %s\n", list.c_str(), DescribeError(error).c_str());
  }
  disk.Close(path.string());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// vdisk write / read / export

std::uint64_t RequireSectorMultiple(const char* option, std::uint64_t value) {
  if (value % kMinimumSector != 0) {
    throw UsageError(std::string(option) + " " + std::to_string(value) +
                     " is not a multiple of 512: raw I/O on a virtual disk moves whole sectors "
                     "(512 or 4096 bytes); round it to a sector boundary");
  }
  return value;
}

int CommandWrite(const std::vector<std::string>& argv) {
  static constexpr OptionSpec kSpecs[] = {
      {"--offset", true}, {"--length", true}, {"--pattern", true}, {"--from", true}};
  const Arguments args = ParseArguments(argv, kSpecs);
  ExpectPositional(args, 1, "one PATH");
  const fs::path path = args.positional[0];
  if (args.Has("--pattern") == args.Has("--from")) {
    throw UsageError("give exactly one of --pattern BYTE and --from FILE");
  }
  if (!args.Has("--offset")) throw UsageError("--offset is required");
  const std::uint64_t offset =
      RequireSectorMultiple("--offset", ParseSize("--offset", *args.Get("--offset")));

  std::optional<unsigned> pattern;
  std::ifstream from;
  std::uint64_t length = 0;
  if (const auto text = args.Get("--pattern")) pattern = ParseByte("--pattern", *text);
  if (const auto file = args.Get("--from")) {
    from.open(fs::path(*file), std::ios::binary);
    if (!from) throw Failure("cannot open --from file '" + *file + "'");
    std::error_code ec;
    const std::uint64_t file_size = fs::file_size(fs::path(*file), ec);
    if (ec) throw Failure("cannot get the size of '" + *file + "': " + ec.message());
    length = args.Has("--length") ? ParseSize("--length", *args.Get("--length")) : file_size;
    if (length > file_size) {
      throw UsageError("--from '" + *file + "' holds " + std::to_string(file_size) +
                       " bytes, fewer than --length " + std::to_string(length));
    }
    if (!args.Has("--length") && file_size % kMinimumSector != 0) {
      throw UsageError("--from '" + *file + "' holds " + std::to_string(file_size) +
                       " bytes, not a multiple of 512: raw I/O moves whole sectors; give a "
                       "--length that is");
    }
  } else {
    if (!args.Has("--length")) throw UsageError("--length is required with --pattern");
    length = ParseSize("--length", *args.Get("--length"));
  }
  RequireSectorMultiple("--length", length);
  if (length == 0) throw UsageError("--length must not be 0");

  RawDisk disk(path, true);
  disk.CheckRange(offset, length);
  WorkBuffer buffer;
  if (pattern)
    std::memset(buffer.first(buffer.size()).data(), static_cast<int>(*pattern), buffer.size());
  for (std::uint64_t done = 0; done < length;) {
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
    const auto bytes = buffer.first(chunk);
    if (!pattern) {
      from.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(chunk));
      if (static_cast<std::size_t>(from.gcount()) != chunk) {
        throw Failure("reading --from file failed at byte " + std::to_string(done));
      }
    }
    disk.Write(offset + done, bytes);
    done += chunk;
  }
  disk.Close();
  std::printf(
      "wrote %s at offset %s (%s) of %s%s\n", Bytes(length).c_str(), std::to_string(offset).c_str(),
      Hex(offset).c_str(), path.string().c_str(),
      pattern ? (", pattern " + Hex(*pattern)).c_str() : (", from " + *args.Get("--from")).c_str());
  return 0;
}

// "00100000  ab ab ab ab ab ab ab ab  ab ab ab ab ab ab ab ab  |................|"
void HexLine(std::uint64_t offset, std::span<const std::byte> bytes) {
  std::string line;
  char cell[24];
  std::snprintf(cell, sizeof cell, "%08llx ", static_cast<unsigned long long>(offset));
  line += cell;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i % 8 == 0) line += ' ';
    if (i < bytes.size()) {
      std::snprintf(cell, sizeof cell, "%02x ", static_cast<unsigned>(bytes[i]));
      line += cell;
    } else {
      line += "   ";
    }
  }
  line += " |";
  for (const std::byte b : bytes) {
    const auto c = static_cast<unsigned char>(b);
    line += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  line += "|";
  std::printf("%s\n", line.c_str());
}

int CommandRead(const std::vector<std::string>& argv) {
  static constexpr OptionSpec kSpecs[] = {{"--offset", true}, {"--length", true}, {"--to", true}};
  const Arguments args = ParseArguments(argv, kSpecs);
  ExpectPositional(args, 1, "one PATH");
  const fs::path path = args.positional[0];
  if (!args.Has("--offset") || !args.Has("--length")) {
    throw UsageError("--offset and --length are required");
  }
  const std::uint64_t offset =
      RequireSectorMultiple("--offset", ParseSize("--offset", *args.Get("--offset")));
  const std::uint64_t length =
      RequireSectorMultiple("--length", ParseSize("--length", *args.Get("--length")));
  if (length == 0) throw UsageError("--length must not be 0");

  std::ofstream to;
  const auto to_path = args.Get("--to");
  if (to_path) {
    to.open(fs::path(*to_path), std::ios::binary | std::ios::trunc);
    if (!to) throw Failure("cannot create --to file '" + *to_path + "'");
  }

  RawDisk disk(path, false);
  disk.CheckRange(offset, length);
  WorkBuffer buffer;
  constexpr std::size_t kShown = 64;
  std::vector<std::byte> head;
  bool uniform = true;
  std::byte first{};
  for (std::uint64_t done = 0; done < length;) {
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
    const auto bytes = buffer.first(chunk);
    disk.Read(offset + done, bytes);
    if (to_path) {
      to.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(chunk));
      if (!to) throw Failure("writing --to file '" + *to_path + "' failed");
    } else {
      if (done == 0) first = bytes[0];
      if (head.size() < kShown) {
        head.insert(
            head.end(), bytes.begin(),
            bytes.begin() + static_cast<std::ptrdiff_t>(std::min(kShown - head.size(), chunk)));
      }
      uniform = uniform &&
                std::all_of(bytes.begin(), bytes.end(), [&](std::byte b) { return b == first; });
    }
    done += chunk;
  }
  disk.Close();

  if (to_path) {
    to.close();
    if (!to) throw Failure("closing --to file '" + *to_path + "' failed");
    std::printf("read %s at offset %s (%s) of %s into %s\n", Bytes(length).c_str(),
                std::to_string(offset).c_str(), Hex(offset).c_str(), path.string().c_str(),
                to_path->c_str());
    return 0;
  }
  for (std::size_t i = 0; i < head.size(); i += 16) {
    HexLine(offset + i, std::span<const std::byte>(head).subspan(
                            i, std::min<std::size_t>(16, head.size() - i)));
  }
  if (uniform) {
    char text[32];
    std::snprintf(text, sizeof text, "0x%02X", static_cast<unsigned>(first));
    std::printf("all %llu bytes = %s\n", static_cast<unsigned long long>(length), text);
  } else if (length > kShown) {
    std::printf("... %llu more bytes, not all equal (use --to FILE for all of them)\n",
                static_cast<unsigned long long>(length - kShown));
  }
  return 0;
}

int CommandExport(const std::vector<std::string>& argv) {
  const Arguments args = ParseArguments(argv, {});
  ExpectPositional(args, 2, "PATH and OUTPUT");
  const fs::path path = args.positional[0];
  const fs::path output = args.positional[1];

  RawDisk disk(path, false);
  const std::uint64_t size = disk.geometry().virtual_size;
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  if (!out) throw Failure("cannot create '" + output.string() + "'");

  // Whole MiBs of zeros are not written: seeking past them leaves holes in a sparse file, and
  // the final resize gives the file its full length even when the disk ends in zeros.
  WorkBuffer buffer;
  std::uint64_t data_bytes = 0;
  for (std::uint64_t offset = 0; offset < size;) {
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset));
    const auto bytes = buffer.first(chunk);
    disk.Read(offset, bytes);
    if (!AllZero(bytes)) {
      out.seekp(static_cast<std::streamoff>(offset));
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(chunk));
      if (!out)
        throw Failure("writing '" + output.string() + "' at offset " + std::to_string(offset) +
                      " failed");
      data_bytes += chunk;
    }
    offset += chunk;
  }
  disk.Close();
  out.close();
  if (!out) throw Failure("closing '" + output.string() + "' failed");
  std::error_code ec;
  fs::resize_file(output, size, ec);
  if (ec) throw Failure("setting the size of '" + output.string() + "': " + ec.message());
  std::printf("exported %s of %s to %s: %s written, %s left as holes\n", Bytes(size).c_str(),
              path.string().c_str(), output.string().c_str(), Bytes(data_bytes).c_str(),
              Bytes(size - data_bytes).c_str());
  return 0;
}

// MirrorVirtualDisk with the calls of Microsoft's sample: mirror with an event OVERLAPPED, poll
// progress until the copy is complete, break, poll until the operation has ended.
int CommandMirror(const std::vector<std::string>& argv) {
  static constexpr OptionSpec kSpecs[] = {{"--existing", false}};
  const Arguments args = ParseArguments(argv, kSpecs);
  ExpectPositional(args, 2, "SOURCE and TARGET");
  const fs::path source = args.positional[0];
  const fs::path target = args.positional[1];
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };

  OwnedHandle disk;
  Check(TryOpen(ToWide(source), OpenMode::kReadWrite, &disk), "opening '" + source.string() + "'");
  OwnedHandle event(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  if (event.get() == nullptr) throw Failure("CreateEventW", GetLastError());
  OVERLAPPED overlapped{};
  overlapped.hEvent = event.get();
  const WString target_wide = ToWide(target);
  MIRROR_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  parameters.Version1.MirrorVirtualDiskPath = target_wide.c_str();
  const auto flags = args.Has("--existing") ? MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE
                                            : MIRROR_VIRTUAL_DISK_FLAG_NONE;
  const auto start = Clock::now();
  const DWORD started = MirrorVirtualDisk(disk.get(), flags, &parameters, &overlapped);
  if (started != ERROR_IO_PENDING && started != ERROR_SUCCESS) {
    throw Failure("MirrorVirtualDisk to '" + target.string() + "'", started);
  }
  VIRTUAL_DISK_PROGRESS progress{};
  auto poll = [&] {
    Check(GetVirtualDiskOperationProgress(disk.get(), &overlapped, &progress),
          "GetVirtualDiskOperationProgress");
    if (progress.OperationStatus != ERROR_IO_PENDING && progress.OperationStatus != ERROR_SUCCESS) {
      throw Failure("mirroring to '" + target.string() + "'", progress.OperationStatus);
    }
  };
  for (poll(); progress.CurrentValue != progress.CompletionValue; poll()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double ready = seconds_since(start);
  Check(BreakMirrorVirtualDisk(disk.get()), "BreakMirrorVirtualDisk");
  for (poll(); progress.OperationStatus == ERROR_IO_PENDING; poll()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double broken = seconds_since(start);
  disk.Close("'" + source.string() + "'");
  std::printf("mirrored %s to %s: %s copied, ready after %.3f s, broken after %.3f s; the "
              "target file is now the disk's active file\n",
              source.string().c_str(), target.string().c_str(),
              Bytes(progress.CompletionValue).c_str(), ready, broken);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Entry point

const char kUsage[] =
    "usage: vdisk COMMAND [ARGS]\n"
    "\n"
    "Create, inspect, read, write and export VHD/VHDX virtual disks through the VirtDisk API.\n"
    "\n"
    "commands:\n"
    "  create PATH --size SIZE [--type vhd|vhdx] [--fixed] [--block-size SIZE]\n"
    "              [--sector-size 512|4096]\n"
    "  create PATH --parent PARENT [--type vhd|vhdx]\n"
    "  create PATH --source SRC [--size SIZE] [--type vhd|vhdx] [--fixed]\n"
    "      Create a disk: dynamic unless --fixed; differencing with --parent (its size, and a\n"
    "      VHD's block size, come from the parent); filled from another disk with --source. The\n"
    "      format comes from the extension (.vhd, .vhdx) unless --type says.\n"
    "  info PATH\n"
    "      Print every GetVirtualDiskInformation item the disk answers: sizes, sector sizes,\n"
    "      type and subtype, identifiers, parent (for differencing disks), fragmentation...\n"
    "  write PATH --offset N (--pattern BYTE --length N | --from FILE [--length N])\n"
    "      Write raw sectors: --length bytes of BYTE, or the first --length bytes of FILE\n"
    "      (all of it by default).\n"
    "  read PATH --offset N --length N [--to FILE]\n"
    "      Read raw sectors into FILE, or show the first 64 bytes and whether all are equal.\n"
    "  export PATH OUTPUT\n"
    "      Write the whole virtual disk to a raw image, leaving all-zero MiBs as holes.\n"
    "  mirror SOURCE TARGET [--existing]\n"
    "      Mirror SOURCE to TARGET (created, of the same format and size; an existing disk of\n"
    "      the same format and size with --existing), copying only allocated data, then break\n"
    "      the mirror, as Microsoft's MirrorVirtualDisk sample does.\n"
    "  help, --help, -h\n"
    "      Show this text.\n"
    "\n"
    "SIZE, N: bytes, decimal or 0x-hex, or with a K, M, G or T suffix (powers of 1024).\n"
    "Raw offsets and lengths must be multiples of the disk's sector size (512 or 4096).\n"
    "Exit status: 0 on success, 1 on any error (Win32 errors are shown in hex and decimal).\n"
    "Set VIRTDISK_TRACE=1 to have the library log every call and its reasons for failing.\n";

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>&);
};
constexpr Command kCommands[] = {{"create", CommandCreate},
                                 {"info", CommandInfo},
                                 {"write", CommandWrite},
                                 {"read", CommandRead},
                                 {"export", CommandExport},
                                 {"mirror", CommandMirror}};

int Run(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 1;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (std::find(rest.begin(), rest.end(), "--help") != rest.end()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  for (const auto& command : kCommands) {
    if (name == command.name) return command.run(rest);
  }
  throw UsageError("unknown command '" + name + "'");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int status = Run(argc, argv);
    std::fflush(stdout);
    return status;
  } catch (const UsageError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "vdisk: %s\n(see vdisk --help)\n", e.what());
  } catch (const Failure& e) {
    std::fflush(stdout);
    if (e.code()) {
      std::fprintf(stderr, "vdisk: %s failed: error %s\n", e.what(),
                   DescribeError(*e.code()).c_str());
      if (std::getenv("VIRTDISK_TRACE") == nullptr) {
        std::fprintf(stderr, "vdisk: (run with VIRTDISK_TRACE=1 for the library's reason)\n");
      }
    } else {
      std::fprintf(stderr, "vdisk: %s\n", e.what());
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "vdisk: %s\n", e.what());
  }
  return 1;
}
