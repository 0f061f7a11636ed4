// CreateVirtualDisk and GetVirtualDiskInformation through the C API.
#include <gtest/gtest.h>

#include <cstring>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

DWORD Info(HANDLE h, GET_VIRTUAL_DISK_INFO_VERSION version, GET_VIRTUAL_DISK_INFO* info,
           ULONG* used = nullptr) {
  std::memset(info, 0, sizeof *info);
  info->Version = version;
  ULONG size = sizeof *info;
  return GetVirtualDiskInformation(h, &size, info, used);
}

TEST(CreateVirtualDisk, CreatesDynamicVhdWithExactSizeAndDefaults) {
  TempDir dir;
  HANDLE h = nullptr;
  const ULONGLONG size = (64ull << 20) + 512;  // not a CHS-friendly size
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), size, false, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info;
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.Size.VirtualSize, size);
  EXPECT_EQ(info.Size.BlockSize, 2u << 20);
  EXPECT_EQ(info.Size.SectorSize, 512u);
  EXPECT_LT(info.Size.PhysicalSize, 1u << 20) << "a new dynamic disk must be small";
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 3u);
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.VirtualStorageType.DeviceId, static_cast<ULONG>(VIRTUAL_STORAGE_TYPE_DEVICE_VHD));
  const GUID microsoft = VIRTDISK_GUID_INIT_VENDOR_MICROSOFT;
  EXPECT_EQ(std::memcmp(&info.VirtualStorageType.VendorId, &microsoft, sizeof(GUID)), 0);
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.PhysicalDisk.LogicalSectorSize, 512u);
  EXPECT_EQ(info.PhysicalDisk.IsRemote, FALSE);
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_IS_LOADED, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.IsLoaded, FALSE);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(CreateVirtualDisk, CreatesFixedVhd) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("f.vhd"), 16 << 20, true, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info;
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.Size.VirtualSize, 16u << 20);
  EXPECT_EQ(info.Size.PhysicalSize, (16u << 20) + 512);
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 2u);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(CreateVirtualDisk, KeepsTheUniqueIdGiven) {
  TempDir dir;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_1;
  params.Version1.MaximumSize = 4 << 20;
  params.Version1.SectorSizeInBytes = 512;
  params.Version1.UniqueId = GUID{0x11223344, 0x5566, 0x7788, {1, 2, 3, 4, 5, 6, 7, 8}};
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVirtualDisk(&type, dir.Wide("id.vhd").c_str(), VIRTUAL_DISK_ACCESS_ALL, nullptr,
                              CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, &h),
            ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info;
  ASSERT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_IDENTIFIER, &info), ERROR_SUCCESS);
  EXPECT_EQ(std::memcmp(&info.Identifier, &params.Version1.UniqueId, sizeof(GUID)), 0);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(CreateVirtualDisk, RejectsBadParameters) {
  TempDir dir;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  HANDLE h = nullptr;
  auto create = [&](CREATE_VIRTUAL_DISK_PARAMETERS p, const char* name,
                    VIRTUAL_DISK_ACCESS_MASK mask = VIRTUAL_DISK_ACCESS_NONE,
                    CREATE_VIRTUAL_DISK_FLAG flags = CREATE_VIRTUAL_DISK_FLAG_NONE) {
    const DWORD e = CreateVirtualDisk(&type, dir.Wide(name).c_str(), mask, nullptr, flags, 0, &p,
                                      nullptr, &h);
    if (e == ERROR_SUCCESS) CloseHandle(h);
    return e;
  };
  CREATE_VIRTUAL_DISK_PARAMETERS ok{};
  ok.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  ok.Version2.MaximumSize = 4 << 20;
  auto p = ok;
  p.Version2.MaximumSize = 0;
  EXPECT_EQ(create(p, "zero.vhd"), ERROR_INVALID_PARAMETER) << "size 0 without parent or source";
  p = ok;
  p.Version2.MaximumSize = (4 << 20) + 100;
  EXPECT_EQ(create(p, "odd.vhd"), ERROR_INVALID_PARAMETER) << "size not a multiple of 512";
  p = ok;
  p.Version2.BlockSizeInBytes = 1 << 20;
  EXPECT_EQ(create(p, "block.vhd"), ERROR_INVALID_PARAMETER) << "VHD blocks are 512 KiB or 2 MiB";
  p = ok;
  p.Version2.SectorSizeInBytes = 4096;
  EXPECT_NE(create(p, "sector.vhd"), static_cast<DWORD>(ERROR_SUCCESS)) << "VHD sectors are 512";
  p = ok;
  p.Version2.MaximumSize = 2041ull << 30;
  EXPECT_NE(create(p, "huge.vhd"), static_cast<DWORD>(ERROR_SUCCESS)) << "VHD ends at 2040 GiB";
  p = ok;
  p.Version = static_cast<CREATE_VIRTUAL_DISK_VERSION>(9);
  EXPECT_EQ(create(p, "version.vhd"), ERROR_INVALID_PARAMETER);
  EXPECT_EQ(create(ok, "mask.vhd", VIRTUAL_DISK_ACCESS_ALL), ERROR_INVALID_PARAMETER)
      << "version 2 takes VIRTUAL_DISK_ACCESS_NONE";
  EXPECT_EQ(create(ok, "flags.vhd", VIRTUAL_DISK_ACCESS_NONE,
                   static_cast<CREATE_VIRTUAL_DISK_FLAG>(0x40000000)),
            ERROR_INVALID_PARAMETER);
  EXPECT_EQ(CreateVirtualDisk(&type, dir.Wide("null.vhd").c_str(), VIRTUAL_DISK_ACCESS_NONE,
                              nullptr, CREATE_VIRTUAL_DISK_FLAG_NONE, 0, nullptr, nullptr, &h),
            ERROR_INVALID_PARAMETER);
  ASSERT_EQ(create(ok, "exists.vhd"), ERROR_SUCCESS);
  EXPECT_EQ(create(ok, "exists.vhd"), ERROR_FILE_EXISTS);
  // Nothing is left behind by a refused create.
  EXPECT_FALSE(std::filesystem::exists(dir / "odd.vhd"));
  EXPECT_FALSE(std::filesystem::exists(dir / "block.vhd"));
}

