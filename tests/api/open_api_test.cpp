// OpenVirtualDisk: argument validation in Windows' order, handles, access.
#include <gtest/gtest.h>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

class OpenVirtualDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Wide("disk.vhd");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(path_, 8 << 20, false, &h), ERROR_SUCCESS);
    ASSERT_TRUE(CloseHandle(h));
  }
  TempDir dir_;
  WString path_;
};

TEST_F(OpenVirtualDiskTest, OpensWithVersion1AndReadMask) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  params.Version1.RWDepth = OPEN_VIRTUAL_DISK_RW_DEPTH_DEFAULT;
  HANDLE h = nullptr;
  ASSERT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_READ,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &params, &h),
            ERROR_SUCCESS);
  EXPECT_NE(h, nullptr);
  EXPECT_NE(h, INVALID_HANDLE_VALUE);
  EXPECT_EQ(VirtualSize(h), 8u << 20);
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(OpenVirtualDiskTest, OpensWithNullParametersAsVersion1) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_ALL,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(OpenVirtualDiskTest, Version2TakesAccessNone) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path_, false, &h), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(OpenVirtualDiskTest, ValidatesInWindowsOrder) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  OPEN_VIRTUAL_DISK_PARAMETERS v1{};
  v1.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  v1.Version1.RWDepth = 1;
  OPEN_VIRTUAL_DISK_PARAMETERS bad_version{};
  bad_version.Version = static_cast<OPEN_VIRTUAL_DISK_VERSION>(7);
  OPEN_VIRTUAL_DISK_PARAMETERS v2{};
  v2.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  const WString missing = dir_.Wide("missing.vhd");
  const WString missing_dir = dir_.Wide("no-such-dir/disk.vhd");
  HANDLE h = nullptr;
  struct Case {
    const char* what;
    PVIRTUAL_STORAGE_TYPE type;
    PCWSTR path;
    DWORD mask;  // raw values: some are not valid enumerators
    DWORD flags;
    POPEN_VIRTUAL_DISK_PARAMETERS params;
    PHANDLE handle;
    DWORD expected;
  };
  const DWORD bad_mask = 0x1;
  const DWORD bad_flags = 0x80000000u;
  const Case cases[] = {
      {"NULL type", nullptr, path_.c_str(), VIRTUAL_DISK_ACCESS_ALL, OPEN_VIRTUAL_DISK_FLAG_NONE,
       &v1, &h, ERROR_INVALID_PARAMETER},
      {"NULL path", &type, nullptr, VIRTUAL_DISK_ACCESS_ALL, OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h,
       ERROR_INVALID_PARAMETER},
      {"NULL handle", &type, path_.c_str(), VIRTUAL_DISK_ACCESS_ALL, OPEN_VIRTUAL_DISK_FLAG_NONE,
       &v1, nullptr, ERROR_INVALID_PARAMETER},
      // The mask is checked before the version and before the file.
      {"unknown mask bit", &type, missing.c_str(), bad_mask, OPEN_VIRTUAL_DISK_FLAG_NONE,
       &bad_version, &h, ERROR_INVALID_PARAMETER},
      {"unknown flag bit", &type, missing.c_str(), VIRTUAL_DISK_ACCESS_ALL, bad_flags,
       &bad_version, &h, ERROR_INVALID_PARAMETER},
      {"unknown version", &type, missing.c_str(), VIRTUAL_DISK_ACCESS_ALL,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &bad_version, &h, ERROR_INVALID_PARAMETER},
      {"version 2 with an access mask", &type, path_.c_str(), VIRTUAL_DISK_ACCESS_READ,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v2, &h, ERROR_INVALID_PARAMETER},
      {"version 1 with no access", &type, path_.c_str(), VIRTUAL_DISK_ACCESS_NONE,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_INVALID_PARAMETER},
      {"missing file", &type, missing.c_str(), VIRTUAL_DISK_ACCESS_ALL,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_FILE_NOT_FOUND},
      {"missing directory", &type, missing_dir.c_str(), VIRTUAL_DISK_ACCESS_ALL,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_PATH_NOT_FOUND},
  };
  for (const Case& c : cases) {
    const DWORD got =
        OpenVirtualDisk(c.type, c.path, static_cast<VIRTUAL_DISK_ACCESS_MASK>(c.mask),
                        static_cast<OPEN_VIRTUAL_DISK_FLAG>(c.flags), c.params, c.handle);
    EXPECT_EQ(got, c.expected) << c.what << ": expected " << c.expected << ", got " << got;
    if (got == ERROR_SUCCESS) CloseHandle(h);
  }
}

