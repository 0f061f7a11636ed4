// Long runs of the calls a service makes all day: 10,000 open/GetVirtualDiskInformation/close
// cycles, 2,000 of them with a duplicated handle, and 1,000 mirror start/cancel cycles (fewer
// under Wine and the sanitizers: kCycles) leave the process's handle count and memory where
// they were. Handles are file descriptors on Linux and kernel handles under Wine (each disk
// handle is one there, with a server end closed by the DLL's watch thread shortly after the
// client end goes, hence the wait for the count to settle). Memory is the heap in use on Linux
// (mallinfo2, exact to the byte) and the commit charge on Windows; sanitizer builds replace the
// allocator, so there the memory half is not checked.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "api_test_support.h"
#include "support/sanitizers.h"
#include "support/wait.h"

namespace vdisk_test {
namespace {

#ifdef _WIN32
// Handles that appear once, on first use, inside the C runtime (winpthreads creates the event of
// a contended mutex lazily) rather than per cycle.
constexpr long kHandleSlack = 4;
#else
constexpr long kHandleSlack = 0;
#endif
// The cycles of each test. Under Wine every call that reaches the kernel is a round trip to
// wineserver (an open/close cycle costs about 2.4 ms, a mirror cycle about 130 ms: threads, the
// target's creation and removal), so the Windows build runs fewer of them: handles are counted
// exactly there, and the memory bound still catches a leak of 66 bytes per open/close cycle or
// of 1.7 KiB per mirror cycle (a mirror cycle allocates its copy buffers, megabytes). Under the
// sanitizers only the handle count is checked (and LeakSanitizer checks the heap at exit), which
// a few hundred cycles show as well as thousands.
struct Cycles {
  int open;
  int duplicate;
  int mirror;
};
#if defined(VIRTDISK_TEST_SANITIZED)
constexpr Cycles kCycles{1000, 200, 100};
#elif defined(_WIN32)
constexpr Cycles kCycles{4000, 1000, 150};
#else
constexpr Cycles kCycles{10000, 2000, 1000};
#endif
// A leak of 26 bytes per open/close cycle, or of 262 bytes per mirror cycle, exceeds this (under
// Wine: 66 and 1,748 bytes).
constexpr long long kMemorySlack = 256 << 10;

struct Usage {
  long handles = 0;
  long long memory = 0;
};

Usage Measure() { return {ProcessHandleCount(), ProcessMemoryBytes()}; }

// Waits (at most 30 s) for the handle count to come back within ExpectFlat's bound of
// `before`'s, then measures: waiting longer could only lower a count that already passes.
Usage Settled(const Usage& before) {
  vdisk_testing::WaitUntil([&] { return Measure().handles <= before.handles + kHandleSlack; },
                           std::chrono::seconds(30));
  return Measure();
}

void ExpectFlat(const Usage& before, const Usage& after, const char* what, int cycles) {
  ASSERT_GT(before.handles, 0) << "handles cannot be counted";
  EXPECT_LE(after.handles, before.handles + kHandleSlack)
      << what << ": handles " << before.handles << " -> " << after.handles;
#ifndef VIRTDISK_TEST_SANITIZED
  ASSERT_GT(before.memory, 0) << "memory cannot be measured";
  EXPECT_LE(after.memory - before.memory, kMemorySlack)
      << what << ": memory " << before.memory << " -> " << after.memory << " bytes";
#endif
  std::printf("%d %s: handles %ld -> %ld, memory %+lld bytes\n", cycles, what, before.handles,
              after.handles, after.memory - before.memory);
}

void OpenInfoClose(const WString& path) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  ASSERT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS);
  ASSERT_EQ(info.Size.VirtualSize, 16ull << 20);
  ASSERT_TRUE(CloseHandle(h));
}

