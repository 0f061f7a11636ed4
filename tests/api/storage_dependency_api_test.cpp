// GetStorageDependencyInformation on virtual disk handles: one entry per file of the
// differencing chain with GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES, both versions of
// STORAGE_DEPENDENCY_INFO, the size protocol, and argument validation. The choices the SDK
// documentation leaves open are described in src/api/storage_dependency.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;

const auto kParents = static_cast<GET_STORAGE_DEPENDENCY_FLAG>(
    GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES | GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE);
constexpr ULONG kHeader = sizeof(STORAGE_DEPENDENCY_INFO);


// A buffer with the answer, asked for as Microsoft's sample does: first with room for the header
// only, then with the size the first call reported.
struct Answer {
  DWORD error = ERROR_SUCCESS;
  ULONG size_used = 0;
  std::vector<unsigned char> bytes;  // exactly size_used bytes
  STORAGE_DEPENDENCY_INFO* info() {
    return reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(bytes.data());
  }
  // Whether a string lies, with its NUL, inside the buffer.
  bool Inside(const WCHAR* s) const {
    const auto* begin = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto* p = reinterpret_cast<const unsigned char*>(s);
    if (p < begin || p >= begin + bytes.size()) return false;
    const std::size_t n = (std::char_traits<WCHAR>::length(s) + 1) * sizeof(WCHAR);
    return p + n <= begin + bytes.size();
  }
};

// Whether HostVolumeName + DependentVolumeRelativePath name `file`. On Linux the volume is the
// mount point ("/" or "/mnt/x/"); on Windows it is the volume's GUID path ("\\?\Volume{...}\"),
// which names the drive, and the relative path is the rest of the file's path.
::testing::AssertionResult NamesFile(const STORAGE_DEPENDENCY_INFO_TYPE_2& e,
                                     const fs::path& file) {
  const std::string volume = Narrow(e.HostVolumeName);
  const std::string relative = Narrow(e.DependentVolumeRelativePath);
#ifdef _WIN32
  const std::string expected = file.relative_path().string();
  if (volume.rfind("\\\\?\\Volume{", 0) != 0 || volume.back() != '\\')
    return ::testing::AssertionFailure() << "host volume " << volume << " is not a volume GUID path";
  if (relative != expected)
    return ::testing::AssertionFailure() << "relative path " << relative << ", expected " << expected;
#else
  if (volume + relative != file.string())
    return ::testing::AssertionFailure() << volume << " + " << relative << " is not " << file;
#endif
  return ::testing::AssertionSuccess();
}

Answer Query(HANDLE h, GET_STORAGE_DEPENDENCY_FLAG flags, STORAGE_DEPENDENCY_INFO_VERSION version) {
  Answer answer;
  alignas(8) unsigned char first[kHeader] = {};
  reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(first)->Version = version;
  answer.error = GetStorageDependencyInformation(
      h, flags, kHeader, reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(first), &answer.size_used);
  if (answer.error == ERROR_SUCCESS) {
    answer.bytes.assign(first, first + kHeader);
    return answer;
  }
  if (answer.error != ERROR_INSUFFICIENT_BUFFER) return answer;
  EXPECT_GT(answer.size_used, kHeader);
  answer.bytes.assign(answer.size_used, 0xCC);
  answer.info()->Version = version;
  ULONG used = 0;
  answer.error = GetStorageDependencyInformation(h, flags, answer.size_used, answer.info(), &used);
  EXPECT_EQ(used, answer.size_used) << "SizeUsed on success is the size asked for before";
  return answer;
}

