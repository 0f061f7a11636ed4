// ResizeVirtualDisk and ExpandVirtualDisk through the C API: validation in Windows' order, each
// flag, the partition check, synchronous and asynchronous runs (progress, completion, cancel),
// refusals for attached and differencing disks, for VHD and VHDX.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "api_test_support.h"

namespace {

using namespace vdisk_test;  // NOLINT

constexpr ULONGLONG kMiB = 1ull << 20;
constexpr ULONGLONG kGiB = 1ull << 30;
HANDLE const kBogus = reinterpret_cast<HANDLE>(static_cast<ULONG_PTR>(0x7777));

DWORD Resize(HANDLE h, ULONGLONG size, DWORD flags = 0, LPOVERLAPPED ov = nullptr) {
  RESIZE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  p.Version1.NewSize = size;
  return ResizeVirtualDisk(h, static_cast<RESIZE_VIRTUAL_DISK_FLAG>(flags), &p, ov);
}

DWORD Expand(HANDLE h, ULONGLONG size) {
  EXPAND_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = EXPAND_VIRTUAL_DISK_VERSION_1;
  p.Version1.NewSize = size;
  return ExpandVirtualDisk(h, EXPAND_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
}

ULONGLONG SmallestSafe(HANDLE h) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE;
  ULONG size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), static_cast<DWORD>(ERROR_SUCCESS));
  return info.SmallestSafeVirtualSize;
}

std::vector<unsigned char> Pattern(std::size_t n, unsigned seed) {
  std::vector<unsigned char> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>((i * 31 + seed) | 1);
  return out;
}

struct Format {
  ULONG device;
  const char* ext;
};
const Format kFormats[] = {{VIRTUAL_STORAGE_TYPE_DEVICE_VHD, ".vhd"},
                           {VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, ".vhdx"}};

