// libvirtdisk.so's non-SDK entry points (<virtdisk/extensions.h>): the failure sentence, the
// allocated ranges, the structural check, the attachments. Linux only: VirtDisk.dll does not export them.
#ifndef _WIN32

#include <gtest/gtest.h>
#include <virtdisk/extensions.h>

#include <unistd.h>

#include <string>
#include <vector>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

TEST(ExtensionsApi, LastFailureMessageIsTheSentenceOfTheLastFailedCall) {
  TempDir dir;
  HANDLE disk = nullptr;
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHDX);
  CREATE_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  parameters.Version2.MaximumSize = (65ULL << 40);
  const WString path = ToWide(dir.path() / "big.vhdx");
  ASSERT_EQ(CreateVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                              CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &parameters, nullptr, &disk),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_NE(std::string(VirtDiskGetLastFailureMessage()).find("at most 64 TiB"), std::string::npos)
      << VirtDiskGetLastFailureMessage();
  // A call that succeeds clears it.
  ASSERT_EQ(CreateVhd(ToWide(dir.path() / "ok.vhd"), 1 << 20, false, &disk), 0u);
  EXPECT_STREQ(VirtDiskGetLastFailureMessage(), "");
  CloseHandle(disk);
}

TEST(ExtensionsApi, AllocatedRangesContinueAfterMoreData) {
  TempDir dir;
  HANDLE disk = nullptr;
  const WString path = ToWide(dir.path() / "r.vhd");
  ASSERT_EQ(CreateVhd(path, 16 << 20, false, &disk), 0u);
  ASSERT_EQ(AttachRaw(disk), 0u);
  const std::vector<char> data(4096, 'x');
  for (const std::uint64_t at : {0ULL, 4ULL << 20, 10ULL << 20}) {
    ASSERT_EQ(WriteAt(disk, at, data.data(), 4096), 0u);
  }
  // One range at a time: data, hole, data, hole, data, hole.
  std::vector<VIRTDISK_ALLOCATED_RANGE> all;
  for (ULONG64 at = 0; at < (16ULL << 20);) {
    VIRTDISK_ALLOCATED_RANGE range{};
    ULONG count = 1;
    const DWORD error = VirtDiskGetAllocatedRanges(disk, at, (16ULL << 20) - at, &range, &count);
    ASSERT_TRUE(error == ERROR_SUCCESS || error == ERROR_MORE_DATA) << error;
    ASSERT_EQ(count, 1u);
    all.push_back(range);
    at = range.Offset + range.Length;
  }
  std::vector<ULONG64> data_starts;
  for (const auto& range : all) {
    if (range.Kind == VIRTDISK_RANGE_DATA) data_starts.push_back(range.Offset);
  }
  // 2 MiB blocks: the written sectors' blocks hold data (the sector bitmap marks only the
  // written sectors, so the data range is the 4 KiB written).
  EXPECT_EQ(data_starts, (std::vector<ULONG64>{0, 4ULL << 20, 10ULL << 20}));
  ULONG none = 0;
  EXPECT_EQ(VirtDiskGetAllocatedRanges(disk, 0, 17ULL << 20, nullptr, &none),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  CloseHandle(disk);
}

TEST(ExtensionsApi, CheckImageReportsThroughTheCallbackOrFailsToRun) {
  TempDir dir;
  HANDLE disk = nullptr;
  const WString path = ToWide(dir.path() / "c.vhd");
  ASSERT_EQ(CreateVhd(path, 8 << 20, false, &disk), 0u);
  CloseHandle(disk);
  std::vector<std::string> findings;
  const auto collect = [](void* context, ULONG severity, ULONG64, const char* message) {
    static_cast<std::vector<std::string>*>(context)->push_back(std::to_string(severity) + " " + message);
  };
  EXPECT_EQ(VirtDiskCheckImage(path.c_str(), VIRTDISK_CHECK_FLAG_NONE, collect, &findings), 0u);
  EXPECT_TRUE(findings.empty()) << findings.front();
  const WString missing = ToWide(dir.path() / "none.vhd");
  EXPECT_EQ(VirtDiskCheckImage(missing.c_str(), VIRTDISK_CHECK_FLAG_NONE, collect, &findings),
            static_cast<DWORD>(ERROR_FILE_NOT_FOUND));
  EXPECT_NE(std::string(VirtDiskGetLastFailureMessage()).find("none.vhd"), std::string::npos);
  EXPECT_EQ(VirtDiskCheckImage(path.c_str(), 0x80, collect, &findings),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
}

struct SeenAttachment {
  std::string disk, uri;
  ULONG flags = 0;
  LONGLONG pid = 0;
};

std::vector<SeenAttachment> EnumerateAttachments() {
  std::vector<SeenAttachment> seen;
  const auto add = [](void* context, const VIRTDISK_ATTACHMENT* a) {
    static_cast<std::vector<SeenAttachment>*>(context)->push_back(
        {Narrow(a->DiskPath), Narrow(a->PhysicalPath), a->Flags, a->ProcessId});
  };
  EXPECT_EQ(VirtDiskEnumerateAttachments(add, &seen), 0u);
  return seen;
}

// An attachment for the life of this process's handle: the registry names the disk, its URI
// (the one GetVirtualDiskPhysicalPath gives), read-only or not, not permanent, and this process.
TEST(ExtensionsApi, EnumerateAttachmentsSaysWhatTheRegistryRecords) {
  TempDir dir;
  SetEnv("VIRTDISK_RUNTIME_DIR", (dir.path() / "run").string());
  EXPECT_EQ(VirtDiskEnumerateAttachments(nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_TRUE(EnumerateAttachments().empty());
  HANDLE disk = nullptr;
  const WString path = ToWide(dir.path() / "e.vhdx");
  ASSERT_EQ(CreateVhd(path, 16 << 20, false, &disk, 0, WString(), VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
            0u);
  ATTACH_VIRTUAL_DISK_PARAMETERS parameters{};
  parameters.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ASSERT_EQ(AttachVirtualDisk(disk, nullptr, ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY, 0, &parameters,
                              nullptr),
            0u);
  const auto seen = EnumerateAttachments();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].disk, std::filesystem::canonical(dir.path() / "e.vhdx").string());
  EXPECT_EQ(seen[0].uri, PhysicalPath(disk));
  EXPECT_EQ(seen[0].flags, ULONG{VIRTDISK_ATTACHMENT_FLAG_READ_ONLY});
  EXPECT_EQ(seen[0].pid, static_cast<LONGLONG>(getpid()));
  ASSERT_EQ(DetachVirtualDisk(disk, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), 0u);
  EXPECT_TRUE(EnumerateAttachments().empty());
  CloseHandle(disk);
  UnsetEnv("VIRTDISK_RUNTIME_DIR");
}

}  // namespace
}  // namespace vdisk_test

#endif  // _WIN32
