// VHDX through the C API: create (V1/V2, 4 KiB sectors, differencing), information, user
// metadata and SetVirtualDiskInformation.
#include <gtest/gtest.h>

#include <cstring>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

DWORD CreateVhdx(const WString& path, ULONGLONG size, HANDLE* h, ULONG logical = 0,
                 ULONG physical = 0, const WString& parent = WString(), ULONG block = 0) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX);
  CREATE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MaximumSize = parent.empty() ? size : 0;
  p.Version2.SectorSizeInBytes = logical;
  p.Version2.PhysicalSectorSizeInBytes = physical;
  p.Version2.BlockSizeInBytes = block;
  p.Version2.ParentPath = parent.empty() ? nullptr : parent.c_str();
  return CreateVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                           CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, h);
}

GET_VIRTUAL_DISK_INFO Info(HANDLE h, GET_VIRTUAL_DISK_INFO_VERSION version) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = version;
  ULONG size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS) << version;
  return info;
}

TEST(VhdxApi, CreatesWithWindowsDefaults) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("d.vhdx"), 1ull << 30, &h), ERROR_SUCCESS);
  const auto size = Info(h, GET_VIRTUAL_DISK_INFO_SIZE);
  EXPECT_EQ(size.Size.VirtualSize, 1ull << 30);
  EXPECT_EQ(size.Size.BlockSize, 32u << 20);
  EXPECT_EQ(size.Size.SectorSize, 512u);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK).PhysicalDisk.PhysicalSectorSize, 4096u);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE).VirtualStorageType.DeviceId,
            static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX));
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE).ProviderSubtype, 3u);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(VhdxApi, FourKiBLogicalSectorsEndToEnd) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("4k.vhdx"), 64 << 20, &h, 4096, 4096), ERROR_SUCCESS);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE).Size.SectorSize, 4096u);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(64 << 10, 1);
  ASSERT_EQ(WriteAt(h, 12288, data.data(), 64 << 10), ERROR_SUCCESS);
  unsigned char small[512];
  EXPECT_EQ(ReadAt(h, 512, small, 512), static_cast<DWORD>(ERROR_INVALID_PARAMETER))
      << "I/O must be in whole 4 KiB sectors";
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenV2(dir.Wide("4k.vhdx"), true, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  std::vector<unsigned char> back(64 << 10);
  ASSERT_EQ(ReadAt(h, 12288, back.data(), 64 << 10), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(VhdxApi, DifferencingChainReadsThroughAndReportsItsParent) {
  TempDir dir;
  HANDLE base = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("base.vhdx"), 32 << 20, &base, 0, 0, WString(), 1 << 20),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(base), ERROR_SUCCESS);
  auto reference = Pattern(4 << 20, 2);
  ASSERT_EQ(WriteAt(base, 0, reference.data(), 4 << 20), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(base));
  HANDLE child = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("child.vhdx"), 0, &child, 0, 0, dir.Wide("base.vhdx")),
            ERROR_SUCCESS);
  EXPECT_EQ(Info(child, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE).ProviderSubtype, 4u);
  ASSERT_EQ(AttachRaw(child), ERROR_SUCCESS);
  const auto patch = Pattern(8192, 3);
  ASSERT_EQ(WriteAt(child, 1 << 20, patch.data(), 8192), ERROR_SUCCESS);
  std::memcpy(reference.data() + (1 << 20), patch.data(), 8192);
  std::vector<unsigned char> back(4 << 20);
  ASSERT_EQ(ReadAt(child, 0, back.data(), 4 << 20), ERROR_SUCCESS);
  EXPECT_EQ(back, reference);
  EXPECT_TRUE(CloseHandle(child));
}

