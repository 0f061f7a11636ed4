// Raw I/O on an attached disk handle, as Microsoft's RawIO sample does it: open, attach with
// ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, ReadFile/WriteFile with OVERLAPPED offsets.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

class RawIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Wide("raw.vhd");
    ASSERT_EQ(CreateVhd(path_, kSize, false, &h_), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h_), ERROR_SUCCESS);
  }
  void TearDown() override {
    if (h_ != nullptr) EXPECT_TRUE(CloseHandle(h_));
  }
  static constexpr ULONGLONG kSize = 32ull << 20;
  TempDir dir_;
  WString path_;
  HANDLE h_ = nullptr;
};

TEST_F(RawIoTest, AsynchronousReadWithEventAndGetOverlappedResult) {
  const auto data = Pattern(128 << 10, 11);
  ASSERT_EQ(WriteAt(h_, 5 << 20, data.data(), static_cast<DWORD>(data.size())), ERROR_SUCCESS);

  std::vector<unsigned char> back(data.size());
  OVERLAPPED ov{};
  ov.Offset = 5 << 20;
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  DWORD n = 0;
  const BOOL ok = ReadFile(h_, back.data(), static_cast<DWORD>(back.size()), &n, &ov);
  if (!ok) {
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
    EXPECT_EQ(WaitForSingleObject(ov.hEvent, 10000), WAIT_OBJECT_0);
    ASSERT_TRUE(GetOverlappedResult(h_, &ov, &n, FALSE));
  }
  EXPECT_TRUE(HasOverlappedIoCompleted(&ov));
  EXPECT_EQ(n, back.size());
  EXPECT_EQ(back, data);
  CloseHandle(ov.hEvent);
}

TEST_F(RawIoTest, OverlappedWithoutEventWaitsOnTheHandle) {
  const auto data = Pattern(4096, 12);
  OVERLAPPED ov{};
  ov.Offset = 4096;
  DWORD n = 0;
  if (!WriteFile(h_, data.data(), 4096, &n, &ov)) {
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
  }
  ASSERT_TRUE(GetOverlappedResult(h_, &ov, &n, TRUE));
  EXPECT_EQ(n, 4096u);
  std::vector<unsigned char> back(4096);
  ASSERT_EQ(ReadAt(h_, 4096, back.data(), 4096), ERROR_SUCCESS);
  EXPECT_EQ(back, data);
}

TEST_F(RawIoTest, SynchronousIoFollowsTheFilePointer) {
  const auto data = Pattern(8192, 13);
  LARGE_INTEGER to{};
  to.QuadPart = 3 << 20;
  LARGE_INTEGER now{};
  ASSERT_TRUE(SetFilePointerEx(h_, to, &now, FILE_BEGIN));
  EXPECT_EQ(now.QuadPart, 3 << 20);
  DWORD n = 0;
  ASSERT_TRUE(WriteFile(h_, data.data(), 8192, &n, nullptr));
  EXPECT_EQ(n, 8192u);
  to.QuadPart = 0;
  ASSERT_TRUE(SetFilePointerEx(h_, to, &now, FILE_CURRENT));
  EXPECT_EQ(now.QuadPart, (3 << 20) + 8192);
  to.QuadPart = 3 << 20;
  ASSERT_TRUE(SetFilePointerEx(h_, to, nullptr, FILE_BEGIN));
  std::vector<unsigned char> back(8192);
  ASSERT_TRUE(ReadFile(h_, back.data(), 8192, &n, nullptr));
  EXPECT_EQ(back, data);
  ASSERT_TRUE(FlushFileBuffers(h_));
}