TEST(Leak, OpenInformationAndCloseRepeatedly) {
  TempDir dir;
  const WString path = dir.Wide("d.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(path, 16 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  for (int i = 0; i < 100; ++i) ASSERT_NO_FATAL_FAILURE(OpenInfoClose(path));  // warm-up
  const Usage before = Settled(Measure());
  for (int i = 0; i < kCycles.open; ++i) ASSERT_NO_FATAL_FAILURE(OpenInfoClose(path));
  ExpectFlat(before, Settled(before), "open/information/close cycles", kCycles.open);
}

// Open, duplicate, information through both, close the original, information through the
// duplicate, close the duplicate.
void OpenDuplicateClose(const WString& path) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
  HANDLE d = nullptr;
  ASSERT_TRUE(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &d, 0, FALSE,
                              DUPLICATE_SAME_ACCESS));
  for (HANDLE each : {h, d}) {
    GET_VIRTUAL_DISK_INFO info{};
    info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
    ULONG size = sizeof info;
    ASSERT_EQ(GetVirtualDiskInformation(each, &size, &info, nullptr), ERROR_SUCCESS);
    ASSERT_EQ(info.Size.VirtualSize, 16ull << 20);
    ASSERT_TRUE(CloseHandle(each));
  }
}

TEST(Leak, OpenDuplicateAndCloseBothRepeatedly) {
  TempDir dir;
  const WString path = dir.Wide("d.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(path, 16 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  for (int i = 0; i < 100; ++i) ASSERT_NO_FATAL_FAILURE(OpenDuplicateClose(path));  // warm-up
  const Usage before = Settled(Measure());
  for (int i = 0; i < kCycles.duplicate; ++i) ASSERT_NO_FATAL_FAILURE(OpenDuplicateClose(path));
  ExpectFlat(before, Settled(before), "open/duplicate/information/close cycles",
             kCycles.duplicate);
}

// One mirror started and cancelled: by CancelIoEx on its OVERLAPPED, or (every tenth) by
// closing the handle with the mirror running.
void MirrorAndCancel(const WString& source, const std::filesystem::path& target, bool close) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(source, false, &h), ERROR_SUCCESS);
  const WString target_path = ToWide(target);
  MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
  mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  mirror.Version1.MirrorVirtualDiskPath = target_path.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_NE(ov.hEvent, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &mirror, &ov),
            static_cast<DWORD>(ERROR_IO_PENDING));
  if (close) {
    ASSERT_TRUE(CloseHandle(h));
    ASSERT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
    EXPECT_EQ(static_cast<DWORD>(ov.Internal), 0xC0000120u) << "STATUS_CANCELLED in Internal";
  } else {
    ASSERT_TRUE(CancelIoEx(h, &ov));
    DWORD bytes = 0;
    EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, TRUE));
    EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
    ASSERT_TRUE(CloseHandle(h));
  }
  ASSERT_TRUE(CloseHandle(ov.hEvent));
  std::error_code ec;
  std::filesystem::remove(target, ec);
}

TEST(Leak, StartAndCancelAMirrorRepeatedly) {
  TempDir dir;
  const WString source = dir.Wide("src.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(source, 64 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(1 << 20, 3);
  for (std::uint64_t offset = 0; offset < (64u << 20); offset += 8u << 20)
    ASSERT_EQ(WriteAt(h, offset, data.data(), static_cast<DWORD>(data.size())), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  const std::filesystem::path target = dir / "mirror.vhd";
  for (int i = 0; i < 20; ++i) ASSERT_NO_FATAL_FAILURE(MirrorAndCancel(source, target, i % 10 == 9));
  const Usage before = Settled(Measure());
  for (int i = 0; i < kCycles.mirror; ++i)
    ASSERT_NO_FATAL_FAILURE(MirrorAndCancel(source, target, i % 10 == 9));
  ExpectFlat(before, Settled(before), "mirror start/cancel cycles", kCycles.mirror);
}

}  // namespace
}  // namespace vdisk_test
