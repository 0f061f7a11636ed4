// CompactVirtualDisk through the public API, as Microsoft's storage sample and a backup tool call
// it: validation in Windows' order, the flags, synchronous and OVERLAPPED calls, the attach
// states, and the oracle: after compaction qemu-img compares the image equal to a raw copy made
// before, the file is smaller by at least its zero blocks, and `qemu-img check` passes (VHDX).
// Images made by qemu-img as well as by us. Under Wine the qemu tools run through the host shell.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <filesystem>
#include <string>
#include <vector>

#include "../unit/host_shell.h"
#include "api_test_support.h"

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;
using vdisk_unit::HostShell;
using vdisk_unit::HostTool;
using vdisk_unit::ShellQuote;

constexpr ULONG kMiB = 1 << 20;

#ifndef ERROR_VHD_INVALID_TYPE
#define ERROR_VHD_INVALID_TYPE 0xC03A001BL
#endif
#ifndef ERROR_VHD_INVALID_STATE
#define ERROR_VHD_INVALID_STATE 0xC03A001CL
#endif

struct Format {
  ULONG device;
  ULONG block_size;
  const char* extension;
  const char* qemu_format;
  const char* name;
};

std::string FormatName(const ::testing::TestParamInfo<Format>& info) { return info.param.name; }

// Opens with V1 access, as the sample does for compaction (METAOPS, optionally ATTACH_RO).
DWORD OpenV1(const WString& path, VIRTUAL_DISK_ACCESS_MASK access, HANDLE* handle) {
  VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false);
  OPEN_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  params.Version1.RWDepth = OPEN_VIRTUAL_DISK_RW_DEPTH_DEFAULT;
  return OpenVirtualDisk(&type, path.c_str(), access, OPEN_VIRTUAL_DISK_FLAG_NONE, &params,
                         handle);
}

DWORD Compact(const WString& path, DWORD flags = 0) {
  HANDLE handle = nullptr;
  const DWORD opened = OpenV1(path, VIRTUAL_DISK_ACCESS_METAOPS, &handle);
  if (opened != ERROR_SUCCESS) return opened;
  COMPACT_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = COMPACT_VIRTUAL_DISK_VERSION_1;
  const DWORD result = CompactVirtualDisk(handle, static_cast<COMPACT_VIRTUAL_DISK_FLAG>(flags),
                                          &params, nullptr);
  CloseHandle(handle);
  return result;
}

