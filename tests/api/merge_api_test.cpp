// MergeVirtualDisk through the C API, VHD and VHDX: validation in order, V1 (MergeDepth) and V2
// (MergeSourceDepth, MergeTargetDepth) from the top and from the middle of a chain, what becomes
// of the merged-away files, synchronous and with an OVERLAPPED.
//
// The expected content is what the chain showed before the merge, read through the API; the
// merged-into parent, opened alone afterwards, must read exactly that.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

constexpr ULONGLONG kMiB = 1 << 20;
constexpr ULONGLONG kSize = 24 * kMiB;

struct Format {
  ULONG device;
  const char* extension;
};

class MergeApiTest : public ::testing::TestWithParam<Format> {
 protected:
  std::string Name(const std::string& stem) const { return stem + GetParam().extension; }
  WString Path(const std::string& stem) const { return dir_.Wide(Name(stem)); }

  // A dynamic base and `children` differencing levels above it, each written with its own
  // pattern at ranges that overlap the levels below (within a block, across a block boundary,
  // whole blocks), so that which level wins matters.
  void MakeChain(int children) {
    HANDLE h = nullptr;
    ASSERT_EQ(CreateVhd(Path("l0"), kSize, false, &h, 0, WString(), GetParam().device),
              ERROR_SUCCESS);
    WriteLevel(h, 0);
    ASSERT_TRUE(CloseHandle(h));
    for (int level = 1; level <= children; ++level) {
      ASSERT_EQ(CreateVhd(Path("l" + std::to_string(level)), 0, false, &h, 0,
                          Path("l" + std::to_string(level - 1)), GetParam().device),
                ERROR_SUCCESS);
      WriteLevel(h, level);
      ASSERT_TRUE(CloseHandle(h));
    }
  }

  static void WriteLevel(HANDLE h, int level) {
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    const auto big = Pattern(3 * kMiB, 100 + level);
    ASSERT_EQ(WriteAt(h, level * 2 * kMiB + 512 * level, big.data(), 3 * kMiB), ERROR_SUCCESS);
    const auto small = Pattern(64 << 10, 200 + level);
    ASSERT_EQ(WriteAt(h, 16 * kMiB + level * 4096, small.data(), 64 << 10), ERROR_SUCCESS);
    ASSERT_EQ(WriteAt(h, kSize - 4096, small.data(), 4096), ERROR_SUCCESS);
  }

  // The whole disk as a read-only handle on `stem` shows it (its chain, or it alone).
  Bytes ReadDisk(const std::string& stem) {
    HANDLE h = nullptr;
    EXPECT_EQ(OpenV2(Path(stem), true, &h), ERROR_SUCCESS) << Name(stem);
    if (h == nullptr) return {};
    EXPECT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
    Bytes data(kSize);
    for (ULONGLONG at = 0; at < kSize; at += 4 * kMiB) {
      EXPECT_EQ(ReadAt(h, at, data.data() + at, 4 * kMiB), ERROR_SUCCESS);
    }
    EXPECT_TRUE(CloseHandle(h));
    return data;
  }

  static DWORD MergeV1(HANDLE h, ULONG depth) {
    MERGE_VIRTUAL_DISK_PARAMETERS p{};
    p.Version = MERGE_VIRTUAL_DISK_VERSION_1;
    p.Version1.MergeDepth = depth;
    return MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
  }
  static DWORD MergeV2(HANDLE h, ULONG source, ULONG target, OVERLAPPED* ov = nullptr) {
    MERGE_VIRTUAL_DISK_PARAMETERS p{};
    p.Version = MERGE_VIRTUAL_DISK_VERSION_2;
    p.Version2.MergeSourceDepth = source;
    p.Version2.MergeTargetDepth = target;
    return MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, ov);
  }

  // The parent location a handle on `stem` reports (resolved path, or the stored ones).
  std::string ParentOf(const std::string& stem) {
    HANDLE h = nullptr;
    EXPECT_EQ(OpenV2(Path(stem), true, &h), ERROR_SUCCESS);
    std::vector<unsigned char> buffer(4096);
    auto* info = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(buffer.data());
    info->Version = GET_VIRTUAL_DISK_INFO_PARENT_LOCATION;
    ULONG size = static_cast<ULONG>(buffer.size());
    EXPECT_EQ(GetVirtualDiskInformation(h, &size, info, nullptr), ERROR_SUCCESS);
    CloseHandle(h);
    return Narrow(info->ParentLocation.ParentLocationBuffer);
  }

  TempDir dir_;
};