TEST_F(RawIoTest, UnwrittenSpaceReadsAsZeros) {
  std::vector<unsigned char> back(64 << 10, 0xEE);
  ASSERT_EQ(ReadAt(h_, 20 << 20, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
  EXPECT_EQ(back, std::vector<unsigned char>(back.size(), 0));
}

TEST_F(RawIoTest, MisalignedOrOutOfRangeRequestsAreInvalid) {
  unsigned char buffer[1024] = {};
  EXPECT_EQ(ReadAt(h_, 100, buffer, 512), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(ReadAt(h_, 0, buffer, 100), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(ReadAt(h_, kSize, buffer, 512), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(ReadAt(h_, kSize - 512, buffer, 1000), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(WriteAt(h_, kSize, buffer, 512), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(WriteAt(h_, kSize - 512, buffer, 1024), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
}

// A read crossing the end reads up to the end and says how much (see DiskHandle::ReadableLength).
TEST_F(RawIoTest, ReadCrossingTheEndIsShort) {
  std::vector<unsigned char> last(512, 0x5A);
  ASSERT_EQ(WriteAt(h_, kSize - 512, last.data(), 512), ERROR_SUCCESS);
  std::vector<unsigned char> buffer(4096, 0xEE);
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>((kSize - 512) & 0xFFFFFFFF);
  ov.OffsetHigh = static_cast<DWORD>((kSize - 512) >> 32);
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  DWORD n = 0;
  if (!ReadFile(h_, buffer.data(), 4096, &n, &ov)) {
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
  }
  ASSERT_TRUE(GetOverlappedResult(h_, &ov, &n, TRUE));
  EXPECT_EQ(n, 512u) << "expected the 512 bytes up to the end";
  EXPECT_EQ(std::vector<unsigned char>(buffer.begin(), buffer.begin() + 512), last);
  CloseHandle(ov.hEvent);
}

TEST_F(RawIoTest, ManyRequestsInFlightFromSeveralThreads) {
  std::vector<std::thread> threads;
  std::vector<DWORD> errors(4, ERROR_SUCCESS);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Each thread owns an 8 MiB quarter and keeps 8 requests in flight.
      constexpr int kInFlight = 8;
      std::vector<std::vector<unsigned char>> buffers;
      std::vector<OVERLAPPED> ovs(kInFlight);
      for (int i = 0; i < kInFlight; ++i) {
        buffers.push_back(Pattern(64 << 10, static_cast<std::uint32_t>(t * 100 + i)));
        ovs[i] = OVERLAPPED{};
        const std::uint64_t offset = (static_cast<std::uint64_t>(t) << 23) +
                                     static_cast<std::uint64_t>(i) * (1 << 20);
        ovs[i].Offset = static_cast<DWORD>(offset);
        ovs[i].hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
        DWORD n = 0;
        if (!WriteFile(h_, buffers[i].data(), 64 << 10, &n, &ovs[i]) &&
            GetLastError() != ERROR_IO_PENDING)
          errors[t] = GetLastError();
      }
      for (int i = 0; i < kInFlight; ++i) {
        DWORD n = 0;
        if (!GetOverlappedResult(h_, &ovs[i], &n, TRUE)) errors[t] = GetLastError();
        CloseHandle(ovs[i].hEvent);
      }
      for (int i = 0; i < kInFlight; ++i) {
        std::vector<unsigned char> back(64 << 10);
        const std::uint64_t offset = (static_cast<std::uint64_t>(t) << 23) +
                                     static_cast<std::uint64_t>(i) * (1 << 20);
        if (ReadAt(h_, offset, back.data(), 64 << 10) != ERROR_SUCCESS || back != buffers[i])
          errors[t] = ERROR_INVALID_DATA;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(errors[t], static_cast<DWORD>(ERROR_SUCCESS)) << "thread " << t;
}

TEST_F(RawIoTest, CloseHandleWhileOtherThreadsReadEndsTheirCallsCleanly) {
  // Readers hammer the handle with synchronous reads while the main thread closes it. Every
  // call either completes with the right bytes or fails with ERROR_INVALID_HANDLE; after the
  // close, the value is dead for good, even once new handles reuse its slot.
  const auto pattern = Pattern(4096, 77);
  ASSERT_EQ(WriteAt(h_, 8192, pattern.data(), 4096), ERROR_SUCCESS);
  // The readers use their own copy of the handle value (the fixture's h_ is cleared below while
  // they run), and the close waits until each of them has read through the handle once.
  const HANDLE handle = h_;
  std::atomic<bool> closed{false};
  std::atomic<int> bad{0};
  std::atomic<int> reads_after_close{0};
  std::mutex mutex;
  std::condition_variable reading;
  int readers_reading = 0;
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      std::vector<unsigned char> back(4096);
      for (bool first = true;; first = false) {
        const bool was_closed = closed.load();
        const DWORD error = ReadAt(handle, 8192, back.data(), 4096);
        if (first) {
          std::lock_guard lock(mutex);
          ++readers_reading;
          reading.notify_all();
        }
        if (error == ERROR_SUCCESS) {
          if (back != pattern) ++bad;
          if (was_closed) ++bad;  // a read that began after the close returned must fail
        } else if (error == ERROR_INVALID_HANDLE) {
          if (++reads_after_close > 50) return;
        } else {
          ++bad;
        }
      }
    });
  }
  {
    std::unique_lock lock(mutex);
    reading.wait(lock, [&] { return readers_reading == 4; });
  }
  ASSERT_TRUE(CloseHandle(handle));
  closed.store(true);
  const HANDLE closed_value = handle;
  h_ = nullptr;
  for (auto& th : readers) th.join();
  EXPECT_EQ(bad.load(), 0);
#ifdef _WIN32
  // A disk handle is a kernel handle, and the kernel hands a closed value out again at once
  // (the readers' events may have taken it and closed it again): the value is dead only until
  // it is reused, as for any Win32 handle.
  EXPECT_EQ(VirtualSize(closed_value), 0u) << "the value is no disk handle any more";
  DWORD info = 0;
  if (GetHandleInformation(closed_value, &info)) {
    // Another object of the process holds the value now (the thread runtime keeps events of its
    // own): it must not be the pipe end that was the disk handle.
    EXPECT_NE(GetFileType(closed_value), static_cast<DWORD>(FILE_TYPE_PIPE));
  } else {
    DWORD n = 0;
    char byte = 0;
    EXPECT_FALSE(ReadFile(closed_value, &byte, 1, &n, nullptr));
    EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
    EXPECT_FALSE(CloseHandle(closed_value));
    EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
  }
#else
  // New handles (which may take the freed slot) never answer to the old value.
  std::vector<HANDLE> events;
  for (int i = 0; i < 8; ++i) events.push_back(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  for (HANDLE e : events) EXPECT_NE(e, closed_value);
  DWORD n = 0;
  char byte = 0;
  EXPECT_FALSE(ReadFile(closed_value, &byte, 1, &n, nullptr));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
  EXPECT_FALSE(CloseHandle(closed_value));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_INVALID_HANDLE));
  for (HANDLE e : events) EXPECT_TRUE(CloseHandle(e));
#endif
}

TEST_F(RawIoTest, ReadOnlyAttachmentRefusesWrites) {
  ASSERT_EQ(DetachVirtualDisk(h_, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h_, true), ERROR_SUCCESS);
  unsigned char buffer[512] = {1};
  EXPECT_EQ(WriteAt(h_, 0, buffer, 512), static_cast<DWORD>(ERROR_WRITE_PROTECT));
  EXPECT_EQ(ReadAt(h_, 0, buffer, 512), static_cast<DWORD>(ERROR_SUCCESS));
}

TEST_F(RawIoTest, AttachingTwiceIsRefused) {
  EXPECT_NE(AttachRaw(h_), static_cast<DWORD>(ERROR_SUCCESS));
}

TEST_F(RawIoTest, WritesSurviveCloseAndReopen) {
  const auto data = Pattern(3 << 20, 21);  // spans two 2 MiB blocks
  ASSERT_EQ(WriteAt(h_, (1 << 20) + 512, data.data(), static_cast<DWORD>(data.size())),
            ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h_));
  h_ = nullptr;
  ASSERT_EQ(OpenV2(path_, true, &h_), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h_, true), ERROR_SUCCESS);
  std::vector<unsigned char> back(data.size());
  ASSERT_EQ(ReadAt(h_, (1 << 20) + 512, back.data(), static_cast<DWORD>(back.size())),
            ERROR_SUCCESS);
  EXPECT_EQ(back, data);
}

TEST_F(RawIoTest, DifferencingChildReadsThroughToItsParent) {
  const auto base_data = Pattern(1 << 20, 31);
  ASSERT_EQ(WriteAt(h_, 0, base_data.data(), 1 << 20), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h_));
  h_ = nullptr;
  HANDLE child = nullptr;
  ASSERT_EQ(CreateVhd(dir_.Wide("child.vhd"), 0, false, &child, 0, path_), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(child), ERROR_SUCCESS);
  const auto child_data = Pattern(4096, 32);
  ASSERT_EQ(WriteAt(child, 8192, child_data.data(), 4096), ERROR_SUCCESS);
  std::vector<unsigned char> back(1 << 20);
  ASSERT_EQ(ReadAt(child, 0, back.data(), 1 << 20), ERROR_SUCCESS);
  auto expected = base_data;
  std::memcpy(expected.data() + 8192, child_data.data(), 4096);
  EXPECT_EQ(back, expected);
  EXPECT_TRUE(CloseHandle(child));
  // The parent file itself is unchanged.
  ASSERT_EQ(OpenV2(path_, true, &h_), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h_, true), ERROR_SUCCESS);
  ASSERT_EQ(ReadAt(h_, 0, back.data(), 1 << 20), ERROR_SUCCESS);
  EXPECT_EQ(back, base_data);
}

// One synchronous-style transfer of the sample: ReadFile or WriteFile with an event OVERLAPPED
// carrying the offset, then GetOverlappedResult waiting for it.
bool Transfer(HANDLE disk, bool write, std::uint64_t offset, void* buffer, DWORD length) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  DWORD done = 0;
  const BOOL issued = write ? WriteFile(disk, buffer, length, &done, &ov)
                            : ReadFile(disk, buffer, length, &done, &ov);
  const bool ok = (issued || GetLastError() == ERROR_IO_PENDING) &&
                  GetOverlappedResult(disk, &ov, &done, TRUE) && done == length;
  CloseHandle(ov.hEvent);
  return ok;
}