class StorageDependencyTest : public ::testing::Test {
 protected:
  HANDLE Create(const std::string& name, const WString& parent = WString(), bool fixed = false,
                ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_VHD) {
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVhd(dir_.Wide(name), parent.empty() ? kSize : 0, fixed, &h, 0, parent, device),
              ERROR_SUCCESS);
    return h;
  }
  // A three-level chain base.vhd <- mid.vhd <- top.vhd; returns the files, top first.
  std::vector<fs::path> MakeChain() {
    CloseHandle(Create("base.vhd"));
    CloseHandle(Create("mid.vhd", dir_.Wide("base.vhd")));
    CloseHandle(Create("top.vhd", dir_.Wide("mid.vhd")));
    return {fs::canonical(dir_ / "top.vhd"), fs::canonical(dir_ / "mid.vhd"),
            fs::canonical(dir_ / "base.vhd")};
  }

  static constexpr ULONGLONG kSize = 16ull << 20;
  TempDir dir_;
};

TEST_F(StorageDependencyTest, DifferencingChainNamesEveryLevelTopFirst) {
  const auto files = MakeChain();
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("top.vhd"), false, &h), ERROR_SUCCESS);
  Answer v2 = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(v2.error, ERROR_SUCCESS);
  ASSERT_EQ(v2.info()->Version, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(v2.info()->NumberEntries, 3u);
  const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  for (ULONG i = 0; i < 3; ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    const STORAGE_DEPENDENCY_INFO_TYPE_2& e = v2.info()->Version2Entries[i];
    EXPECT_EQ(e.AncestorLevel, i + 1);
    EXPECT_EQ(e.VirtualStorageType.DeviceId, static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_VHD));
    EXPECT_EQ(std::memcmp(&e.VirtualStorageType.VendorId, &microsoft, sizeof microsoft), 0);
    EXPECT_EQ(e.ProviderSpecificFlags, 0u);
    for (const WCHAR* s : {e.DependencyDeviceName, e.HostVolumeName, e.DependentVolumeName,
                           e.DependentVolumeRelativePath}) {
      ASSERT_NE(s, nullptr);
      EXPECT_TRUE(v2.Inside(s)) << "every string lives in the caller's buffer";
    }
    EXPECT_TRUE(NamesFile(e, files[i])) << "level " << i;
    EXPECT_NE(Narrow(e.DependentVolumeRelativePath).front(), '/');
    EXPECT_EQ(Narrow(e.DependencyDeviceName), "") << "not attached";
    EXPECT_EQ(Narrow(e.DependentVolumeName), "");
    const DWORD flags = e.DependencyTypeFlags;
    EXPECT_EQ((flags & DEPENDENT_DISK_FLAG_PARENT) != 0, i > 0) << std::hex << flags;
    EXPECT_EQ((flags & DEPENDENT_DISK_FLAG_READ_ONLY) != 0, i > 0) << std::hex << flags;
    EXPECT_NE(flags & DEPENDENT_DISK_FLAG_MULT_BACKING_FILES, 0u) << std::hex << flags;
    EXPECT_EQ(flags & (DEPENDENT_DISK_FLAG_FULLY_ALLOCATED | DEPENDENT_DISK_FLAG_NO_DRIVE_LETTER |
                       DEPENDENT_DISK_FLAG_PERMANENT_LIFETIME),
              0u)
        << std::hex << flags;
  }

  // Version 1: the same entries without strings, and exactly that much space.
  Answer v1 = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_1);
  ASSERT_EQ(v1.error, ERROR_SUCCESS);
  EXPECT_EQ(v1.size_used, kHeader + 3 * sizeof(STORAGE_DEPENDENCY_INFO_TYPE_1));
  ASSERT_EQ(v1.info()->NumberEntries, 3u);
  for (ULONG i = 0; i < 3; ++i) {
    EXPECT_EQ(v1.info()->Version1Entries[i].DependencyTypeFlags,
              v2.info()->Version2Entries[i].DependencyTypeFlags);
    EXPECT_EQ(v1.info()->Version1Entries[i].VirtualStorageType.DeviceId,
              static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_VHD));
  }
  CloseHandle(h);

  // NO_PARENTS: the handle knows only its own file.
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  ASSERT_EQ(OpenVirtualDisk(&type, dir_.Wide("top.vhd").c_str(), VIRTUAL_DISK_ACCESS_GET_INFO,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, nullptr, &h),
            ERROR_SUCCESS);
  Answer alone = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(alone.error, ERROR_SUCCESS);
  EXPECT_EQ(alone.info()->NumberEntries, 1u);
  CloseHandle(h);
}

