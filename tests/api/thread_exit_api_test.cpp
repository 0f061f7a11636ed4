// An operation whose issuing thread exits: Windows cancels the I/O of an exiting thread unless
// the handle is bound to an I/O completion port, and a mirror is such I/O. On Windows the
// mirror's pending read lives on the issuing thread (src/api/win32/disk_pipe.h) and the DLL
// stops the mirror when that thread exits (src/api/win32/thread_exit.h). On Linux an operation
// is not tied to a thread (docs/behaviour.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "api_test_support.h"
#include "support/wait.h"

namespace vdisk_test {
namespace {

#ifdef _WIN32

constexpr DWORD kStatusCancelled = 0xC0000120u;

// A 16 MiB source whose first MiB holds a pattern; returns the pattern.
std::vector<unsigned char> MakeSource(const TempDir& dir) {
  HANDLE h = nullptr;
  EXPECT_EQ(CreateVhd(dir.Wide("src.vhd"), 16 << 20, false, &h), ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(h), ERROR_SUCCESS);
  auto data = Pattern(1 << 20, 5);
  EXPECT_EQ(WriteAt(h, 0, data.data(), 1 << 20), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(h));
  return data;
}

// MirrorVirtualDisk of `h` into `target`, called on a thread that exits at once.
DWORD MirrorFromAThreadThatExits(HANDLE h, const WString& target, OVERLAPPED* ov) {
  DWORD result = ERROR_SUCCESS;
  std::thread issuer([&] {
    MIRROR_VIRTUAL_DISK_PARAMETERS p{};
    p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
    p.Version1.MirrorVirtualDiskPath = target.c_str();
    result = MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, ov);
  });
  issuer.join();
  return result;
}

TEST(OperationOfAnExitingThread, MirrorIsCancelledWhenItsThreadExits) {
  TempDir dir;
  MakeSource(dir);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorFromAThreadThatExits(h, dir.Wide("dst.vhd"), &ov), ERROR_IO_PENDING);
  ASSERT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_EQ(static_cast<DWORD>(ov.Internal), kStatusCancelled);
  DWORD bytes = 0;
  EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, FALSE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
  // The mirror itself stops right after (on a thread of the DLL's, see
  // DiskHandle::WatchIssuingThread): the operation ends cancelled and its target is removed. The
  // deadline only keeps a broken build from hanging.
  VIRTUAL_DISK_PROGRESS progress{};
  vdisk_testing::WaitUntil([&] {
    return GetVirtualDiskOperationProgress(h, &ov, &progress) == ERROR_SUCCESS &&
           progress.OperationStatus != ERROR_IO_PENDING;
  });
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_OPERATION_ABORTED))
      << "the mirror still runs after its thread exited";
  EXPECT_FALSE(std::filesystem::exists(dir / "dst.vhd")) << "the cancelled mirror's target";
  EXPECT_TRUE(CloseHandle(h));
  CloseHandle(ov.hEvent);
}

TEST(OperationOfAnExitingThread, MirrorOnAPortBoundHandleOutlivesItsThread) {
  TempDir dir;
  const auto data = MakeSource(dir);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  HANDLE port = CreateIoCompletionPort(h, nullptr, 0x5EED, 0);
  ASSERT_NE(port, nullptr);
  OVERLAPPED ov{};  // no event: the port is how this caller learns of the completion
  ASSERT_EQ(MirrorFromAThreadThatExits(h, dir.Wide("dst.vhd"), &ov), ERROR_IO_PENDING);
  VIRTUAL_DISK_PROGRESS progress{};
  do {
    ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_SUCCESS);
    ASSERT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING))
        << "the mirror ended with its thread";
  } while (progress.CurrentValue != progress.CompletionValue);
  ASSERT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS);
  DWORD bytes = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  ASSERT_TRUE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 60000)) << GetLastError();
  EXPECT_EQ(key, 0x5EEDu);
  EXPECT_EQ(got, &ov);
  EXPECT_EQ(static_cast<DWORD>(ov.Internal), 0u);
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_TRUE(CloseHandle(port));
  HANDLE copy = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("dst.vhd"), true, &copy), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(copy, true), ERROR_SUCCESS);
  std::vector<unsigned char> back(data.size());
  ASSERT_EQ(ReadAt(copy, 0, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(CloseHandle(copy));
}

#else

TEST(OperationOfAnExitingThread, AppliesToWindowsOnly) {
  GTEST_SKIP() << "on Linux an operation is not tied to the thread that started it: it runs "
                  "until it is broken, cancelled or its last handle is closed";
}

#endif

}  // namespace
}  // namespace vdisk_test