// Microsoft's RawIO sample: a source and a destination disk opened (UNKNOWN type and vendor, V2,
// ACCESS_NONE) and attached with NO_LOCAL_HOST (the source READ_ONLY), their sizes and sector
// sizes from GetVirtualDiskInformation, and the source copied sector range by sector range with
// ReadFile and WriteFile; here from a dynamic VHDX into a dynamic VHD.
TEST(RawIoSample, CopiesOneAttachedDiskToAnother) {
  TempDir dir;
  constexpr ULONGLONG kDiskSize = 24ull << 20;
  std::vector<unsigned char> reference(kDiskSize);
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("src.vhdx"), kDiskSize, false, &h, 0, WString(),
                      VIRTUAL_STORAGE_TYPE_DEVICE_VHDX),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 40; ++i) {
    const std::size_t length = (rng() % 64 + 1) * 512;
    const std::uint64_t offset = rng() % ((kDiskSize - length) / 512) * 512;
    const auto data = Pattern(length, static_cast<std::uint32_t>(rng()));
    ASSERT_EQ(WriteAt(h, offset, data.data(), static_cast<DWORD>(length)), ERROR_SUCCESS);
    std::memcpy(reference.data() + offset, data.data(), length);
  }
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(CreateVhd(dir.Wide("dst.vhd"), kDiskSize, false, &h), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));

  HANDLE source = nullptr;
  HANDLE destination = nullptr;
  ASSERT_EQ(OpenV2(dir.Wide("src.vhdx"), false, &source), ERROR_SUCCESS);
  ASSERT_EQ(OpenV2(dir.Wide("dst.vhd"), false, &destination), ERROR_SUCCESS);
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  ASSERT_EQ(AttachVirtualDisk(source, nullptr,
                              static_cast<ATTACH_VIRTUAL_DISK_FLAG>(
                                  ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST |
                                  ATTACH_VIRTUAL_DISK_FLAG_READ_ONLY),
                              0, &attach, nullptr),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachVirtualDisk(destination, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0,
                              &attach, nullptr),
            ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO source_size{};
  GET_VIRTUAL_DISK_INFO destination_size{};
  source_size.Version = destination_size.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG info_size = sizeof source_size;
  ASSERT_EQ(GetVirtualDiskInformation(source, &info_size, &source_size, nullptr), ERROR_SUCCESS);
  info_size = sizeof destination_size;
  ASSERT_EQ(GetVirtualDiskInformation(destination, &info_size, &destination_size, nullptr),
            ERROR_SUCCESS);
  ASSERT_EQ(source_size.Size.VirtualSize, kDiskSize);
  ASSERT_GE(destination_size.Size.VirtualSize, source_size.Size.VirtualSize);
  const ULONG sector = source_size.Size.SectorSize;
  ASSERT_EQ(sector, 512u);

  std::vector<unsigned char> buffer(sector * 2048);  // 1 MiB of sectors at a time
  for (std::uint64_t offset = 0; offset < source_size.Size.VirtualSize;) {
    const DWORD length = static_cast<DWORD>(
        std::min<std::uint64_t>(buffer.size(), source_size.Size.VirtualSize - offset));
    ASSERT_TRUE(Transfer(source, false, offset, buffer.data(), length)) << "read at " << offset;
    ASSERT_TRUE(Transfer(destination, true, offset, buffer.data(), length)) << "write at " << offset;
    offset += length;
  }
  // The read-only attachment refuses the sample's copy the other way round.
  EXPECT_FALSE(Transfer(source, true, 0, buffer.data(), sector));
  EXPECT_TRUE(CloseHandle(source));
  EXPECT_TRUE(CloseHandle(destination));

  ASSERT_EQ(OpenV2(dir.Wide("dst.vhd"), true, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  std::vector<unsigned char> back(kDiskSize);
  for (std::uint64_t offset = 0; offset < kDiskSize; offset += 1 << 20)
    ASSERT_EQ(ReadAt(h, offset, back.data() + offset, 1 << 20), ERROR_SUCCESS);
  EXPECT_TRUE(back == reference) << "the copy differs from what was written to the source";
  EXPECT_TRUE(CloseHandle(h));
}

TEST(IoCompletionPort, AttachWithAnOverlappedCompletesIt) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("a.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  HANDLE port = CreateIoCompletionPort(h, nullptr, 0xA77, 0);
  ASSERT_NE(port, nullptr);
  ATTACH_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  const DWORD result = AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0,
                                         &params, &ov);
  ASSERT_TRUE(result == ERROR_SUCCESS || result == ERROR_IO_PENDING) << result;
  EXPECT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
  DWORD n = 0;
  EXPECT_TRUE(GetOverlappedResult(h, &ov, &n, TRUE)) << GetLastError();
#ifdef _WIN32
  // Completed through the disk handle's kernel object: the bound port gets the packet.
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  ASSERT_TRUE(GetQueuedCompletionStatus(port, &n, &key, &got, 60000)) << GetLastError();
  EXPECT_EQ(key, 0xA77u);
  EXPECT_EQ(got, &ov);
#endif
  std::vector<unsigned char> back(512);
  EXPECT_EQ(ReadAt(h, 0, back.data(), 512), ERROR_SUCCESS) << "attached";
  CloseHandle(ov.hEvent);
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_TRUE(CloseHandle(port));
}

TEST(IoCompletionPort, ReceivesRawIoCompletions) {
  TempDir dir;
  HANDLE h = nullptr;
  ASSERT_EQ(CreateVhd(dir.Wide("p.vhd"), 4 << 20, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  HANDLE port = CreateIoCompletionPort(h, nullptr, 0x5eed, 0);
  ASSERT_NE(port, nullptr);
  const auto data = Pattern(4096, 5);
  OVERLAPPED ov{};
  ov.Offset = 8192;
  DWORD n = 0;
  if (!WriteFile(h, data.data(), 4096, &n, &ov)) {
    ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
  }
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  ASSERT_TRUE(GetQueuedCompletionStatus(port, &n, &key, &got, 10000));
  EXPECT_EQ(key, 0x5eedu);
  EXPECT_EQ(got, &ov);
  EXPECT_EQ(n, 4096u);
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_TRUE(CloseHandle(port));
}

}  // namespace
}  // namespace vdisk_test