TEST(ResizeApi, ValidatesParametersFlagsAndVersionBeforeTheHandle) {
  RESIZE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  p.Version1.NewSize = 8 * kMiB;
  EXPECT_EQ(ResizeVirtualDisk(kBogus, RESIZE_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(ResizeVirtualDisk(kBogus, static_cast<RESIZE_VIRTUAL_DISK_FLAG>(4), &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  p.Version = static_cast<RESIZE_VIRTUAL_DISK_VERSION>(2);
  EXPECT_EQ(ResizeVirtualDisk(kBogus, RESIZE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  p.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  // RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE requires NewSize == 0; without it NewSize is needed.
  EXPECT_EQ(ResizeVirtualDisk(kBogus, RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE,
                              &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  p.Version1.NewSize = 0;
  EXPECT_EQ(ResizeVirtualDisk(kBogus, RESIZE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  p.Version1.NewSize = 8 * kMiB;
  EXPECT_EQ(ResizeVirtualDisk(kBogus, RESIZE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_HANDLE));

  EXPAND_VIRTUAL_DISK_PARAMETERS e{};
  e.Version = EXPAND_VIRTUAL_DISK_VERSION_1;
  e.Version1.NewSize = 8 * kMiB;
  EXPECT_EQ(ExpandVirtualDisk(kBogus, EXPAND_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(ExpandVirtualDisk(kBogus, static_cast<EXPAND_VIRTUAL_DISK_FLAG>(2), &e, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  e.Version = static_cast<EXPAND_VIRTUAL_DISK_VERSION>(2);
  EXPECT_EQ(ExpandVirtualDisk(kBogus, EXPAND_VIRTUAL_DISK_FLAG_NONE, &e, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  e.Version = EXPAND_VIRTUAL_DISK_VERSION_1;
  EXPECT_EQ(ExpandVirtualDisk(kBogus, EXPAND_VIRTUAL_DISK_FLAG_NONE, &e, nullptr),
            static_cast<DWORD>(ERROR_INVALID_HANDLE));
}

TEST(ResizeApi, ReadOnlyHandleIsDenied) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("ro.vhd"), 8 * kMiB, false, &h), static_cast<DWORD>(ERROR_SUCCESS));
  CloseHandle(h);
  ASSERT_EQ(OpenV2(dir.Wide("ro.vhd"), true, &h), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(Resize(h, 16 * kMiB), static_cast<DWORD>(ERROR_ACCESS_DENIED));
  EXPECT_EQ(Expand(h, 16 * kMiB), static_cast<DWORD>(ERROR_ACCESS_DENIED));
  EXPECT_EQ(VirtualSize(h), 8 * kMiB);
  CloseHandle(h);
}

TEST(ResizeApi, GrowAndShrinkKeepDataAndNewSpaceReadsZeros) {
  for (const Format& f : kFormats) {
    for (const bool fixed : {false, true}) {
      SCOPED_TRACE(std::string(f.ext) + (fixed ? " fixed" : " dynamic"));
      TempDir dir;
      const auto path = dir.Wide(std::string("d") + f.ext);
      HANDLE h = nullptr;
      ASSERT_EQ(CreateVhd(path, 8 * kMiB, fixed, &h, 0, WString(), f.device),
                static_cast<DWORD>(ERROR_SUCCESS));
      const auto data = Pattern(kMiB, 3);
      ASSERT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_SUCCESS));
      ASSERT_EQ(WriteAt(h, 7 * kMiB, data.data(), static_cast<DWORD>(kMiB)),
                static_cast<DWORD>(ERROR_SUCCESS));
      ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
                static_cast<DWORD>(ERROR_SUCCESS));
      ASSERT_EQ(Resize(h, 24 * kMiB), static_cast<DWORD>(ERROR_SUCCESS));
      EXPECT_EQ(VirtualSize(h), 24 * kMiB);
      ASSERT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_SUCCESS));
      std::vector<unsigned char> got(kMiB);
      ASSERT_EQ(ReadAt(h, 7 * kMiB, got.data(), static_cast<DWORD>(kMiB)),
                static_cast<DWORD>(ERROR_SUCCESS));
      EXPECT_EQ(got, data);
      ASSERT_EQ(ReadAt(h, 23 * kMiB, got.data(), static_cast<DWORD>(kMiB)),
                static_cast<DWORD>(ERROR_SUCCESS));
      EXPECT_EQ(got, std::vector<unsigned char>(kMiB, 0));
      ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
                static_cast<DWORD>(ERROR_SUCCESS));
      // No partition table: a shrink needs ALLOW_UNSAFE_VIRTUAL_SIZE.
      EXPECT_EQ(Resize(h, 4 * kMiB), static_cast<DWORD>(ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA));
      EXPECT_EQ(Resize(h, 4 * kMiB, RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE),
                static_cast<DWORD>(ERROR_SUCCESS));
      EXPECT_EQ(VirtualSize(h), 4 * kMiB);
      CloseHandle(h);
      ASSERT_EQ(OpenV2(path, false, &h), static_cast<DWORD>(ERROR_SUCCESS));
      EXPECT_EQ(VirtualSize(h), 4 * kMiB);
      CloseHandle(h);
    }
  }
}

TEST(ResizeApi, PartitionTableBoundsTheShrink) {
  for (const Format& f : kFormats) {
    SCOPED_TRACE(f.ext);
    TempDir dir;
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(dir.Wide(std::string("p") + f.ext), 32 * kMiB, false, &h, 0, WString(),
                        f.device),
              static_cast<DWORD>(ERROR_SUCCESS));
    // One MBR partition from LBA 2048 to 20 MiB.
    std::vector<unsigned char> mbr(512);
    mbr[446 + 4] = 0x07;
    const std::uint32_t first = 2048, count = 20 * 2048 - 2048;
    std::memcpy(&mbr[446 + 8], &first, 4);
    std::memcpy(&mbr[446 + 12], &count, 4);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    ASSERT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_SUCCESS));
    ASSERT_EQ(WriteAt(h, 0, mbr.data(), 512), static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(Resize(h, 40 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_STATE))
        << "an attached disk cannot change its size";
    ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
              static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(SmallestSafe(h), 20 * kMiB);
    EXPECT_EQ(Resize(h, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA));
    EXPECT_EQ(VirtualSize(h), 32 * kMiB);
    EXPECT_EQ(Resize(h, 0, RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE),
              static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(VirtualSize(h), 20 * kMiB);
    EXPECT_EQ(Resize(h, 0, RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE),
              static_cast<DWORD>(ERROR_VHD_ALREADY_AT_OR_BELOW_MINIMUM_VIRTUAL_SIZE));
    CloseHandle(h);
  }
}

TEST(ResizeApi, AsynchronousResizeCompletesAndReportsProgress) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("a.vhdx"), 16 * kMiB, false, &h, 0, WString(),
                      VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
            static_cast<DWORD>(ERROR_SUCCESS));
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  const DWORD started = Resize(h, 1 * kGiB, 0, &ov);
  ASSERT_EQ(started, static_cast<DWORD>(ERROR_IO_PENDING));
  DWORD bytes = 0;
  ASSERT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE)) << GetLastError();
  VIRTUAL_DISK_PROGRESS progress{};
  ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(progress.CurrentValue, progress.CompletionValue);
  EXPECT_EQ(VirtualSize(h), 1 * kGiB);
  CloseHandle(ov.hEvent);
  CloseHandle(h);
}

TEST(ResizeApi, CancelledResizeLeavesTheOldOrNewDisk) {
  // A dynamic VHDX grown to 64 TiB writes a new 16 MiB BAT region in 1 MiB pieces, polling for
  // cancellation between them, before the size switches. CancelIoEx right after the call lands
  // in the middle nearly always; each attempt must leave the old or the new disk, and one of
  // ten must have been cancelled (a loaded machine may run the whole resize before the cancel).
  int aborted = 0;
  std::string outcomes;
  for (int attempt = 0; attempt < 10 && aborted == 0; ++attempt) {
    SCOPED_TRACE("attempt " + std::to_string(attempt));
    TempDir dir;
    const auto path = dir.Wide("c.vhdx");
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(path, 16 * kMiB, false, &h, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
              static_cast<DWORD>(ERROR_SUCCESS));
    const auto data = Pattern(kMiB, 9);
    ASSERT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_SUCCESS));
    ASSERT_EQ(WriteAt(h, 15 * kMiB, data.data(), static_cast<DWORD>(kMiB)),
              static_cast<DWORD>(ERROR_SUCCESS));
    ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
              static_cast<DWORD>(ERROR_SUCCESS));
    const ULONGLONG grown = 64ull << 40;
    OVERLAPPED ov{};
    ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    ASSERT_EQ(Resize(h, grown, 0, &ov), static_cast<DWORD>(ERROR_IO_PENDING));
    CancelIoEx(h, &ov);
    DWORD bytes = 0;
    const BOOL ok = GetOverlappedResult(h, &ov, &bytes, TRUE);
    const DWORD error = ok ? ERROR_SUCCESS : GetLastError();
    ASSERT_TRUE(error == ERROR_SUCCESS || error == ERROR_OPERATION_ABORTED) << error;
    if (error == ERROR_OPERATION_ABORTED) ++aborted;
    outcomes += std::to_string(error) + " ";
    const ULONGLONG size = VirtualSize(h);
    EXPECT_EQ(size, error == ERROR_SUCCESS ? grown : 16 * kMiB);
    CloseHandle(ov.hEvent);
    CloseHandle(h);
    ASSERT_EQ(OpenV2(path, false, &h), static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(VirtualSize(h), size);
    ASSERT_EQ(AttachRaw(h), static_cast<DWORD>(ERROR_SUCCESS));
    std::vector<unsigned char> got(kMiB);
    ASSERT_EQ(ReadAt(h, 15 * kMiB, got.data(), static_cast<DWORD>(kMiB)),
              static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(got, data);
    ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
              static_cast<DWORD>(ERROR_SUCCESS));
    // Running it again completes it.
    EXPECT_EQ(Resize(h, grown), static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(VirtualSize(h), grown);
    CloseHandle(h);
  }
  EXPECT_EQ(aborted, 1) << "no cancellation landed inside the resize; outcomes: " << outcomes;
}

TEST(ResizeApi, InformationDuringAnAsynchronousResizeSeesTheOldOrNewSize) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("i.vhdx"), 16 * kMiB, false, &h, 0, WString(),
                      VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
            static_cast<DWORD>(ERROR_SUCCESS));
  const ULONGLONG grown = 64ull << 40;
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(Resize(h, grown, 0, &ov), static_cast<DWORD>(ERROR_IO_PENDING));
  int queries = 0;
  do {
    const ULONGLONG size = VirtualSize(h);
    ASSERT_TRUE(size == 16 * kMiB || size == grown) << size;
    const ULONGLONG smallest = SmallestSafe(h);
    ASSERT_TRUE(smallest == 16 * kMiB || smallest == grown) << smallest;
    ++queries;
  } while (WaitForSingleObject(ov.hEvent, 0) != WAIT_OBJECT_0);
  DWORD bytes = 0;
  ASSERT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE)) << GetLastError();
  EXPECT_EQ(VirtualSize(h), grown);
  EXPECT_GE(queries, 1);
  CloseHandle(ov.hEvent);
  CloseHandle(h);
}

