// Helpers for the C API tests. The tests are written as a Win32 client would write them and
// build for Linux (libvirtdisk.so) and Windows (VirtDisk.dll under Wine).
#pragma once

#ifdef _WIN32
#include <initguid.h>
#include <windows.h>
#endif
#include <virtdisk.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/attached_disks.h"

namespace vdisk_test {

using WString = std::basic_string<WCHAR>;

// A fresh directory removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // A path inside the directory, as the WCHAR string the API takes.
  WString Wide(const std::string& name) const;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

WString ToWide(const std::filesystem::path& path);

VIRTUAL_STORAGE_TYPE StorageType(ULONG device, bool microsoft = true);

// CreateVirtualDisk with V2 parameters; returns the error and the handle.
DWORD CreateVhd(const WString& path, ULONGLONG size, bool fixed, HANDLE* handle,
                ULONG block_size = 0, const WString& parent = WString(),
                ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
// OpenVirtualDisk with V2 parameters (ACCESS_NONE), as Microsoft's samples do.
DWORD OpenV2(const WString& path, bool read_only, HANDLE* handle,
             ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN);
DWORD AttachRaw(HANDLE handle, bool read_only = false);

// Reads/writes through ReadFile/WriteFile with an OVERLAPPED offset and waits for completion;
// returns the Win32 error (0 on success).
DWORD ReadAt(HANDLE handle, std::uint64_t offset, void* buffer, DWORD length);
DWORD WriteAt(HANDLE handle, std::uint64_t offset, const void* buffer, DWORD length);

ULONGLONG VirtualSize(HANDLE handle);

// Narrow, AllAttached, PhysicalPath (tests/support/attached_disks.h).
using vdisk_testing::AllAttached;
using vdisk_testing::Narrow;
using vdisk_testing::PhysicalPath;

// Sets or removes an environment variable (setenv/unsetenv, _putenv_s on Windows).
void SetEnv(const char* name, const std::string& value);
void UnsetEnv(const char* name);

// A program built beside this test executable (".exe" added on Windows).
std::filesystem::path ProgramBeside(const std::string& name);
// Runs a program to its end with the given arguments; its exit code and what it printed on
// standard output. Processes it starts in turn must not hold on to that output.
struct ProgramResult {
  int exit_code = -1;
  std::string output;
};
ProgramResult RunProgram(const std::filesystem::path& program,
                         const std::vector<std::string>& arguments);

// Open handles of this process (file descriptors on Linux, kernel handles on Windows); -1 if
// they cannot be counted.
long ProcessHandleCount();
// Memory this process holds for its data: bytes allocated from the heap on Linux (mallinfo2),
// the commit charge on Windows (Wine reports no PrivateUsage); -1 if unknown.
long long ProcessMemoryBytes();

// Deterministic pseudo-random bytes.
std::vector<unsigned char> Pattern(std::size_t length, std::uint32_t seed);

// Overwrites bytes of a file (to build corrupt images).
void Patch(const std::filesystem::path& file, std::uint64_t offset,
           const std::vector<unsigned char>& bytes);
void Truncate(const std::filesystem::path& file, std::uint64_t size);
std::uint64_t FileSize(const std::filesystem::path& file);
std::vector<unsigned char> ReadBytes(const std::filesystem::path& file, std::uint64_t offset,
                                     std::size_t length);

}  // namespace vdisk_test