TEST_F(StorageDependencyTest, SingleDiskHasOneEntryThatFollowsItsAttachment) {
  HANDLE h = Create("fixed.vhdx", WString(), /*fixed=*/true, VIRTUAL_STORAGE_TYPE_DEVICE_VHDX);
  Answer a = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(a.error, ERROR_SUCCESS);
  ASSERT_EQ(a.info()->NumberEntries, 1u);
  const auto& e = a.info()->Version2Entries[0];
  EXPECT_EQ(e.AncestorLevel, 1u);
  EXPECT_EQ(e.VirtualStorageType.DeviceId, static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX));
  EXPECT_EQ(e.DependencyTypeFlags, DEPENDENT_DISK_FLAG_FULLY_ALLOCATED);
  EXPECT_TRUE(NamesFile(e, fs::canonical(dir_ / "fixed.vhdx")));

  // Without HOST_VOLUMES the question is what the disk hosts: nothing.
  Answer hosted =
      Query(h, GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(hosted.error, ERROR_SUCCESS);
  EXPECT_EQ(hosted.size_used, kHeader);
  EXPECT_EQ(hosted.info()->NumberEntries, 0u);

  // Raw I/O attachment: no host disk, no drive letter.
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  a = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(a.error, ERROR_SUCCESS);
  EXPECT_EQ(a.info()->Version2Entries[0].DependencyTypeFlags,
            DEPENDENT_DISK_FLAG_FULLY_ALLOCATED | DEPENDENT_DISK_FLAG_NO_DRIVE_LETTER |
                DEPENDENT_DISK_FLAG_NO_HOST_DISK);
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  CloseHandle(h);
}

TEST_F(StorageDependencyTest, ExportedDiskNamesItsPhysicalPath) {
  TempDir run;
  SetEnv("VIRTDISK_RUNTIME_DIR", run.path().string());
  HANDLE h = Create("disk.vhdx", WString(), false, VIRTUAL_STORAGE_TYPE_DEVICE_VHDX);
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ASSERT_EQ(AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, 0, &params, nullptr),
            ERROR_SUCCESS);
  ULONG size = 0;
  ASSERT_EQ(GetVirtualDiskPhysicalPath(h, &size, nullptr),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  std::vector<WCHAR> path(size / sizeof(WCHAR));
  ASSERT_EQ(GetVirtualDiskPhysicalPath(h, &size, path.data()), ERROR_SUCCESS);
  Answer a = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(a.error, ERROR_SUCCESS);
  ASSERT_EQ(a.info()->NumberEntries, 1u);
  const auto& e = a.info()->Version2Entries[0];
  EXPECT_EQ(Narrow(e.DependencyDeviceName), Narrow(path.data()));
  EXPECT_TRUE(a.Inside(e.DependencyDeviceName));
  EXPECT_EQ(e.DependencyTypeFlags,
            DEPENDENT_DISK_FLAG_READ_ONLY | DEPENDENT_DISK_FLAG_NO_DRIVE_LETTER);
  CloseHandle(h);
  UnsetEnv("VIRTDISK_RUNTIME_DIR");
}

