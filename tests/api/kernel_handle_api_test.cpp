// What makes a disk handle a kernel handle on Windows: the process's other files are untouched by
// the DLL's kernel32 hooks, kernel32 found any way reaches the disk, and a close that bypasses
// the hooks (NtClose) still ends the handle. On Linux a disk handle is a value of the library's
// handle table and these cases do not apply.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api_test_support.h"
#include "support/wait.h"

namespace vdisk_test {
namespace {

#ifdef _WIN32

using NtCloseFunction = LONG(WINAPI*)(HANDLE);

NtCloseFunction NtCloseFromNtdll() {
  return reinterpret_cast<NtCloseFunction>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtClose")));
}

// Retries `attempt` until it returns ERROR_SUCCESS, and returns its last result. The DLL learns of
// a bypassed close from its watch thread, which announces it to nobody: the test polls for the
// effect; the deadline only keeps a broken build from hanging.
template <typename Attempt>
DWORD RetryUntilSuccess(Attempt attempt) {
  DWORD error = ERROR_SUCCESS;
  vdisk_testing::WaitUntil([&] { return (error = attempt()) == ERROR_SUCCESS; });
  return error;
}

// Waits until the DLL has released the image file (it can be opened without sharing). Tests whose
// close logic runs in the background end with this: under Wine 8 a process that exits while one
// of its threads is ending can hang in ExitProcess (ntdll runs the ending thread's FLS callbacks
// under a lock that the exit then waits for).
DWORD WaitUntilReleased(const std::filesystem::path& image) {
  const std::wstring path = image.wstring();
  return RetryUntilSuccess([&] {
    HANDLE file = CreateFileW(path.c_str(), GENERIC_READ, 0, nullptr, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file == INVALID_HANDLE_VALUE) return GetLastError();
    CloseHandle(file);
    return DWORD{ERROR_SUCCESS};
  });
}

TEST(KernelHandle, IsThePipeEndTheKernelKnows) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  DWORD flags = 0;
  EXPECT_TRUE(GetHandleInformation(h, &flags));
  EXPECT_EQ(GetFileType(h), static_cast<DWORD>(FILE_TYPE_PIPE));
  EXPECT_TRUE(CloseHandle(h));
}

TEST(KernelHandle, OtherFilesOfTheProcessAreUntouched) {
  TempDir dir;
  HANDLE disk = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 4 << 20, false, &disk), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(disk), ERROR_SUCCESS);
  const std::wstring path = (dir / "plain.bin").wstring();
  HANDLE file = CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS,
                            FILE_FLAG_OVERLAPPED, nullptr);
  ASSERT_NE(file, INVALID_HANDLE_VALUE);
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  const char text[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  DWORD n = 0;
  if (!WriteFile(file, text, 36, nullptr, &ov))
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_TRUE(GetOverlappedResult(file, &ov, &n, TRUE));
  EXPECT_EQ(n, 36u);
  char back[8] = {};
  ov.Offset = 10;
  ResetEvent(ov.hEvent);
  if (!ReadFile(file, back, 5, nullptr, &ov))
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
  ASSERT_TRUE(GetOverlappedResult(file, &ov, &n, TRUE));
  EXPECT_EQ(std::string(back, n), "abcde");
  // The original's end-of-file answer is kept.
  ov.Offset = 100;
  ResetEvent(ov.hEvent);
  BOOL ok = ReadFile(file, back, 5, nullptr, &ov);
  DWORD error = ok ? ERROR_SUCCESS : GetLastError();
  if (error == ERROR_IO_PENDING) {
    ok = GetOverlappedResult(file, &ov, &n, TRUE);
    error = ok ? ERROR_SUCCESS : GetLastError();
  }
  EXPECT_EQ(error, static_cast<DWORD>(ERROR_HANDLE_EOF));
  LARGE_INTEGER to{};
  to.QuadPart = 7;
  LARGE_INTEGER now{};
  EXPECT_TRUE(SetFilePointerEx(file, to, &now, FILE_BEGIN));
  EXPECT_EQ(now.QuadPart, 7);
  EXPECT_TRUE(FlushFileBuffers(file));
  EXPECT_FALSE(CancelIoEx(file, &ov));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_NOT_FOUND));
  CloseHandle(ov.hEvent);
  EXPECT_TRUE(CloseHandle(file));
  EXPECT_TRUE(CloseHandle(disk));
}