TEST_P(MergeApiTest, ValidatesInWindowsOrder) {
  MakeChain(1);
  MERGE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MERGE_VIRTUAL_DISK_VERSION_1;
  p.Version1.MergeDepth = 1;
  EXPECT_EQ(MergeVirtualDisk(nullptr, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_HANDLE));
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  EXPECT_EQ(MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeVirtualDisk(h, static_cast<MERGE_VIRTUAL_DISK_FLAG>(1), &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  p.Version = static_cast<MERGE_VIRTUAL_DISK_VERSION>(3);
  EXPECT_EQ(MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeV1(h, 0), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeV1(h, 2), static_cast<DWORD>(ERROR_INVALID_PARAMETER))
      << "a chain of two files has one parent to merge into";
  EXPECT_EQ(MergeV2(h, 2, 2), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeV2(h, 2, 1), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeV2(h, 0, 2), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(MergeV2(h, 1, 3), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenV2(Path("l1"), true, &h), ERROR_SUCCESS);
  EXPECT_EQ(MergeV2(h, 1, 2), static_cast<DWORD>(ERROR_ACCESS_DENIED)) << "read-only handle";
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenV2(Path("l0"), false, &h), ERROR_SUCCESS);
  EXPECT_EQ(MergeV2(h, 1, 2), static_cast<DWORD>(ERROR_INVALID_PARAMETER))
      << "a disk without a parent has nothing to merge into";
  ASSERT_TRUE(CloseHandle(h));
}

// Microsoft's storage sample (MergeVirtualDisk.cpp): V2 open, MergeSourceDepth 1,
// MergeTargetDepth 2, NULL OVERLAPPED.
TEST_P(MergeApiTest, V2ChildIntoParentAsTheSampleDoes) {
  MakeChain(1);
  const Bytes before = ReadDisk("l1");
  const Bytes parent_before = ReadDisk("l0");
  ASSERT_NE(before, parent_before) << "the child must hold data of its own";
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(MergeV2(h, 1, 2), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before) << "the parent now holds what the child showed";
  // "MergeVirtualDisk does not delete any invalid disks": the child stays, and (its parent's
  // identity unchanged) still opens and reads the same.
  EXPECT_TRUE(fs::exists(dir_ / Name("l1")));
  EXPECT_EQ(ReadDisk("l1"), before);
}

TEST_P(MergeApiTest, V1MergeDepthOneAndTwo) {
  MakeChain(2);
  const Bytes before = ReadDisk("l2");
  HANDLE h = nullptr;
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  open.Version1.RWDepth = 3;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  ASSERT_EQ(OpenVirtualDisk(&type, Path("l2").c_str(), VIRTUAL_DISK_ACCESS_ALL,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h),
            ERROR_SUCCESS);
  // MergeDepth 2: the top and its parent go into the base; the top's blocks win.
  ASSERT_EQ(MergeV1(h, 2), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before);
  EXPECT_EQ(ReadDisk("l2"), before) << "the merged files were left as they were";
}

TEST_P(MergeApiTest, V1MergeDepthOneWithAV1Handle) {
  MakeChain(2);
  const Bytes before = ReadDisk("l2");
  const Bytes base_before = ReadDisk("l0");
  HANDLE h = nullptr;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  ASSERT_EQ(OpenVirtualDisk(&type, Path("l2").c_str(), VIRTUAL_DISK_ACCESS_GET_INFO,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_SUCCESS);
  EXPECT_EQ(MergeV1(h, 1), static_cast<DWORD>(ERROR_ACCESS_DENIED)) << "no METAOPS access";
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenVirtualDisk(&type, Path("l2").c_str(), VIRTUAL_DISK_ACCESS_ALL,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, nullptr, &h),
            ERROR_SUCCESS);
  ASSERT_EQ(MergeV1(h, 1), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l1"), before) << "the middle level now shows the top's data";
  EXPECT_EQ(ReadDisk("l0"), base_before) << "the base is untouched";
}

// V2 from the middle: the image above the merged one is re-pointed to the target, so the chain
// of the top skips the merged-away file, which stays on disk.
TEST_P(MergeApiTest, V2MiddleMergeRepointsTheChildAndKeepsTheMergedFile) {
  MakeChain(2);
  const Bytes before = ReadDisk("l2");
  const Bytes middle_before = ReadDisk("l1");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l2"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(MergeV2(h, 2, 3), ERROR_SUCCESS);
  // The handle goes on reading the same disk, through the new chain.
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  Bytes through_handle(kSize);
  for (ULONGLONG at = 0; at < kSize; at += 4 * kMiB)
    ASSERT_EQ(ReadAt(h, at, through_handle.data() + at, 4 * kMiB), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(through_handle, before);
  EXPECT_EQ(ReadDisk("l2"), before);
  EXPECT_EQ(ReadDisk("l0"), middle_before) << "the base holds what the merged level showed";
  const std::string parent = ParentOf("l2");
  EXPECT_NE(parent.find(Name("l0")), std::string::npos) << parent;
  EXPECT_TRUE(fs::exists(dir_ / Name("l1")));
}

TEST_P(MergeApiTest, ThroughSeveralLevelsWithV2) {
  MakeChain(3);
  const Bytes before = ReadDisk("l3");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l3"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(MergeV2(h, 1, 4), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before);
}

// With an OVERLAPPED the merge completes through it (event signalled, GetOverlappedResult
// gives the result).
TEST_P(MergeApiTest, CompletesThroughAnOverlapped) {
  MakeChain(1);
  const Bytes before = ReadDisk("l1");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  const DWORD started = MergeV2(h, 1, 2, &ov);
  ASSERT_TRUE(started == ERROR_IO_PENDING || started == ERROR_SUCCESS) << started;
  DWORD bytes = 0;
  ASSERT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE)) << GetLastError();
  EXPECT_EQ(WaitForSingleObject(ov.hEvent, 0), WAIT_OBJECT_0);
  CloseHandle(ov.hEvent);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before);
}

TEST_P(MergeApiTest, AsynchronousMergeReportsItsProgress) {
  MakeChain(1);
  const Bytes before = ReadDisk("l1");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MergeV2(h, 1, 2, &ov), static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_EQ(WaitForSingleObject(ov.hEvent, INFINITE), WAIT_OBJECT_0);
  VIRTUAL_DISK_PROGRESS progress{};
  ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_SUCCESS);
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(progress.CompletionValue, kSize) << "progress counts bytes of the disk";
  EXPECT_EQ(progress.CurrentValue, progress.CompletionValue);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  CloseHandle(ov.hEvent);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before);
}