// The whole disk through raw I/O on a read-only attachment.
std::vector<unsigned char> ReadDisk(const WString& path) {
  HANDLE handle = nullptr;
  EXPECT_EQ(OpenV2(path, true, &handle), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(AttachRaw(handle, true), static_cast<DWORD>(ERROR_SUCCESS));
  std::vector<unsigned char> out(static_cast<std::size_t>(VirtualSize(handle)));
  for (std::size_t at = 0; at < out.size(); at += kMiB) {
    const auto n = static_cast<DWORD>(std::min<std::size_t>(kMiB, out.size() - at));
    EXPECT_EQ(ReadAt(handle, at, out.data() + at, n), static_cast<DWORD>(ERROR_SUCCESS));
  }
  CloseHandle(handle);
  return out;
}

class CompactApiTest : public ::testing::TestWithParam<Format> {
 protected:
  std::string Name(const std::string& stem) const { return stem + GetParam().extension; }

  // A dynamic disk written through the API: `content[b]` 0 nothing, 1 zeros, 2 data.
  void MakeDisk(const std::string& name, const std::vector<int>& content,
                const std::string& parent = "") {
    HANDLE handle = nullptr;
    const ULONG block = GetParam().block_size;
    ASSERT_EQ(CreateVhd(dir_.Wide(name), std::uint64_t{block} * content.size(), false, &handle,
                        block, parent.empty() ? WString() : dir_.Wide(parent), GetParam().device),
              static_cast<DWORD>(ERROR_SUCCESS));
    ASSERT_EQ(AttachRaw(handle), static_cast<DWORD>(ERROR_SUCCESS));
    for (std::size_t b = 0; b < content.size(); ++b) {
      if (content[b] == 0) continue;
      std::vector<unsigned char> data =
          content[b] == 2 ? Pattern(block, static_cast<std::uint32_t>(b + 1))
                          : std::vector<unsigned char>(block);
      ASSERT_EQ(WriteAt(handle, std::uint64_t{b} * block, data.data(), block),
                static_cast<DWORD>(ERROR_SUCCESS));
    }
    CloseHandle(handle);
  }

  bool HaveQemu() { return !HostTool("qemu-img").empty(); }

 public:
  void MakeDiskFor(const std::string& name, const std::vector<int>& content) {
    MakeDisk(name, content);
  }

 protected:

  std::string Qemu(const std::string& arguments, int* status) {
    std::string output;
    *status = HostShell(HostTool("qemu-img") + " " + arguments, &output);
    return output;
  }

  TempDir dir_;
};

TEST_P(CompactApiTest, ValidationInWindowsOrder) {
  ASSERT_NO_FATAL_FAILURE(MakeDisk(Name("disk"), {1, 2}));
  HANDLE handle = nullptr;
  ASSERT_EQ(OpenV1(dir_.Wide(Name("disk")), VIRTUAL_DISK_ACCESS_METAOPS, &handle),
            static_cast<DWORD>(ERROR_SUCCESS));
  const auto bad_flag = static_cast<COMPACT_VIRTUAL_DISK_FLAG>(4);
  // Flags first: an unknown flag is refused even with a handle that is not one.
  EXPECT_EQ(CompactVirtualDisk(reinterpret_cast<HANDLE>(0x1234), bad_flag, nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(CompactVirtualDisk(handle, bad_flag, nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  // Then the parameters' version.
  COMPACT_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = static_cast<COMPACT_VIRTUAL_DISK_VERSION>(2);
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, &params, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  params.Version = COMPACT_VIRTUAL_DISK_VERSION_UNSPECIFIED;
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, &params, nullptr),
            static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  // Then the handle.
  EXPECT_EQ(CompactVirtualDisk(reinterpret_cast<HANDLE>(0x1234), COMPACT_VIRTUAL_DISK_FLAG_NONE,
                               nullptr, nullptr),
            static_cast<DWORD>(ERROR_INVALID_HANDLE));
  // Parameters are optional.
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_SUCCESS));
  CloseHandle(handle);

  // The handle must have METAOPS (V1) or be writable (V2).
  ASSERT_EQ(OpenV1(dir_.Wide(Name("disk")), VIRTUAL_DISK_ACCESS_GET_INFO, &handle),
            static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_ACCESS_DENIED));
  CloseHandle(handle);
  ASSERT_EQ(OpenV2(dir_.Wide(Name("disk")), true, &handle), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_ACCESS_DENIED));
  CloseHandle(handle);

  // Only dynamic and differencing disks compact ("Compaction can be run only on a virtual disk
  // that is dynamically expandable or differencing", Microsoft, CompactVirtualDisk).
  ASSERT_EQ(CreateVhd(dir_.Wide(Name("fixed")), 4 * kMiB, true, &handle, 0, WString(),
                      GetParam().device),
            static_cast<DWORD>(ERROR_SUCCESS));
  CloseHandle(handle);
  EXPECT_EQ(Compact(dir_.Wide(Name("fixed"))), static_cast<DWORD>(ERROR_VHD_INVALID_TYPE));
}

TEST_P(CompactApiTest, ZeroBlocksGoContentStaysAndQemuAgrees) {
  const std::string disk = Name("disk");
  ASSERT_NO_FATAL_FAILURE(MakeDisk(disk, {1, 2, 1, 0, 1, 2, 2, 1}));
  const auto before = ReadDisk(dir_.Wide(disk));
  const std::uint64_t size_before = FileSize(dir_ / disk);
  const fs::path raw = dir_ / "before.raw";
  int status = 0;
  if (HaveQemu()) {
    const std::string out = Qemu("convert -f " + std::string(GetParam().qemu_format) +
                                     " -O raw " + ShellQuote(dir_ / disk) + " " + ShellQuote(raw),
                                 &status);
    ASSERT_EQ(status, 0) << out;
  }

  ASSERT_EQ(Compact(dir_.Wide(disk)), static_cast<DWORD>(ERROR_SUCCESS));

  const std::uint64_t size_after = FileSize(dir_ / disk);
  EXPECT_LE(size_after + 4ull * GetParam().block_size, size_before)
      << "four zero blocks: " << size_before << " -> " << size_after;
  EXPECT_TRUE(ReadDisk(dir_.Wide(disk)) == before) << "content changed";
  if (!HaveQemu()) VDISK_ORACLE_MISSING("qemu-img is not installed");
  std::string out = Qemu("compare -f " + std::string(GetParam().qemu_format) + " -F raw " +
                             ShellQuote(dir_ / disk) + " " + ShellQuote(raw),
                         &status);
  EXPECT_EQ(status, 0) << out;
  if (GetParam().device == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX) {
    out = Qemu("check -f vhdx " + ShellQuote(dir_ / disk), &status);
    EXPECT_EQ(status, 0) << out;
  }
}