TEST_F(OpenVirtualDiskTest, UnknownVendorOrDeviceIsProviderNotFound) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  type.VendorId.Data1 = 0x12345678;
  HANDLE h = nullptr;
  EXPECT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_ALL,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_VIRTDISK_PROVIDER_NOT_FOUND);
  VIRTUAL_STORAGE_TYPE device = StorageType(99);
  EXPECT_EQ(OpenVirtualDisk(&device, path_.c_str(), VIRTUAL_DISK_ACCESS_ALL,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_VIRTDISK_PROVIDER_NOT_FOUND);
}

TEST_F(OpenVirtualDiskTest, DirectoryIsNotAnImage) {
  HANDLE h = nullptr;
  const WString dir = ToWide(dir_.path());
  EXPECT_EQ(OpenV2(dir, true, &h), ERROR_DIRECTORY);
}

TEST_F(OpenVirtualDiskTest, ClosedAndBogusHandlesAreInvalid) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path_, true, &h), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_INVALID_HANDLE);
#ifdef _WIN32
  // The kernel hands a closed value out again at once, here possibly to an object of the thread
  // runtime or of the DLL: closing it again is only right while nothing holds it.
  DWORD flags = 0;
  if (GetHandleInformation(h, &flags)) {
    EXPECT_NE(GetFileType(h), static_cast<DWORD>(FILE_TYPE_PIPE)) << "the disk handle is closed";
  } else {
    EXPECT_FALSE(CloseHandle(h));
    EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
  }
#else
  EXPECT_FALSE(CloseHandle(h));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
#endif
#ifndef _WIN32
  // Forged values are answered, not dereferenced (on Windows the kernel answers for us).
  for (HANDLE bogus : {reinterpret_cast<HANDLE>(0x1234), reinterpret_cast<HANDLE>(0x7fff0000),
                       INVALID_HANDLE_VALUE, static_cast<HANDLE>(nullptr)}) {
    EXPECT_EQ(GetVirtualDiskInformation(bogus, &size, &info, nullptr), ERROR_INVALID_HANDLE);
    EXPECT_EQ(DetachVirtualDisk(bogus, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_INVALID_HANDLE);
    EXPECT_EQ(AttachVirtualDisk(bogus, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0,
                                nullptr, nullptr),
              ERROR_INVALID_HANDLE);
    // Valid arguments, so that only the handle is wrong.
    const WString target = dir_.Wide("mirror.vhd");
    MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
    mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
    mirror.Version1.MirrorVirtualDiskPath = target.c_str();
    OVERLAPPED ov{};
    EXPECT_EQ(MirrorVirtualDisk(bogus, MIRROR_VIRTUAL_DISK_FLAG_NONE, &mirror, &ov),
              ERROR_INVALID_HANDLE);
    VIRTUAL_DISK_PROGRESS progress{};
    EXPECT_EQ(GetVirtualDiskOperationProgress(bogus, &ov, &progress), ERROR_INVALID_HANDLE);
    EXPECT_EQ(BreakMirrorVirtualDisk(bogus), ERROR_INVALID_HANDLE);
    EXPECT_FALSE(CloseHandle(bogus));
  }
#endif
}

TEST_F(OpenVirtualDiskTest, SecondWriterInProcessSharesTheDisk) {
  HANDLE a = nullptr;
  HANDLE b = nullptr;
  ASSERT_EQ(OpenV2(path_, false, &a), ERROR_SUCCESS);
  ASSERT_EQ(OpenV2(path_, false, &b), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(a), ERROR_SUCCESS);
  const auto data = Pattern(4096, 7);
  ASSERT_EQ(WriteAt(a, 1 << 20, data.data(), 4096), ERROR_SUCCESS);
  std::vector<unsigned char> back(4096);
  // The second handle sees the same disk object, attached through the first.
  ASSERT_EQ(ReadAt(b, 1 << 20, back.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(CloseHandle(a));
  EXPECT_TRUE(CloseHandle(b));
}

TEST_F(OpenVirtualDiskTest, ReadOnlyHandleCannotAttachForWriting) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path_, true, &h), ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(h, false), ERROR_ACCESS_DENIED);
  EXPECT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(OpenVirtualDiskTest, DetachNeedsZeroFlagsAndAnAttachment) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path_, false, &h), ERROR_SUCCESS);
  EXPECT_EQ(DetachVirtualDisk(h, static_cast<DETACH_VIRTUAL_DISK_FLAG>(1), 0),
            ERROR_INVALID_PARAMETER);
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
            ERROR_VIRTDISK_NOT_VIRTUAL_DISK);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  char buffer[512];
  EXPECT_EQ(ReadAt(h, 0, buffer, sizeof buffer), static_cast<DWORD>(ERROR_NOT_READY));
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(OpenVirtualDiskTest, Version1HandleWithoutDetachAccessCannotDetach) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_GET_INFO,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_SUCCESS);
  EXPECT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_ACCESS_DENIED);
  EXPECT_EQ(AttachRaw(h, true), ERROR_ACCESS_DENIED);
  EXPECT_TRUE(CloseHandle(h));
}

}  // namespace
}  // namespace vdisk_test
