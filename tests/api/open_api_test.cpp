// OpenVirtualDisk: argument validation in Windows' order, handles, access.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

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
      // Version 1 needs an access mask (OpenVirtualDisk's documentation asks for "a valid value"
      // of VIRTUAL_DISK_ACCESS_MASK; ACCESS_NONE grants nothing a V1 handle could use): our
      // reading, Windows' answer for an existing file is not documented...
      {"version 1 with no access", &type, path_.c_str(), VIRTUAL_DISK_ACCESS_NONE,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_INVALID_PARAMETER},
      // ...but Windows looks for the file before it refuses ACCESS_NONE (Wine's conformance
      // test, dlls/virtdisk/tests/virtdisk.c, passes on Windows with ERROR_FILE_NOT_FOUND).
      {"version 1 with no access, missing file", &type, missing.c_str(), VIRTUAL_DISK_ACCESS_NONE,
       OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_FILE_NOT_FOUND},
      {"version 1 with no access, missing directory", &type, missing_dir.c_str(),
       VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE, &v1, &h, ERROR_PATH_NOT_FOUND},
      // The mask's unknown bits still come first, before the file.
      {"version 1, unknown mask bits, missing file", &type, missing.c_str(), 0xffffff,
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

// The calls of Wine's test_OpenVirtualDisk (dlls/virtdisk/tests/virtdisk.c), with the answers
// Windows 10 gives: a relative name that does not exist, type and vendor unknown.
TEST_F(OpenVirtualDiskTest, AnswersAsWindowsDoesInWinesConformanceTest) {
  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN;
  type.VendorId = VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN;
  const WString name = ToWide("vdisk-conformance-missing.vhd");
  ASSERT_FALSE(std::filesystem::exists("vdisk-conformance-missing.vhd"));
  HANDLE h = nullptr;
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  EXPECT_EQ(OpenVirtualDisk(nullptr, nullptr, VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, nullptr, &h),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(OpenVirtualDisk(&type, nullptr, VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, nullptr, &h),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  params.Version = OPEN_VIRTUAL_DISK_VERSION_3;
  EXPECT_EQ(OpenVirtualDisk(&type, name.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &params, &h),
            static_cast<DWORD>(ERROR_FILE_NOT_FOUND));
  params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  EXPECT_EQ(OpenVirtualDisk(&type, name.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &params, &h),
            static_cast<DWORD>(ERROR_FILE_NOT_FOUND));
  params.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  EXPECT_EQ(OpenVirtualDisk(&type, name.c_str(), static_cast<VIRTUAL_DISK_ACCESS_MASK>(0xffffff),
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &params, &h),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  // Wine's todo_wine case: version 1, no access, no flags.
  const DWORD got = OpenVirtualDisk(&type, name.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                                    OPEN_VIRTUAL_DISK_FLAG_NONE, &params, &h);
  EXPECT_EQ(got, static_cast<DWORD>(ERROR_FILE_NOT_FOUND))
      << "expected ERROR_FILE_NOT_FOUND, got " << got;
}

// OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS "is used to correct broken parent links" (Microsoft's
// OPEN_VIRTUAL_DISK_FLAG documentation): such a handle reads the differencing disk's own
// information, but does not serve its data, which it could only give wrong (zeros where the
// parent holds data).
TEST_F(OpenVirtualDiskTest, NoParentsHandleQueriesButDoesNotServeData) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path_, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(4096, 3);
  ASSERT_EQ(WriteAt(h, 0, data.data(), 4096), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  const WString child = dir_.Wide("child.vhd");
  ASSERT_EQ(CreateVhd(child, 0, false, &h, 0, path_), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));

  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  params.Version2.ReadOnly = TRUE;
  HANDLE alone = nullptr;
  ASSERT_EQ(OpenVirtualDisk(&type, child.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &params, &alone),
            ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE;
  ULONG size = sizeof info;
  ASSERT_EQ(GetVirtualDiskInformation(alone, &size, &info, nullptr), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 4u) << "differencing";
  EXPECT_EQ(AttachRaw(alone, true), static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  EXPECT_EQ(AttachVirtualDisk(alone, nullptr, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, 0, &attach,
                              nullptr),
            static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  std::vector<unsigned char> back(4096);
  EXPECT_EQ(ReadAt(alone, 0, back.data(), 4096), static_cast<DWORD>(ERROR_NOT_READY));

  // A full open of the same file beside it gets the whole chain, not the partial disk.
  HANDLE full = nullptr;
  ASSERT_EQ(OpenV2(child, true, &full), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(full, true), ERROR_SUCCESS);
  ASSERT_EQ(ReadAt(full, 0, back.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(back, data) << "the parent's data through the full handle";
  EXPECT_EQ(ReadAt(alone, 0, back.data(), 4096), static_cast<DWORD>(ERROR_NOT_READY))
      << "the NO_PARENTS handle does not share the full handle's attachment";
  EXPECT_TRUE(CloseHandle(full));
  EXPECT_TRUE(CloseHandle(alone));

  // A disk without a parent has nothing to leave out: it attaches as usual.
  ASSERT_EQ(OpenVirtualDisk(&type, path_.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &params, &alone),
            ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(alone, true), ERROR_SUCCESS);
  ASSERT_EQ(ReadAt(alone, 0, back.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(CloseHandle(alone));
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
  // As Windows' CreateFileW answers for a directory (special_file_api_test.cpp says why).
  EXPECT_EQ(OpenV2(dir, true, &h), ERROR_ACCESS_DENIED);
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