TEST(VhdxApi, UserMetadataRoundTrips) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("m.vhdx"), 16 << 20, &h), ERROR_SUCCESS);
  const GUID item{0x1234abcd, 0x1111, 0x2222, {1, 2, 3, 4, 5, 6, 7, 8}};
  const char value[] = "owner=ci;purpose=test";
  ULONG count = 0;
  EXPECT_EQ(EnumerateVirtualDiskMetadata(h, &count, nullptr), ERROR_SUCCESS);
  EXPECT_EQ(count, 0u);
  ASSERT_EQ(SetVirtualDiskMetadata(h, &item, sizeof value, value), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));

  ASSERT_EQ(OpenV2(dir.Wide("m.vhdx"), false, &h), ERROR_SUCCESS);
  count = 0;
  EXPECT_EQ(EnumerateVirtualDiskMetadata(h, &count, nullptr), ERROR_MORE_DATA);
  ASSERT_EQ(count, 1u);
  GUID items[1];
  ASSERT_EQ(EnumerateVirtualDiskMetadata(h, &count, items), ERROR_SUCCESS);
  EXPECT_EQ(std::memcmp(&items[0], &item, sizeof item), 0);
  ULONG size = 4;
  char buffer[64] = {};
  EXPECT_EQ(GetVirtualDiskMetadata(h, &item, &size, buffer), ERROR_INSUFFICIENT_BUFFER);
  EXPECT_EQ(size, sizeof value);
  ASSERT_EQ(GetVirtualDiskMetadata(h, &item, &size, buffer), ERROR_SUCCESS);
  EXPECT_STREQ(buffer, value);
  ASSERT_EQ(DeleteVirtualDiskMetadata(h, &item), ERROR_SUCCESS);
  EXPECT_NE(GetVirtualDiskMetadata(h, &item, &size, buffer), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_NE(DeleteVirtualDiskMetadata(h, &item), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_TRUE(CloseHandle(h));
}

TEST(VhdxApi, SetInformationChangesIdentityAndSectorSize) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("s.vhdx"), 16 << 20, &h), ERROR_SUCCESS);
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID;
  set.VirtualDiskId = GUID{0xdeadbeef, 1, 2, {3, 4, 5, 6, 7, 8, 9, 10}};
  ASSERT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  set.Version = SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE;
  set.VhdPhysicalSectorSize = 512;
  ASSERT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  set.VhdPhysicalSectorSize = 1024;
  EXPECT_EQ(SetVirtualDiskInformation(h, &set), ERROR_INVALID_PARAMETER);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenV2(dir.Wide("s.vhdx"), true, &h), ERROR_SUCCESS);
  const GUID expected{0xdeadbeef, 1, 2, {3, 4, 5, 6, 7, 8, 9, 10}};
  const auto id = Info(h, GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID);
  EXPECT_EQ(std::memcmp(&id.VirtualDiskId, &expected, sizeof expected), 0);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK).PhysicalDisk.PhysicalSectorSize, 512u);
  // A read-only handle may not change anything.
  set.Version = SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE;
  set.VhdPhysicalSectorSize = 4096;
  EXPECT_EQ(SetVirtualDiskInformation(h, &set), ERROR_ACCESS_DENIED);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(VhdxApi, SetParentPathRepairsAMovedChain) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhdx(dir.Wide("base.vhdx"), 16 << 20, &h, 0, 0, WString(), 1 << 20),
            ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(CreateVhdx(dir.Wide("child.vhdx"), 0, &h, 0, 0, dir.Wide("base.vhdx")),
            ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  std::filesystem::create_directories(dir / "moved");
  std::filesystem::rename(dir / "base.vhdx", dir / "moved" / "renamed.vhdx");
  EXPECT_EQ(OpenV2(dir.Wide("child.vhdx"), false, &h), ERROR_VHD_PARENT_VHD_NOT_FOUND);
  // Open without parents, point the child at the moved parent, reopen the chain.
  VIRTUAL_STORAGE_TYPE type{};
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  ASSERT_EQ(OpenVirtualDisk(&type, dir.Wide("child.vhdx").c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &open, &h),
            ERROR_SUCCESS);
  const WString moved = ToWide(dir.path() / "moved" / "renamed.vhdx");
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH;
  set.ParentFilePath = moved.c_str();
  ASSERT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenV2(dir.Wide("child.vhdx"), false, &h), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
}

}  // namespace
}  // namespace vdisk_test