TEST_P(CompactApiTest, ImagesMadeByQemuImgCompact) {
  if (!HaveQemu() || HostTool("qemu-io").empty())
    VDISK_ORACLE_MISSING("qemu-img or qemu-io is not installed");
  const std::string disk = Name("qemu");
  const std::string format = GetParam().qemu_format;
  int status = 0;
  const std::string block = std::to_string(GetParam().block_size);
  std::string out = Qemu("create -f " + format + " -o subformat=dynamic" +
                             (format == "vhdx" ? ",block_size=" + block : "") + " " +
                             ShellQuote(dir_ / disk) + " 32M",
                         &status);
  ASSERT_EQ(status, 0) << out;
  // Data, zeros written as data, data, zeros at the end: qemu lays blocks out in write order.
  const std::uint64_t bs = GetParam().block_size;
  std::string io = HostTool("qemu-io") + " -f " + format;
  const std::vector<std::pair<std::uint64_t, int>> writes = {
      {0, 0x5a}, {1, 0}, {2, 0}, {3, 0x33}, {5, 0}, {6, 0x77}, {7, 0}, {9, 0}};
  for (const auto& [b, pattern] : writes) {
    io += " -c 'write -P " + std::to_string(pattern) + " " + std::to_string(b * bs) + " " +
          std::to_string(bs) + "'";
  }
  io += " " + ShellQuote(dir_ / disk);
  ASSERT_EQ(HostShell(io, &out), 0) << out;
  const fs::path raw = dir_ / "before.raw";
  out = Qemu("convert -f " + format + " -O raw " + ShellQuote(dir_ / disk) + " " + ShellQuote(raw),
             &status);
  ASSERT_EQ(status, 0) << out;
  const std::uint64_t size_before = FileSize(dir_ / disk);

  ASSERT_EQ(Compact(dir_.Wide(disk)), static_cast<DWORD>(ERROR_SUCCESS));

  const std::uint64_t size_after = FileSize(dir_ / disk);
  EXPECT_LE(size_after + 5 * bs, size_before) << size_before << " -> " << size_after;
  out = Qemu("compare -f " + format + " -F raw " + ShellQuote(dir_ / disk) + " " +
                 ShellQuote(raw),
             &status);
  EXPECT_EQ(status, 0) << out;
  if (format == "vhdx") {
    out = Qemu("check -f vhdx " + ShellQuote(dir_ / disk), &status);
    EXPECT_EQ(status, 0) << out;
  }
}