TEST(KernelHandle, ReadFileFoundThroughGetProcAddressReachesTheDisk) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(4096, 3);
  ASSERT_EQ(WriteAt(h, 8192, data.data(), 4096), ERROR_SUCCESS);
  using ReadFileFunction = BOOL(WINAPI*)(HANDLE, LPVOID, DWORD, LPDWORD, LPOVERLAPPED);
  for (const wchar_t* module : {L"kernel32.dll", L"kernelbase.dll"}) {
    auto read = reinterpret_cast<ReadFileFunction>(
        reinterpret_cast<void*>(GetProcAddress(GetModuleHandleW(module), "ReadFile")));
    ASSERT_NE(read, nullptr);
    std::vector<unsigned char> back(4096);
    OVERLAPPED ov{};
    ov.Offset = 8192;
    ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    DWORD n = 0;
    if (!read(h, back.data(), 4096, &n, &ov)) {
      ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
    }
    // A read the hooks missed would pend on the pipe for good.
    if (WaitForSingleObject(ov.hEvent, 30000) != WAIT_OBJECT_0) {
      CancelIoEx(h, &ov);
      ADD_FAILURE() << "ReadFile from " << std::filesystem::path(module).string()
                    << " did not reach the disk";
    }
    EXPECT_TRUE(GetOverlappedResult(h, &ov, &n, TRUE));
    EXPECT_EQ(back, data);
    CloseHandle(ov.hEvent);
  }
  EXPECT_TRUE(CloseHandle(h));
}

TEST(KernelHandle, ACloseThatBypassesTheHooksDetachesAndReleases) {
  TempDir dir;
  const WString path = dir.Wide("d.vhd");
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(path, 4 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  auto nt_close = NtCloseFromNtdll();
  ASSERT_NE(nt_close, nullptr);
  ASSERT_EQ(nt_close(h), 0);
  // The DLL learns of the close from its pipe, then detaches the attachment made through the
  // handle: a new handle can attach.
  HANDLE again = nullptr;
  ASSERT_EQ(OpenV2(path, false, &again), ERROR_SUCCESS);
  EXPECT_EQ(RetryUntilSuccess([&] { return AttachRaw(again); }), ERROR_SUCCESS);
  EXPECT_TRUE(CloseHandle(again));
  EXPECT_EQ(WaitUntilReleased(dir / "d.vhd"), ERROR_SUCCESS);
}

TEST(KernelHandle, ACloseThatBypassesTheHooksCancelsTheMirror) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("src.vhd"), 256 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  for (std::uint64_t at = 0; at < (256u << 20); at += 8 << 20) {
    const auto data = Pattern(64 << 10, static_cast<std::uint32_t>(at >> 20));
    ASSERT_EQ(WriteAt(h, at, data.data(), 64 << 10), ERROR_SUCCESS);
  }
  ASSERT_EQ(DetachVirtualDisk(h, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  const WString target = dir.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  ASSERT_EQ(NtCloseFromNtdll()(h), 0);
  // The kernel ends the pending operation itself (STATUS_PIPE_BROKEN: no hook saw the close).
  EXPECT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
  EXPECT_NE(static_cast<DWORD>(ov.Internal), 0u) << "a close never reports success";
  // Then the DLL cancels the mirror, which removes the target it created.
  EXPECT_EQ(RetryUntilSuccess([&] {
              return std::filesystem::exists(dir / "dst.vhd") ? DWORD{ERROR_BUSY}
                                                              : DWORD{ERROR_SUCCESS};
            }),
            ERROR_SUCCESS);
  // And releases the disk.
  EXPECT_EQ(WaitUntilReleased(dir / "src.vhd"), ERROR_SUCCESS);
  CloseHandle(ov.hEvent);
}

TEST(KernelHandle, OpenIoAndCloseLeaveNoHandleBehind) {
  TempDir dir;
  const WString path = dir.Wide("d.vhd");
  HANDLE h = nullptr;
  std::vector<unsigned char> back(4096);
  ASSERT_EQ(CreateVhd(path, 4 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  ASSERT_EQ(ReadAt(h, 4096, back.data(), 4096), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));  // the watch thread, the hooks and the I/O threads exist now
  const long before = ProcessHandleCount();
  ASSERT_GT(before, 0);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    ASSERT_EQ(ReadAt(h, 4096, back.data(), 4096), ERROR_SUCCESS);
    ASSERT_TRUE(CloseHandle(h));
  }
  // Server ends close once the watch thread has seen each client end go.
  long after = 0;
  vdisk_testing::WaitUntil([&] { return (after = ProcessHandleCount()) <= before; });
  EXPECT_LE(after, before) << "handles before 200 open/attach/read/close cycles: " << before;
}

TEST(KernelHandle, CancelIoExOfAnOverlappedNotInFlightIsNotFound) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("d.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  EXPECT_FALSE(CancelIoEx(h, &ov));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_NOT_FOUND));
  EXPECT_TRUE(CancelIo(h));
  EXPECT_TRUE(CloseHandle(h));
}

#else

TEST(KernelHandle, AppliesToWindowsOnly) {
  GTEST_SKIP() << "on Linux a disk handle is a value of the library's handle table, not a "
                  "kernel handle: no hooks, no pipe (see rawio and mirror tests for the behaviour "
                  "both targets share)";
}

#endif

}  // namespace
}  // namespace vdisk_test