TEST(CreateVirtualDisk, DifferencingChainReportsItsParent) {
  TempDir dir;
  HANDLE base = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("base.vhd"), 8 << 20, false, &base), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO base_id;
  ASSERT_EQ(Info(base, GET_VIRTUAL_DISK_INFO_IDENTIFIER, &base_id), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(base));

  HANDLE child = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("child.vhd"), 0, false, &child, 0, dir.Wide("base.vhd")),
            ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info;
  ASSERT_EQ(Info(child, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 4u);
  ASSERT_EQ(Info(child, GET_VIRTUAL_DISK_INFO_SIZE, &info), ERROR_SUCCESS);
  EXPECT_EQ(info.Size.VirtualSize, 8u << 20);
  ASSERT_EQ(Info(child, GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER, &info), ERROR_SUCCESS);
  EXPECT_EQ(std::memcmp(&info.ParentIdentifier, &base_id.Identifier, sizeof(GUID)), 0);

  // PARENT_LOCATION follows the size protocol: too small a buffer gives the size needed.
  GET_VIRTUAL_DISK_INFO small{};
  small.Version = GET_VIRTUAL_DISK_INFO_PARENT_LOCATION;
  ULONG size = 12;
  ULONG used = 0;
  ASSERT_EQ(GetVirtualDiskInformation(child, &size, &small, &used), ERROR_INSUFFICIENT_BUFFER);
  ASSERT_GT(size, 12u);
  std::vector<unsigned char> buffer(size);
  auto* location = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(buffer.data());
  location->Version = GET_VIRTUAL_DISK_INFO_PARENT_LOCATION;
  ASSERT_EQ(GetVirtualDiskInformation(child, &size, location, &used), ERROR_SUCCESS);
  EXPECT_EQ(used, size);
  EXPECT_EQ(location->ParentLocation.ParentResolved, TRUE);
  const WString parent(location->ParentLocation.ParentLocationBuffer);
  const WString expected = dir.Wide("base.vhd");
  EXPECT_EQ(std::filesystem::path(std::wstring(parent.begin(), parent.end())),
            std::filesystem::path(std::wstring(expected.begin(), expected.end())));
  EXPECT_TRUE(CloseHandle(child));

  // A base disk has no parent.
  ASSERT_EQ(OpenV2(dir.Wide("base.vhd"), true, &base), ERROR_SUCCESS);
  EXPECT_EQ(Info(base, GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER, &info), ERROR_VHD_INVALID_TYPE);
  EXPECT_TRUE(CloseHandle(base));
}