TEST_P(CompactApiTest, NoZeroScanAndNoBlockMovesFlags) {
  const std::string disk = Name("disk");
  ASSERT_NO_FATAL_FAILURE(MakeDisk(disk, {1, 1, 2, 2, 1}));
  const auto before = ReadDisk(dir_.Wide(disk));
  const std::uint64_t size0 = FileSize(dir_ / disk);
  ASSERT_EQ(Compact(dir_.Wide(disk), COMPACT_VIRTUAL_DISK_FLAG_NO_ZERO_SCAN),
            static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(FileSize(dir_ / disk), size0) << "NO_ZERO_SCAN: nothing to give back or move";
  ASSERT_EQ(Compact(dir_.Wide(disk), COMPACT_VIRTUAL_DISK_FLAG_NO_BLOCK_MOVES),
            static_cast<DWORD>(ERROR_SUCCESS));
  const std::uint64_t size1 = FileSize(dir_ / disk);
  // Without moves only the zero block at the end goes; the two before the data stay holes.
  EXPECT_LE(size1 + GetParam().block_size, size0);
  EXPECT_GT(size1 + 2ull * GetParam().block_size, size0);
  ASSERT_EQ(Compact(dir_.Wide(disk)), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_LE(FileSize(dir_ / disk) + 3ull * GetParam().block_size, size0);
  EXPECT_TRUE(ReadDisk(dir_.Wide(disk)) == before);
}

TEST_P(CompactApiTest, AttachedReadOnlyCompactsAttachedReadWriteIsRefused) {
  const std::string disk = Name("disk");
  ASSERT_NO_FATAL_FAILURE(MakeDisk(disk, {1, 2, 1, 2}));
  const auto before = ReadDisk(dir_.Wide(disk));
  HANDLE handle = nullptr;
  ASSERT_EQ(OpenV1(dir_.Wide(disk),
                   static_cast<VIRTUAL_DISK_ACCESS_MASK>(VIRTUAL_DISK_ACCESS_METAOPS |
                                                         VIRTUAL_DISK_ACCESS_ATTACH_RW |
                                                         VIRTUAL_DISK_ACCESS_ATTACH_RO |
                                                         VIRTUAL_DISK_ACCESS_DETACH),
                   &handle),
            static_cast<DWORD>(ERROR_SUCCESS));
  ASSERT_EQ(AttachRaw(handle, false), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  ASSERT_EQ(DetachVirtualDisk(handle, DETACH_VIRTUAL_DISK_FLAG_NONE, 0),
            static_cast<DWORD>(ERROR_SUCCESS));
  // The documented file-system-aware way: attached read-only, then compacted.
  ASSERT_EQ(AttachRaw(handle, true), static_cast<DWORD>(ERROR_SUCCESS));
  const std::uint64_t size_before = FileSize(dir_ / disk);
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_LT(FileSize(dir_ / disk), size_before);
  std::vector<unsigned char> read(before.size());
  ASSERT_EQ(ReadAt(handle, 0, read.data(), static_cast<DWORD>(read.size())),
            static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_TRUE(read == before) << "the attachment reads other bytes after compaction";
  CloseHandle(handle);
}

TEST_P(CompactApiTest, RefusedWhileMirroredAllowedAfterTheMirrorEnds) {
  const std::string disk = Name("disk");
  ASSERT_NO_FATAL_FAILURE(MakeDisk(disk, {1, 2, 1, 2}));
  HANDLE handle = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide(disk), false, &handle), static_cast<DWORD>(ERROR_SUCCESS));
  const WString target = dir_.Wide(Name("mirror"));
  MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
  mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  mirror.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED overlapped{};
  overlapped.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(handle, MIRROR_VIRTUAL_DISK_FLAG_NONE, &mirror, &overlapped),
            static_cast<DWORD>(ERROR_IO_PENDING));
  // A compaction moves blocks under the mirror's copy: refused while the mirror runs.
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_VHD_INVALID_STATE));
  CancelIoEx(handle, &overlapped);
  ASSERT_EQ(WaitForSingleObject(overlapped.hEvent, 60000), static_cast<DWORD>(WAIT_OBJECT_0));
  CloseHandle(overlapped.hEvent);
  EXPECT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, nullptr),
            static_cast<DWORD>(ERROR_SUCCESS));
  CloseHandle(handle);
}

TEST_P(CompactApiTest, OverlappedCallCompletesThroughTheEvent) {
  const std::string disk = Name("disk");
  ASSERT_NO_FATAL_FAILURE(MakeDisk(disk, {2, 1, 1, 2, 1, 2}));
  const auto before = ReadDisk(dir_.Wide(disk));
  const std::uint64_t size_before = FileSize(dir_ / disk);
  HANDLE handle = nullptr;
  ASSERT_EQ(OpenV1(dir_.Wide(disk), VIRTUAL_DISK_ACCESS_METAOPS, &handle),
            static_cast<DWORD>(ERROR_SUCCESS));
  OVERLAPPED overlapped{};
  overlapped.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  const DWORD started =
      CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, &overlapped);
  ASSERT_EQ(started, static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_EQ(WaitForSingleObject(overlapped.hEvent, 60000), static_cast<DWORD>(WAIT_OBJECT_0));
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(handle, &overlapped, &bytes, FALSE))
      << "error " << GetLastError();
  VIRTUAL_DISK_PROGRESS progress{};
  ASSERT_EQ(GetVirtualDiskOperationProgress(handle, &overlapped, &progress),
            static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_GT(progress.CompletionValue, 0u);
  EXPECT_EQ(progress.CurrentValue, progress.CompletionValue);
  CloseHandle(overlapped.hEvent);
  CloseHandle(handle);
  EXPECT_LE(FileSize(dir_ / disk) + 3ull * GetParam().block_size, size_before);
  EXPECT_TRUE(ReadDisk(dir_.Wide(disk)) == before);
}