// Cancelled at once, the merge stops with ERROR_OPERATION_ABORTED; the chain reads as before and
// a new merge completes it (MergeVirtualDisk's remarks: "the child disk is still usable. The
// MergeVirtualDisk function can be rerun to complete the merge").
TEST_P(MergeApiTest, CancelledMergeLeavesTheChainReadableAndARerunCompletes) {
  MakeChain(1);
  {
    // Enough data in the child that the merge is still copying when the cancel arrives.
    HANDLE h = nullptr;
    ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    const auto fill = Pattern(kMiB, 77);
    for (ULONGLONG at = 0; at < kSize; at += 2 * kMiB)
      ASSERT_EQ(WriteAt(h, at, fill.data(), kMiB), ERROR_SUCCESS);
    ASSERT_TRUE(CloseHandle(h));
  }
  const Bytes before = ReadDisk("l1");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MergeV2(h, 1, 2, &ov), static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_TRUE(CancelIo(h));
  DWORD bytes = 0;
  EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
  CloseHandle(ov.hEvent);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l1"), before) << "the chain reads as before the merge";
  const Bytes parent_after_cancel = ReadDisk("l0");
  EXPECT_NE(parent_after_cancel, before) << "the cancel stopped the merge before its end";
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(MergeV2(h, 1, 2), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), before);
}

// A merge needs the disk detached ("Merging a disk requires that the affected disks be
// detached during the operation", MergeVirtualDisk's remarks).
TEST_P(MergeApiTest, RefusesAnAttachedDisk) {
  MakeChain(1);
  const Bytes parent_before = ReadDisk("l0");
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l1"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  EXPECT_EQ(MergeV2(h, 1, 2), static_cast<DWORD>(ERROR_VIRTDISK_DISK_ALREADY_OWNED));
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadDisk("l0"), parent_before);
}

// Handles: another handle on the same disk shares it and reads the same afterwards; a handle
// that holds the target file open elsewhere keeps the merge from writing it.
TEST_P(MergeApiTest, OtherHandlesOfTheDiskReadTheSameAndAHeldTargetIsASharingViolation) {
  MakeChain(2);
  const Bytes before = ReadDisk("l2");
  HANDLE holder = nullptr;
  ASSERT_EQ(OpenV2(Path("l0"), true, &holder), ERROR_SUCCESS);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(Path("l2"), false, &h), ERROR_SUCCESS);
  EXPECT_EQ(MergeV2(h, 1, 3), static_cast<DWORD>(ERROR_SHARING_VIOLATION))
      << "the base is open through another handle";
  ASSERT_TRUE(CloseHandle(holder));
  HANDLE second = nullptr;
  ASSERT_EQ(OpenV2(Path("l2"), true, &second), ERROR_SUCCESS);
  ASSERT_EQ(MergeV2(h, 2, 3), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(AttachRaw(second, true), ERROR_SUCCESS);
  Bytes data(kSize);
  for (ULONGLONG at = 0; at < kSize; at += 4 * kMiB)
    ASSERT_EQ(ReadAt(second, at, data.data() + at, 4 * kMiB), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(second));
  EXPECT_EQ(data, before);
}

INSTANTIATE_TEST_SUITE_P(Formats, MergeApiTest,
                         ::testing::Values(Format{VIRTUAL_STORAGE_TYPE_DEVICE_VHD, ".vhd"},
                                           Format{VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, ".vhdx"}),
                         [](const auto& info) {
                           return std::string(info.param.device == VIRTUAL_STORAGE_TYPE_DEVICE_VHD
                                                  ? "Vhd"
                                                  : "Vhdx");
                         });

}  // namespace
}  // namespace vdisk_test
