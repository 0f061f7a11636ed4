// The attached disks as a client of the C API sees them, through the size protocol of
// GetAllAttachedVirtualDiskPhysicalPaths and GetVirtualDiskPhysicalPath. Header-only: for
// programs linked with the library (virtdisk.h), on Linux and Windows.
#pragma once

#ifdef _WIN32
#include <windows.h>
#endif
#include <virtdisk.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vdisk_testing {

// A path of WCHARs as a narrow string (the tests' paths and URIs are ASCII).
inline std::string Narrow(const WCHAR* text) {
  std::string out;
  for (; *text != 0; ++text) out.push_back(static_cast<char>(*text));
  return out;
}

// GetAllAttachedVirtualDiskPhysicalPaths' MULTI_SZ list as strings.
inline std::vector<std::string> AllAttached() {
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

// GetVirtualDiskPhysicalPath of `handle`; "" on failure, with the error in *error if given.
inline std::string PhysicalPath(HANDLE handle, DWORD* error = nullptr) {
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

}  // namespace vdisk_testing