// Cancels once the operation reports progress (CancelIoEx, or closing the handle): the call
// completes with ERROR_OPERATION_ABORTED unless it finished first, the disk reads as before, and
// a second compaction completes the job.
void CancelMidOperation(CompactApiTest& test, const TempDir& dir, const std::string& disk,
                        ULONG block, bool by_close) {
  std::vector<int> content;
  for (int b = 0; b < 96; ++b) content.push_back(b % 2 == 0 ? 1 : 2);
  ASSERT_NO_FATAL_FAILURE(test.MakeDiskFor(disk, content));
  const auto before = ReadDisk(dir.Wide(disk));
  HANDLE handle = nullptr;
  ASSERT_EQ(OpenV1(dir.Wide(disk), VIRTUAL_DISK_ACCESS_METAOPS, &handle),
            static_cast<DWORD>(ERROR_SUCCESS));
  OVERLAPPED overlapped{};
  overlapped.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(CompactVirtualDisk(handle, COMPACT_VIRTUAL_DISK_FLAG_NONE, nullptr, &overlapped),
            static_cast<DWORD>(ERROR_IO_PENDING));
  // Until the first step is reported (or the operation is over).
  for (;;) {
    VIRTUAL_DISK_PROGRESS progress{};
    ASSERT_EQ(GetVirtualDiskOperationProgress(handle, &overlapped, &progress),
              static_cast<DWORD>(ERROR_SUCCESS));
    if (progress.CurrentValue > 0 || progress.OperationStatus != ERROR_IO_PENDING) break;
    std::this_thread::yield();
  }
  DWORD result = ERROR_SUCCESS;
  if (by_close) {
    CloseHandle(handle);
    ASSERT_EQ(WaitForSingleObject(overlapped.hEvent, 60000), static_cast<DWORD>(WAIT_OBJECT_0));
  } else {
    CancelIoEx(handle, &overlapped);
    ASSERT_EQ(WaitForSingleObject(overlapped.hEvent, 60000), static_cast<DWORD>(WAIT_OBJECT_0));
    DWORD bytes = 0;
    if (!GetOverlappedResult(handle, &overlapped, &bytes, FALSE)) result = GetLastError();
    CloseHandle(handle);
    EXPECT_TRUE(result == ERROR_SUCCESS || result == ERROR_OPERATION_ABORTED) << result;
  }
  CloseHandle(overlapped.hEvent);
  std::printf("[ CANCEL   ] %s\n",
              by_close ? "CloseHandle after the first step was reported"
              : result == ERROR_OPERATION_ABORTED
                  ? "CancelIoEx: aborted mid-way"
                  : "CancelIoEx: the compaction had ended before the cancel");
  EXPECT_TRUE(ReadDisk(dir.Wide(disk)) == before) << "content changed by the cancelled compaction";
  const std::uint64_t size_cancelled = FileSize(dir / disk);
  ASSERT_EQ(Compact(dir.Wide(disk)), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_LE(FileSize(dir / disk), size_cancelled);
  EXPECT_LE(FileSize(dir / disk) + 48ull * block, static_cast<std::uint64_t>(96) * block + 64 * kMiB);
  EXPECT_TRUE(ReadDisk(dir.Wide(disk)) == before);
}

TEST_P(CompactApiTest, CancelIoExMidOperationLeavesTheDiskReadable) {
  CancelMidOperation(*this, dir_, Name("disk"), GetParam().block_size, false);
}

TEST_P(CompactApiTest, CloseHandleMidOperationLeavesTheDiskReadable) {
  CancelMidOperation(*this, dir_, Name("disk"), GetParam().block_size, true);
}

TEST_P(CompactApiTest, DifferencingChildKeepsShadowingItsParent) {
  ASSERT_NO_FATAL_FAILURE(MakeDisk(Name("parent"), {2, 2, 0, 0}));
  ASSERT_NO_FATAL_FAILURE(MakeDisk(Name("child"), {1, 0, 1, 2}, Name("parent")));
  const auto before = ReadDisk(dir_.Wide(Name("child")));
  const std::uint64_t size_before = FileSize(dir_ / Name("child"));
  ASSERT_EQ(Compact(dir_.Wide(Name("child"))), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_TRUE(ReadDisk(dir_.Wide(Name("child"))) == before) << "content changed";
  // Block 2 (zeros over an empty parent) goes in both formats; block 0 (zeros over data) only
  // in VHDX, as a zero state.
  const ULONG zero_blocks = GetParam().device == VIRTUAL_STORAGE_TYPE_DEVICE_VHDX ? 2 : 1;
  EXPECT_LE(FileSize(dir_ / Name("child")) + zero_blocks * GetParam().block_size, size_before);
  // The parent, compacted too, still serves the child (its identity does not change).
  ASSERT_EQ(Compact(dir_.Wide(Name("parent"))), static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_TRUE(ReadDisk(dir_.Wide(Name("child"))) == before) << "after the parent's compaction";
}

INSTANTIATE_TEST_SUITE_P(
    Formats, CompactApiTest,
    ::testing::Values(Format{VIRTUAL_STORAGE_TYPE_DEVICE_VHD, 2 * kMiB, ".vhd", "vpc", "Vhd"},
                      Format{VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, kMiB, ".vhdx", "vhdx", "Vhdx"}),
    FormatName);

}  // namespace
}  // namespace vdisk_test