TEST(GetVirtualDiskInformation, FollowsTheSizeProtocol) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("s.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = 16;
  ULONG used = 0;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, &used), ERROR_INSUFFICIENT_BUFFER);
  EXPECT_EQ(size, 32u);
  EXPECT_EQ(GetVirtualDiskInformation(h, nullptr, &info, &used), ERROR_INVALID_PARAMETER);
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, nullptr, &used), ERROR_INVALID_PARAMETER);
  info.Version = static_cast<GET_VIRTUAL_DISK_INFO_VERSION>(99);
  size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, &used), ERROR_INVALID_PARAMETER);
  GET_VIRTUAL_DISK_INFO_VERSION versions[] = {
      GET_VIRTUAL_DISK_INFO_IDENTIFIER,    GET_VIRTUAL_DISK_INFO_VIRTUAL_STORAGE_TYPE,
      GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE, GET_VIRTUAL_DISK_INFO_IS_4K_ALIGNED,
      GET_VIRTUAL_DISK_INFO_PHYSICAL_DISK, GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE,
      GET_VIRTUAL_DISK_INFO_FRAGMENTATION, GET_VIRTUAL_DISK_INFO_IS_LOADED,
      GET_VIRTUAL_DISK_INFO_VIRTUAL_DISK_ID};
  for (auto v : versions) {
    EXPECT_EQ(Info(h, v, &info, &used), ERROR_SUCCESS) << "version " << v;
    EXPECT_GT(used, 8u) << "version " << v;
    EXPECT_LE(used, sizeof info) << "version " << v;
  }
  EXPECT_TRUE(CloseHandle(h));
}

TEST(CreateVirtualDisk, CompletesAnOverlappedRequest) {
  TempDir dir;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = 4 << 20;
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  HANDLE h = nullptr;
  const DWORD e = CreateVirtualDisk(&type, dir.Wide("async.vhd").c_str(), VIRTUAL_DISK_ACCESS_NONE,
                                    nullptr, CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, &ov, &h);
  ASSERT_TRUE(e == ERROR_SUCCESS || e == ERROR_IO_PENDING) << e;
  EXPECT_EQ(WaitForSingleObject(ov.hEvent, 10000), WAIT_OBJECT_0);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  EXPECT_EQ(VirtualSize(h), 4u << 20);
  CloseHandle(ov.hEvent);
  EXPECT_TRUE(CloseHandle(h));
}

TEST(CreateVirtualDisk, FillsFromSourcePath) {
  TempDir dir;
  HANDLE src = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("src.vhd"), 8 << 20, false, &src), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(src), ERROR_SUCCESS);
  const auto data = Pattern(64 << 10, 3);
  ASSERT_EQ(WriteAt(src, 3 << 20, data.data(), static_cast<DWORD>(data.size())), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(src));

  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  const WString source = dir.Wide("src.vhd");
  params.Version2.SourcePath = source.c_str();
  HANDLE copy = nullptr;
  ASSERT_EQ(CreateVirtualDisk(&type, dir.Wide("copy.vhd").c_str(), VIRTUAL_DISK_ACCESS_NONE,
                              nullptr, CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, &copy),
            ERROR_SUCCESS);
  EXPECT_EQ(VirtualSize(copy), 8u << 20);
  ASSERT_EQ(AttachRaw(copy), ERROR_SUCCESS);
  std::vector<unsigned char> back(data.size());
  ASSERT_EQ(ReadAt(copy, 3 << 20, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(CloseHandle(copy));
  // Only the one block that holds data was allocated in the copy.
  EXPECT_LT(FileSize(dir / "copy.vhd"), 3u << 20);
}

}  // namespace
}  // namespace vdisk_test

namespace vdisk_test {
namespace {

ULONG FragmentationOf(HANDLE h) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_FRAGMENTATION;
  ULONG size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS);
  return info.FragmentationPercentage;
}

TEST(GetVirtualDiskInformation, FragmentationCountsBlocksStoredOutOfOrder) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("frag.vhd"), 16 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(4096, 1);
  // Blocks 0..3 written in order are stored in order: no fragmentation.
  for (int block = 0; block < 4; ++block)
    ASSERT_EQ(WriteAt(h, static_cast<std::uint64_t>(block) << 21, data.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(FragmentationOf(h), 0u);
  // Blocks 7, 6, 5, 4 written backwards are stored backwards: each one is a jump.
  for (int block = 7; block >= 4; --block)
    ASSERT_EQ(WriteAt(h, static_cast<std::uint64_t>(block) << 21, data.data(), 4096), ERROR_SUCCESS);
  EXPECT_GE(FragmentationOf(h), 40u);
  EXPECT_TRUE(CloseHandle(h));
}

}  // namespace
}  // namespace vdisk_test