TEST(ResizeApi, DiskBeingMirroredIsRefused) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("m.vhd"), 8 * kMiB, false, &h), static_cast<DWORD>(ERROR_SUCCESS));
  HANDLE other = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("m.vhd"), false, &other), static_cast<DWORD>(ERROR_SUCCESS));
  const WString target = dir.Wide("target.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov),
            static_cast<DWORD>(ERROR_IO_PENDING));
  // Through this handle and through another one of the same disk.
  EXPECT_EQ(Resize(h, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  EXPECT_EQ(Resize(other, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  EXPECT_EQ(Expand(other, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  ASSERT_TRUE(CancelIoEx(h, &ov));
  DWORD bytes = 0;
  EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  EXPECT_EQ(VirtualSize(other), 8 * kMiB);
  EXPECT_EQ(Resize(other, 16 * kMiB), static_cast<DWORD>(ERROR_SUCCESS)) << "the mirror ended";
  CloseHandle(ov.hEvent);
  CloseHandle(other);
  CloseHandle(h);
}

TEST(ExpandApi, GrowsFixedAndDynamicDisksOnly) {
  for (const Format& f : kFormats) {
    SCOPED_TRACE(f.ext);
    TempDir dir;
    HANDLE h = nullptr;
    const auto base = dir.Wide(std::string("base") + f.ext);
    ASSERT_EQ(CreateVhd(base, 8 * kMiB, false, &h, 0, WString(), f.device),
              static_cast<DWORD>(ERROR_SUCCESS));
    // WMI's ExpandVirtualHardDisk: a size below the current one is an invalid parameter.
    EXPECT_EQ(Expand(h, 4 * kMiB), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
    EXPECT_EQ(Expand(h, 8 * kMiB), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
    EXPECT_EQ(Expand(h, 12 * kMiB), static_cast<DWORD>(ERROR_SUCCESS));
    EXPECT_EQ(VirtualSize(h), 12 * kMiB);
    CloseHandle(h);
    HANDLE child = nullptr;
    ASSERT_EQ(CreateVhd(dir.Wide(std::string("child") + f.ext), 0, false, &child, 0, base,
                        f.device),
              static_cast<DWORD>(ERROR_SUCCESS));
    // ExpandVirtualDisk's documentation: "valid only for fixed and expandable virtual disks".
    EXPECT_EQ(Expand(child, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_TYPE));
    EXPECT_EQ(Resize(child, 16 * kMiB), static_cast<DWORD>(ERROR_VHD_INVALID_TYPE));
    CloseHandle(child);
  }
}

}  // namespace