TEST_F(StorageDependencyTest, TooSmallBufferGetsTheSizeNeeded) {
  MakeChain();
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("top.vhd"), true, &h), ERROR_SUCCESS);
  const Answer full = Query(h, kParents, STORAGE_DEPENDENCY_INFO_VERSION_2);
  ASSERT_EQ(full.error, ERROR_SUCCESS);
  std::vector<unsigned char> buffer(full.size_used, 0xCC);
  auto* info = reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(buffer.data());
  info->Version = STORAGE_DEPENDENCY_INFO_VERSION_2;
  ULONG used = 0;
  EXPECT_EQ(GetStorageDependencyInformation(h, kParents, full.size_used - 1, info, &used),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  EXPECT_EQ(used, full.size_used);
  EXPECT_EQ(GetStorageDependencyInformation(h, kParents, full.size_used - 1, info, nullptr),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER))
      << "SizeUsed is optional";
  // Space for the version 1 answer is too little for version 2's strings.
  used = 0;
  const ULONG v1_size = kHeader + 3 * sizeof(STORAGE_DEPENDENCY_INFO_TYPE_1);
  EXPECT_EQ(GetStorageDependencyInformation(h, kParents, v1_size, info, &used),
            static_cast<DWORD>(ERROR_INSUFFICIENT_BUFFER));
  EXPECT_EQ(used, full.size_used);
  // Microsoft's sample retries without DISK_HANDLE; a virtual disk handle is a disk either way.
  EXPECT_EQ(GetStorageDependencyInformation(h, GET_STORAGE_DEPENDENCY_FLAG_PARENTS, full.size_used,
                                            info, nullptr),
            ERROR_SUCCESS);
  EXPECT_EQ(info->NumberEntries, 3u);
  EXPECT_NE(info->Version2Entries[0].DependencyTypeFlags & DEPENDENT_DISK_FLAG_READ_ONLY, 0u)
      << "the handle is read-only";
  CloseHandle(h);
}

TEST_F(StorageDependencyTest, BadArgumentsAreRefusedInWindowsOrder) {
  HANDLE h = Create("disk.vhd");
  alignas(8) unsigned char buffer[1024] = {};  // room for a Windows temporary path
  auto* info = reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(buffer);
  info->Version = STORAGE_DEPENDENCY_INFO_VERSION_2;
  ULONG used = 0;
  const auto expect = [&](DWORD expected, HANDLE handle, DWORD flags, ULONG size,
                          STORAGE_DEPENDENCY_INFO* out, const char* what) {
    const DWORD got = GetStorageDependencyInformation(
        handle, static_cast<GET_STORAGE_DEPENDENCY_FLAG>(flags), size, out, &used);
    EXPECT_EQ(got, expected) << what << ": expected " << expected << ", got " << got;
  };
  expect(ERROR_INVALID_PARAMETER, h, kParents, sizeof buffer, nullptr, "NULL buffer");
  expect(ERROR_INVALID_PARAMETER, nullptr, kParents, sizeof buffer, nullptr,
         "NULL buffer before the handle");
  expect(ERROR_INVALID_PARAMETER, h, kParents | 0x4, sizeof buffer, info, "unknown flag bit");
  expect(ERROR_INVALID_PARAMETER, nullptr, 0x80000000u, sizeof buffer, info,
         "flags before the handle");
  expect(ERROR_INVALID_PARAMETER, h, kParents, kHeader - 1, info, "no room for the Version");
  for (const ULONG version : {0u, 3u}) {
    info->Version = static_cast<STORAGE_DEPENDENCY_INFO_VERSION>(version);
    expect(ERROR_INVALID_PARAMETER, h, kParents, sizeof buffer, info, "bad version");
    expect(ERROR_INVALID_PARAMETER, nullptr, kParents, sizeof buffer, info,
           "version before the handle");
  }
  info->Version = STORAGE_DEPENDENCY_INFO_VERSION_2;
  expect(ERROR_INVALID_HANDLE, nullptr, kParents, sizeof buffer, info, "NULL handle");
  expect(ERROR_INVALID_HANDLE, reinterpret_cast<HANDLE>(0x7777), kParents, sizeof buffer, info,
         "unknown handle");
  expect(ERROR_SUCCESS, h, kParents, sizeof buffer, info, "all good");
  EXPECT_EQ(info->NumberEntries, 1u);
  CloseHandle(h);
  expect(ERROR_INVALID_HANDLE, h, kParents, sizeof buffer, info, "closed handle");
}

#ifdef _WIN32

