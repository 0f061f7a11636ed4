#include "api_test_support.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

namespace vdisk_test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device device;
  path_ = std::filesystem::temp_directory_path() /
          ("vdisk-api-" + std::to_string(device()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

WString ToWide(const std::filesystem::path& path) {
  const std::wstring w = path.wstring();
  return WString(w.begin(), w.end());
}

WString TempDir::Wide(const std::string& name) const { return ToWide(path_ / name); }

VIRTUAL_STORAGE_TYPE StorageType(ULONG device, bool microsoft) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = device;
  const GUID vendor = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  if (microsoft) type.VendorId = vendor;
  return type;
}

DWORD CreateVhd(const WString& path, ULONGLONG size, bool fixed, HANDLE* handle, ULONG block_size,
                const WString& parent, ULONG device) {
  VIRTUAL_STORAGE_TYPE type = StorageType(device);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = parent.empty() ? size : 0;
  params.Version2.BlockSizeInBytes = block_size;
  params.Version2.SectorSizeInBytes = 512;
  params.Version2.ParentPath = parent.empty() ? nullptr : parent.c_str();
  return CreateVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                           fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                 : CREATE_VIRTUAL_DISK_FLAG_NONE,
                           0, &params, nullptr, handle);
}

DWORD OpenV2(const WString& path, bool read_only, HANDLE* handle, ULONG device) {
  VIRTUAL_STORAGE_TYPE type = StorageType(device, false);
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  params.Version2.ReadOnly = read_only ? TRUE : FALSE;
  return OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                         OPEN_VIRTUAL_DISK_FLAG_NONE, &params, handle);
}

DWORD AttachRaw(HANDLE handle, bool read_only) {
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ATTACH_VIRTUAL_DISK_FLAG flags = ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST;
  if (read_only) flags = static_cast<ATTACH_VIRTUAL_DISK_FLAG>(flags | ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY);
  return AttachVirtualDisk(handle, nullptr, flags, 0, &params, nullptr);
}

namespace {

DWORD Transfer(HANDLE handle, std::uint64_t offset, void* buffer, DWORD length, bool write) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  DWORD done = 0;
  BOOL ok = write ? WriteFile(handle, buffer, length, &done, &ov)
                  : ReadFile(handle, buffer, length, &done, &ov);
  DWORD error = ERROR_SUCCESS;
  if (!ok) {
    error = GetLastError();
    if (error == ERROR_IO_PENDING) {
      error = GetOverlappedResult(handle, &ov, &done, TRUE) ? ERROR_SUCCESS : GetLastError();
    }
  }
  if (error == ERROR_SUCCESS && done != length) error = ERROR_HANDLE_EOF;
  CloseHandle(ov.hEvent);
  return error;
}

}  // namespace

DWORD ReadAt(HANDLE handle, std::uint64_t offset, void* buffer, DWORD length) {
  return Transfer(handle, offset, buffer, length, false);
}

DWORD WriteAt(HANDLE handle, std::uint64_t offset, const void* buffer, DWORD length) {
  return Transfer(handle, offset, const_cast<void*>(buffer), length, true);
}

ULONGLONG VirtualSize(HANDLE handle) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  if (GetVirtualDiskInformation(handle, &size, &info, nullptr) != ERROR_SUCCESS) return 0;
  return info.Size.VirtualSize;
}

std::vector<unsigned char> Pattern(std::size_t length, std::uint32_t seed) {
  std::vector<unsigned char> out(length);
  std::mt19937 engine(seed);
  for (auto& b : out) b = static_cast<unsigned char>(engine());
  return out;
}

void Patch(const std::filesystem::path& file, std::uint64_t offset,
           const std::vector<unsigned char>& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + file.string());
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void Truncate(const std::filesystem::path& file, std::uint64_t size) {
  std::filesystem::resize_file(file, size);
}

std::uint64_t FileSize(const std::filesystem::path& file) {
  return std::filesystem::file_size(file);
}

std::vector<unsigned char> ReadBytes(const std::filesystem::path& file, std::uint64_t offset,
                                     std::size_t length) {
  std::ifstream f(file, std::ios::binary);
  std::vector<unsigned char> out(length);
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(length));
  out.resize(static_cast<std::size_t>(f.gcount()));
  return out;
}

void SetEnv(const char* name, const std::string& value) {
#ifdef _WIN32
  _putenv_s(name, value.c_str());
#else
  ::setenv(name, value.c_str(), 1);
#endif
}

void UnsetEnv(const char* name) {
#ifdef _WIN32
  _putenv_s(name, "");
#else
  ::unsetenv(name);
#endif
}

std::string Narrow(const WCHAR* text) {
  std::string out;
  for (; *text != 0; ++text) out.push_back(static_cast<char>(*text));
  return out;
}

std::vector<std::string> AllAttached() {
  ULONG size = 0;
  EXPECT_EQ(GetAllAttachedVirtualDiskPhysicalPaths(&size, nullptr),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  std::vector<WCHAR> buffer(size / sizeof(WCHAR));
  EXPECT_EQ(GetAllAttachedVirtualDiskPhysicalPaths(&size, buffer.data()),
            static_cast<DWORD>(ERROR_SUCCESS));
  std::vector<std::string> paths;
  for (const WCHAR* p = buffer.data(); *p != 0; p += Narrow(p).size() + 1)
    paths.push_back(Narrow(p));
  return paths;
}

std::string PhysicalPath(HANDLE handle, DWORD* error) {
  ULONG size = 0;
  DWORD e = GetVirtualDiskPhysicalPath(handle, &size, nullptr);
  if (e != ERROR_INSUFFICIENT_BUFFER) {
    if (error) *error = e;
    return "";
  }
  std::vector<WCHAR> buffer(size / sizeof(WCHAR));
  e = GetVirtualDiskPhysicalPath(handle, &size, buffer.data());
  if (error) *error = e;
  return e == ERROR_SUCCESS ? Narrow(buffer.data()) : "";
}

}  // namespace vdisk_test