// The system's own volumes and drives are on no virtual disk: success, no entries (Wine's
// implementation and conformance test; see IsStorageHandleOffVirtualDisks in
// src/api/storage_dependency.cpp for the sources and what they leave open).
struct StorageObject {
  const wchar_t* path;
  DWORD flags;
};

TEST(StorageDependencyOfSystemStorage, VolumeDriveAndRootHaveNoEntries) {
  for (const StorageObject& object :
       {StorageObject{L"\\\\.\\C:", 0}, StorageObject{L"C:\\", FILE_FLAG_BACKUP_SEMANTICS},
        StorageObject{L"\\\\.\\PhysicalDrive0", 0}}) {
    const std::string name = Narrow(object.path);
    HANDLE h = CreateFileW(object.path, 0, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                           OPEN_EXISTING, object.flags, nullptr);
    ASSERT_NE(h, INVALID_HANDLE_VALUE) << name << ": " << GetLastError();
    for (const ULONG flags : {ULONG{GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES}, ULONG{0},
                              ULONG{kParents}}) {
      for (const auto version : {STORAGE_DEPENDENCY_INFO_VERSION_1,
                                 STORAGE_DEPENDENCY_INFO_VERSION_2}) {
        alignas(STORAGE_DEPENDENCY_INFO) unsigned char buffer[512];
        std::memset(buffer, 0xCC, sizeof buffer);
        auto* info = reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(buffer);
        info->Version = version;
        ULONG used = 0;
        EXPECT_EQ(GetStorageDependencyInformation(h, static_cast<GET_STORAGE_DEPENDENCY_FLAG>(flags),
                                                  sizeof buffer, info, &used),
                  static_cast<DWORD>(ERROR_SUCCESS))
            << name << ", flags " << flags << ", version " << version;
        EXPECT_EQ(info->NumberEntries, 0u) << name;
        EXPECT_EQ(used, 8u) << name << ": the header only";
      }
    }
    // The argument checks come first, as for any handle (Wine's conformance test).
    alignas(STORAGE_DEPENDENCY_INFO) unsigned char buffer[kHeader];
    auto* info = reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(buffer);
    info->Version = STORAGE_DEPENDENCY_INFO_VERSION_2;
    EXPECT_EQ(GetStorageDependencyInformation(h, GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE, 0, info,
                                              nullptr),
              static_cast<DWORD>(ERROR_INVALID_PARAMETER));
    EXPECT_EQ(GetStorageDependencyInformation(h, GET_STORAGE_DEPENDENCY_FLAG_DISK_HANDLE, kHeader,
                                              nullptr, nullptr),
              static_cast<DWORD>(ERROR_INVALID_PARAMETER));
    CloseHandle(h);
  }
}

TEST(StorageDependencyOfSystemStorage, AFileOrDirectoryOnAVolumeIsNoStorageObject) {
  TempDir dir;
  const fs::path file = dir / "plain.bin";
  { std::ofstream(file) << "x"; }
  for (const StorageObject& object :
       {StorageObject{file.c_str(), 0}, StorageObject{dir.path().c_str(),
                                                      FILE_FLAG_BACKUP_SEMANTICS}}) {
    HANDLE h = CreateFileW(object.path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                           OPEN_EXISTING, object.flags, nullptr);
    ASSERT_NE(h, INVALID_HANDLE_VALUE) << GetLastError();
    alignas(STORAGE_DEPENDENCY_INFO) unsigned char buffer[512];
    auto* info = reinterpret_cast<STORAGE_DEPENDENCY_INFO*>(buffer);
    info->Version = STORAGE_DEPENDENCY_INFO_VERSION_2;
    EXPECT_EQ(GetStorageDependencyInformation(h, GET_STORAGE_DEPENDENCY_FLAG_HOST_VOLUMES,
                                              sizeof buffer, info, nullptr),
              static_cast<DWORD>(ERROR_INVALID_HANDLE))
        << Narrow(object.path);
    CloseHandle(h);
  }
}

#endif  // _WIN32

}  // namespace
}  // namespace vdisk_test
