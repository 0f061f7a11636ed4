// MirrorVirtualDisk / GetVirtualDiskOperationProgress / BreakMirrorVirtualDisk through the C API,
// with the calls of Microsoft's MirrorVirtualDisk sample.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "api_test_support.h"
#include "support/wait.h"

namespace vdisk_test {
namespace {


// Reads the whole disk behind `path` through a fresh read-only handle.
std::vector<unsigned char> ReadAll(const WString& path) {
  HANDLE h = nullptr;
  EXPECT_EQ(OpenV2(path, true, &h), ERROR_SUCCESS);
  if (h == nullptr) return {};
  EXPECT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  std::vector<unsigned char> data(VirtualSize(h));
  for (std::size_t at = 0; at < data.size(); at += 1 << 20) {
    const auto n = static_cast<DWORD>(std::min<std::size_t>(1 << 20, data.size() - at));
    EXPECT_EQ(ReadAt(h, at, data.data() + at, n), ERROR_SUCCESS);
  }
  CloseHandle(h);
  return data;
}

// Writes `count` random extents into the disk behind `h` (attached) and into `reference`.
void WriteRandom(HANDLE h, std::vector<unsigned char>& reference, int count, std::uint32_t seed,
                 std::uint64_t limit = 0) {
  std::mt19937_64 rng(seed);
  const std::uint64_t size = limit ? limit : reference.size();
  for (int i = 0; i < count; ++i) {
    const std::uint64_t length = (1 + rng() % 128) * 512;
    const std::uint64_t offset = (rng() % ((size - length) / 512)) * 512;
    const auto data = Pattern(length, static_cast<std::uint32_t>(rng()));
    ASSERT_EQ(WriteAt(h, offset, data.data(), static_cast<DWORD>(length)), ERROR_SUCCESS);
    std::memcpy(reference.data() + offset, data.data(), length);
  }
}

struct SampleResult {
  DWORD mirror = 0;
  DWORD final_status = 0;
  bool saw_ready = false;
};

// The sample: open (UNKNOWN type and vendor, V2, ACCESS_NONE); mirror with an event OVERLAPPED;
// poll progress until CurrentValue == CompletionValue; break; poll until OperationStatus is
// ERROR_SUCCESS; CloseHandle.
SampleResult RunSample(const WString& source, const WString& target,
                       MIRROR_VIRTUAL_DISK_FLAG flags = MIRROR_VIRTUAL_DISK_FLAG_NONE) {
  SampleResult result;
  VIRTUAL_STORAGE_TYPE type{};  // DEVICE_UNKNOWN, VENDOR_UNKNOWN
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  HANDLE vhd = nullptr;
  EXPECT_EQ(OpenVirtualDisk(&type, source.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &vhd),
            ERROR_SUCCESS);
  MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
  mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  mirror.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  result.mirror = MirrorVirtualDisk(vhd, flags, &mirror, &ov);
  if (result.mirror == ERROR_IO_PENDING) {
    // Readiness is announced only through the progress (CurrentValue reaching CompletionValue),
    // which the sample polls; the end of the operation signals the OVERLAPPED's event.
    VIRTUAL_DISK_PROGRESS progress{};
    vdisk_testing::WaitUntil([&] {
      EXPECT_EQ(GetVirtualDiskOperationProgress(vhd, &ov, &progress), ERROR_SUCCESS);
      return progress.OperationStatus != ERROR_IO_PENDING ||
             progress.CurrentValue == progress.CompletionValue;
    });
    result.saw_ready = progress.OperationStatus == ERROR_IO_PENDING &&
                       progress.CurrentValue == progress.CompletionValue;
    EXPECT_TRUE(result.saw_ready) << "status " << progress.OperationStatus;
    EXPECT_EQ(BreakMirrorVirtualDisk(vhd), ERROR_SUCCESS);
    EXPECT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0);
    EXPECT_EQ(GetVirtualDiskOperationProgress(vhd, &ov, &progress), ERROR_SUCCESS);
    result.final_status = progress.OperationStatus;
    DWORD bytes = 0;
    EXPECT_TRUE(GetOverlappedResult(vhd, &ov, &bytes, FALSE));
  }
  CloseHandle(ov.hEvent);
  EXPECT_TRUE(CloseHandle(vhd));
  return result;
}

class MirrorTest : public ::testing::Test {
 protected:
  // A source disk of `size` with random data written through the API; returns its content.
  std::vector<unsigned char> MakeSource(const std::string& name, ULONGLONG size, bool fixed,
                                        int writes, std::uint32_t seed,
                                        ULONG device = VIRTUAL_STORAGE_TYPE_DEVICE_VHD) {
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVhd(dir_.Wide(name), size, fixed, &h, 0, WString(), device), ERROR_SUCCESS);
    EXPECT_EQ(AttachRaw(h), ERROR_SUCCESS);
    std::vector<unsigned char> reference(size);
    WriteRandom(h, reference, writes, seed);
    EXPECT_TRUE(CloseHandle(h));
    return reference;
  }
  TempDir dir_;
};

TEST_F(MirrorTest, SampleSequenceMirrorsADynamicVhd) {
  const auto reference = MakeSource("src.vhd", 48 << 20, false, 60, 1);
  const auto r = RunSample(dir_.Wide("src.vhd"), dir_.Wide("dst.vhd"));
  EXPECT_EQ(r.mirror, static_cast<DWORD>(ERROR_IO_PENDING));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
  EXPECT_EQ(ReadAll(dir_.Wide("src.vhd")), reference);
  // Unallocated stays unallocated: the target is no bigger than the source.
  EXPECT_LE(FileSize(dir_ / "dst.vhd"), FileSize(dir_ / "src.vhd"));
}

TEST_F(MirrorTest, SampleSequenceMirrorsAFixedVhd) {
  const auto reference = MakeSource("src.vhd", 16 << 20, true, 30, 2);
  const auto r = RunSample(dir_.Wide("src.vhd"), dir_.Wide("dst.vhd"));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("dst.vhd"), true, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE;
  ULONG size = sizeof info;
  ASSERT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 2u);
  CloseHandle(h);
}

TEST_F(MirrorTest, SampleSequenceMirrorsADifferencingVhdOntoTheSameParent) {
  auto reference = MakeSource("base.vhd", 16 << 20, false, 20, 3);
  HANDLE child = nullptr;
  ASSERT_EQ(CreateVhd(dir_.Wide("child.vhd"), 0, false, &child, 0, dir_.Wide("base.vhd")),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(child), ERROR_SUCCESS);
  WriteRandom(child, reference, 20, 4);
  ASSERT_TRUE(CloseHandle(child));
  const auto r = RunSample(dir_.Wide("child.vhd"), dir_.Wide("mirror.vhd"));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("mirror.vhd")), reference);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("mirror.vhd"), true, &h), ERROR_SUCCESS);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE;
  ULONG size = sizeof info;
  ASSERT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS);
  EXPECT_EQ(info.ProviderSubtype, 4u) << "the mirror of a differencing disk is differencing";
  CloseHandle(h);
  // The child's mirror holds only the child's data, not the parent's.
  EXPECT_LT(FileSize(dir_ / "mirror.vhd"), FileSize(dir_ / "base.vhd") + (4 << 20));
}

TEST_F(MirrorTest, SampleSequenceMirrorsDynamicFixedAndDifferencingVhdx) {
  const ULONG vhdx = VIRTUAL_STORAGE_TYPE_DEVICE_VHDX;
  const auto dynamic = MakeSource("dyn.vhdx", 96 << 20, false, 60, 21, vhdx);
  auto r = RunSample(dir_.Wide("dyn.vhdx"), dir_.Wide("dyn-mirror.vhdx"));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("dyn-mirror.vhdx")), dynamic);

  const auto fixed = MakeSource("fixed.vhdx", 32 << 20, true, 30, 22, vhdx);
  r = RunSample(dir_.Wide("fixed.vhdx"), dir_.Wide("fixed-mirror.vhdx"));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("fixed-mirror.vhdx")), fixed);

  auto reference = dynamic;
  HANDLE child = nullptr;
  ASSERT_EQ(CreateVhd(dir_.Wide("child.vhdx"), 0, false, &child, 0, dir_.Wide("dyn-mirror.vhdx"),
                      vhdx),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(child), ERROR_SUCCESS);
  WriteRandom(child, reference, 30, 23);
  ASSERT_TRUE(CloseHandle(child));
  r = RunSample(dir_.Wide("child.vhdx"), dir_.Wide("child-mirror.vhdx"));
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("child-mirror.vhdx")), reference);
}

TEST_F(MirrorTest, BreakMakesTheMirrorTheHandlesActiveDisk) {
  auto reference = MakeSource("src.vhd", 16 << 20, false, 20, 5);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const WString target = dir_.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  VIRTUAL_DISK_PROGRESS progress{};
  do {
    ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_SUCCESS);
    ASSERT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  } while (progress.CurrentValue != progress.CompletionValue);
  // A write once ready reaches both sides.
  WriteRandom(h, reference, 10, 6);
  ASSERT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS);
  DWORD bytes = 0;
  ASSERT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  const auto source_at_switch = ReadAll(dir_.Wide("src.vhd"));
  EXPECT_EQ(source_at_switch, reference);
  // After the break, writes through the same handle go to the mirror only.
  auto after = reference;
  WriteRandom(h, after, 10, 7);
  ASSERT_TRUE(FlushFileBuffers(h));
  std::vector<unsigned char> back(after.size());
  for (std::size_t at = 0; at < back.size(); at += 1 << 20)
    ASSERT_EQ(ReadAt(h, at, back.data() + at, 1 << 20), ERROR_SUCCESS);
  EXPECT_EQ(back, after);
  CloseHandle(ov.hEvent);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), after);
  EXPECT_EQ(ReadAll(dir_.Wide("src.vhd")), source_at_switch) << "the source stays as of the switch";
}

TEST_F(MirrorTest, WritersOnFourThreadsDuringAndAfterTheCopy) {
  const ULONGLONG size = 64 << 20;
  auto reference = MakeSource("src.vhd", size, false, 200, 8);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const WString target = dir_.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_IO_PENDING);
  // Each writer owns a quarter of the disk, so the reference stays exact.
  std::atomic<bool> ready{false};
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      const std::uint64_t quarter = size / 4;
      int after_ready = 0;
      for (int i = 0; i < 400 && after_ready < 50; ++i) {
        if (ready.load()) ++after_ready;
        const std::uint64_t length = (1 + rng() % 64) * 512;
        const std::uint64_t offset = t * quarter + (rng() % ((quarter - length) / 512)) * 512;
        const auto data = Pattern(length, static_cast<std::uint32_t>(rng()));
        if (WriteAt(h, offset, data.data(), static_cast<DWORD>(length)) != ERROR_SUCCESS) ++failures;
        std::memcpy(reference.data() + offset, data.data(), length);
      }
    });
  }
  VIRTUAL_DISK_PROGRESS progress{};
  DWORD query = ERROR_SUCCESS;
  vdisk_testing::WaitUntil([&] {
    query = GetVirtualDiskOperationProgress(h, &ov, &progress);
    return query != ERROR_SUCCESS || progress.OperationStatus != ERROR_IO_PENDING ||
           progress.CurrentValue == progress.CompletionValue;
  });
  ready = true;
  EXPECT_EQ(query, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_SUCCESS);
  ASSERT_EQ(progress.CurrentValue, progress.CompletionValue) << "ready stays ready";
  ASSERT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS);
  DWORD bytes = 0;
  ASSERT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE));
  CloseHandle(ov.hEvent);
  ASSERT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
}

class MirrorCancelTest : public MirrorTest {
 protected:
  void Start(const std::string& source_name, ULONGLONG size) {
    reference_ = MakeSource(source_name, size, false, 400, 9);
    ASSERT_EQ(OpenV2(dir_.Wide(source_name), false, &h_), ERROR_SUCCESS);
    target_ = dir_.Wide("dst.vhd");
    MIRROR_VIRTUAL_DISK_PARAMETERS p{};
    p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
    p.Version1.MirrorVirtualDiskPath = target_.c_str();
    ov_.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    ASSERT_EQ(MirrorVirtualDisk(h_, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov_), ERROR_IO_PENDING);
  }
  void WaitReady() {
    VIRTUAL_DISK_PROGRESS progress{};
    DWORD query = ERROR_SUCCESS;
    ASSERT_TRUE(vdisk_testing::WaitUntil([&] {
      query = GetVirtualDiskOperationProgress(h_, &ov_, &progress);
      return query != ERROR_SUCCESS || progress.CurrentValue == progress.CompletionValue;
    }));
    ASSERT_EQ(query, static_cast<DWORD>(ERROR_SUCCESS));
  }
  void ExpectAborted() {
    EXPECT_EQ(WaitForSingleObject(ov_.hEvent, 10000), WAIT_OBJECT_0);
    DWORD bytes = 0;
    EXPECT_FALSE(GetOverlappedResult(h_, &ov_, &bytes, TRUE));
    EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
    VIRTUAL_DISK_PROGRESS progress{};
    ASSERT_EQ(GetVirtualDiskOperationProgress(h_, &ov_, &progress), ERROR_SUCCESS);
    EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_OPERATION_ABORTED));
    EXPECT_NE(BreakMirrorVirtualDisk(h_), static_cast<DWORD>(ERROR_SUCCESS));
  }
  void ExpectSourceActiveAndExact() {
    ASSERT_EQ(AttachRaw(h_), ERROR_SUCCESS);
    std::vector<unsigned char> back(reference_.size());
    for (std::size_t at = 0; at < back.size(); at += 1 << 20)
      ASSERT_EQ(ReadAt(h_, at, back.data() + at, 1 << 20), ERROR_SUCCESS);
    EXPECT_EQ(back, reference_);
    EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd")) << "the created target is removed";
  }
  void TearDown() override {
    if (ov_.hEvent) CloseHandle(ov_.hEvent);
    if (h_) CloseHandle(h_);
  }
  std::vector<unsigned char> reference_;
  WString target_;
  HANDLE h_ = nullptr;
  OVERLAPPED ov_{};
};

TEST_F(MirrorCancelTest, CancelIoExBeforeReadyKeepsTheSource) {
  Start("src.vhd", 256 << 20);
  ASSERT_TRUE(CancelIoEx(h_, &ov_));
  ExpectAborted();
  ExpectSourceActiveAndExact();
}

TEST_F(MirrorCancelTest, CancelIoExFromAnotherThreadKeepsTheSource) {
  Start("src.vhd", 256 << 20);
  BOOL cancelled = FALSE;
  DWORD error = 0;
  std::thread([&] {
    cancelled = CancelIoEx(h_, &ov_);
    error = GetLastError();
  }).join();
  ASSERT_TRUE(cancelled) << "error " << error;
  ExpectAborted();
  ExpectSourceActiveAndExact();
}

TEST_F(MirrorCancelTest, CancelIoFromAnotherThreadLeavesTheMirrorRunning) {
#ifndef _WIN32
  GTEST_SKIP() << "the Linux kernel32 subset's CancelIo cancels the requests of every thread "
                  "(Windows: only those the calling thread issued)";
#endif
  Start("src.vhd", 16 << 20);
  std::thread([&] { CancelIo(h_); }).join();
  VIRTUAL_DISK_PROGRESS progress{};
  ASSERT_EQ(GetVirtualDiskOperationProgress(h_, &ov_, &progress), ERROR_SUCCESS);
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  EXPECT_FALSE(HasOverlappedIoCompleted(&ov_));
  WaitReady();
  ASSERT_EQ(BreakMirrorVirtualDisk(h_), ERROR_SUCCESS);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(h_, &ov_, &bytes, TRUE)) << GetLastError();
}

TEST_F(MirrorCancelTest, CancelIoAfterReadyKeepsTheSource) {
  Start("src.vhd", 16 << 20);
  WaitReady();
  ASSERT_TRUE(CancelIo(h_));
  ExpectAborted();
  ExpectSourceActiveAndExact();
}

TEST_F(MirrorCancelTest, CloseHandleDuringTheCopyCancelsIt) {
  Start("src.vhd", 256 << 20);
  ASSERT_TRUE(CloseHandle(h_));
  h_ = nullptr;
  EXPECT_EQ(WaitForSingleObject(ov_.hEvent, 10000), WAIT_OBJECT_0);
  EXPECT_EQ(static_cast<DWORD>(ov_.Internal), 0xC0000120u) << "STATUS_CANCELLED in Internal";
  EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd"));
  EXPECT_EQ(ReadAll(dir_.Wide("src.vhd")), reference_);
}

TEST_F(MirrorCancelTest, BreakBeforeReadyChangesNothing) {
  Start("src.vhd", 256 << 20);
  VIRTUAL_DISK_PROGRESS progress{};
  ASSERT_EQ(GetVirtualDiskOperationProgress(h_, &ov_, &progress), ERROR_SUCCESS);
  const DWORD result = BreakMirrorVirtualDisk(h_);
  if (progress.CurrentValue == progress.CompletionValue && result == ERROR_SUCCESS) {
    GTEST_SKIP() << "the copy finished before the break could be tried";
  }
  EXPECT_EQ(result, ERROR_VHD_INVALID_STATE);
  ASSERT_EQ(GetVirtualDiskOperationProgress(h_, &ov_, &progress), ERROR_SUCCESS);
  EXPECT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING)) << "still mirroring";
  ASSERT_TRUE(CancelIoEx(h_, &ov_));
  ExpectAborted();
}

// Starts a mirror of `source` on `h` into `target` with `ov`; waits until it is ready.
void StartAndWaitReady(HANDLE h, const WString& target, OVERLAPPED* ov) {
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  ASSERT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, ov), ERROR_IO_PENDING);
  VIRTUAL_DISK_PROGRESS progress{};
  do {
    ASSERT_EQ(GetVirtualDiskOperationProgress(h, ov, &progress), ERROR_SUCCESS);
    ASSERT_EQ(progress.OperationStatus, static_cast<DWORD>(ERROR_IO_PENDING));
  } while (progress.CurrentValue != progress.CompletionValue);
}

TEST_F(MirrorTest, CompletionPortReceivesThePacketAfterBreak) {
  const auto reference = MakeSource("src.vhd", 16 << 20, false, 20, 17);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  HANDLE port = CreateIoCompletionPort(h, nullptr, 0xD15C, 0);
  ASSERT_NE(port, nullptr);
  OVERLAPPED ov{};  // no event: the port is how this caller learns of the completion
  StartAndWaitReady(h, dir_.Wide("dst.vhd"), &ov);
  DWORD bytes = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  EXPECT_FALSE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0)) << "no packet while ready";
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(WAIT_TIMEOUT));
  ASSERT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS);
  ASSERT_TRUE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 60000)) << GetLastError();
  EXPECT_EQ(key, 0xD15Cu);
  EXPECT_EQ(got, &ov);
  EXPECT_TRUE(HasOverlappedIoCompleted(&ov));
  EXPECT_EQ(static_cast<DWORD>(ov.Internal), 0u);
  EXPECT_FALSE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 0)) << "exactly one packet";
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_TRUE(CloseHandle(port));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
}

TEST_F(MirrorTest, CompletionPortReceivesTheCancellation) {
  MakeSource("src.vhd", 16 << 20, false, 20, 18);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  HANDLE port = CreateIoCompletionPort(h, nullptr, 7, 0);
  ASSERT_NE(port, nullptr);
  OVERLAPPED ov{};
  StartAndWaitReady(h, dir_.Wide("dst.vhd"), &ov);
  ASSERT_TRUE(CancelIoEx(h, &ov));
  DWORD bytes = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED got = nullptr;
  EXPECT_FALSE(GetQueuedCompletionStatus(port, &bytes, &key, &got, 60000));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
  EXPECT_EQ(key, 7u);
  EXPECT_EQ(got, &ov);
  EXPECT_FALSE(CancelIoEx(h, &ov)) << "nothing left to cancel";
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_NOT_FOUND));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd"));
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_TRUE(CloseHandle(port));
}

TEST_F(MirrorTest, WithoutAnEventGetOverlappedResultWaitsOnTheHandle) {
  const auto reference = MakeSource("src.vhd", 16 << 20, false, 20, 19);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  OVERLAPPED ov{};
  StartAndWaitReady(h, dir_.Wide("dst.vhd"), &ov);
  DWORD bytes = 77;
  EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, FALSE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_INCOMPLETE));
  std::thread breaker([h] { EXPECT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS); });
  EXPECT_TRUE(GetOverlappedResult(h, &ov, &bytes, TRUE)) << GetLastError();
  EXPECT_EQ(bytes, 0u);
  breaker.join();
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
}

TEST_F(MirrorTest, ASecondMirrorOnTheHandleCompletesOnItsOwn) {
  // Each operation's completion reaches its own OVERLAPPED, never a later one's.
  const auto reference = MakeSource("src.vhd", 16 << 20, false, 20, 20);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  OVERLAPPED first{};
  first.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  StartAndWaitReady(h, dir_.Wide("one.vhd"), &first);
  ASSERT_TRUE(CancelIoEx(h, &first));
  EXPECT_EQ(WaitForSingleObject(first.hEvent, 60000), WAIT_OBJECT_0);
  OVERLAPPED second{};
  second.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  StartAndWaitReady(h, dir_.Wide("two.vhd"), &second);
  EXPECT_EQ(WaitForSingleObject(second.hEvent, 0), static_cast<DWORD>(WAIT_TIMEOUT));
  ASSERT_EQ(BreakMirrorVirtualDisk(h), ERROR_SUCCESS);
  DWORD bytes = 0;
  EXPECT_TRUE(GetOverlappedResult(h, &second, &bytes, TRUE)) << GetLastError();
  EXPECT_FALSE(GetOverlappedResult(h, &first, &bytes, FALSE));
  EXPECT_EQ(GetLastError(), static_cast<DWORD>(ERROR_OPERATION_ABORTED));
  CloseHandle(first.hEvent);
  CloseHandle(second.hEvent);
  EXPECT_TRUE(CloseHandle(h));
  EXPECT_EQ(ReadAll(dir_.Wide("two.vhd")), reference);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "one.vhd"));
}

TEST_F(MirrorTest, ValidatesItsArguments) {
  MakeSource("src.vhd", 4 << 20, false, 1, 10);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  const WString target = dir_.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, nullptr),
            ERROR_INVALID_PARAMETER)
      << "the OVERLAPPED is required";
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, nullptr, &ov),
            ERROR_INVALID_PARAMETER);
  auto bad = p;
  bad.Version = static_cast<MIRROR_VIRTUAL_DISK_VERSION>(2);
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &bad, &ov),
            ERROR_INVALID_PARAMETER);
  EXPECT_EQ(MirrorVirtualDisk(h, static_cast<MIRROR_VIRTUAL_DISK_FLAG>(0x100), &p, &ov),
            ERROR_INVALID_PARAMETER);
  EXPECT_EQ(BreakMirrorVirtualDisk(h), ERROR_VHD_INVALID_STATE) << "no mirror";
  VIRTUAL_DISK_PROGRESS progress{};
  EXPECT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_INVALID_PARAMETER);
  // An existing file without EXISTING_FILE, and a missing one with it.
  MakeSource("exists.vhd", 4 << 20, false, 1, 11);
  const WString exists = dir_.Wide("exists.vhd");
  p.Version1.MirrorVirtualDiskPath = exists.c_str();
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_FILE_EXISTS);
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE, &p, &ov),
            ERROR_FILE_NOT_FOUND);
  EXPECT_TRUE(CloseHandle(h));
  // Read-only handles cannot mirror.
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), true, &h), ERROR_SUCCESS);
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov), ERROR_ACCESS_DENIED);
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(MirrorTest, ExistingFileOfTheSameSizeIsOverwritten) {
  const auto reference = MakeSource("src.vhd", 16 << 20, false, 40, 12);
  MakeSource("dst.vhd", 16 << 20, false, 40, 13);  // different data in the target
  const auto r = RunSample(dir_.Wide("src.vhd"), dir_.Wide("dst.vhd"),
                           MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE);
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("dst.vhd")), reference);
}

TEST_F(MirrorTest, ExistingFileOfAnotherSizeIsRefused) {
  MakeSource("src.vhd", 16 << 20, false, 4, 14);
  MakeSource("dst.vhd", 8 << 20, false, 4, 15);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("src.vhd"), false, &h), ERROR_SUCCESS);
  const WString target = dir_.Wide("dst.vhd");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  EXPECT_EQ(MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE, &p, &ov),
            ERROR_INVALID_PARAMETER);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "dst.vhd")) << "an existing target is never removed";
  EXPECT_TRUE(CloseHandle(h));
}

TEST_F(MirrorTest, SkipMirrorActivationLeavesTheSourceActive) {
  auto reference = MakeSource("src.vhd", 16 << 20, false, 20, 16);
  const auto r = RunSample(dir_.Wide("src.vhd"), dir_.Wide("copy.vhd"),
                           MIRROR_VIRTUAL_DISK_FLAG_SKIP_MIRROR_ACTIVATION);
  EXPECT_EQ(r.final_status, static_cast<DWORD>(ERROR_SUCCESS));
  EXPECT_EQ(ReadAll(dir_.Wide("copy.vhd")), reference);
  EXPECT_EQ(ReadAll(dir_.Wide("src.vhd")), reference);
}

TEST_F(MirrorTest, IsoCannotBeMirrored) {
  // A minimal ISO: primary descriptor at sector 16 and a terminator, 18 sectors.
  std::vector<unsigned char> iso(18 * 2048);
  unsigned char* pvd = iso.data() + 16 * 2048;
  pvd[0] = 1;
  std::memcpy(pvd + 1, "CD001", 5);
  pvd[6] = 1;
  const std::uint32_t sectors = 18;
  for (int i = 0; i < 4; ++i) {
    pvd[80 + i] = static_cast<unsigned char>(sectors >> (8 * i));
    pvd[87 - i] = static_cast<unsigned char>(sectors >> (8 * i));
  }
  pvd[128] = 0x00; pvd[129] = 0x08; pvd[130] = 0x08; pvd[131] = 0x00;  // 2048 both-endian
  unsigned char* end = iso.data() + 17 * 2048;
  end[0] = 255;
  std::memcpy(end + 1, "CD001", 5);
  end[6] = 1;
  {
    std::FILE* f = std::fopen((dir_ / "x.iso").string().c_str(), "wb");
    std::fwrite(iso.data(), 1, iso.size(), f);
    std::fclose(f);
  }
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(dir_.Wide("x.iso"), true, &h), ERROR_SUCCESS);
  const WString target = dir_.Wide("y.iso");
  MIRROR_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  p.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  const DWORD e = MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &p, &ov);
  EXPECT_TRUE(e == ERROR_ACCESS_DENIED || e == ERROR_NOT_SUPPORTED) << e;
  EXPECT_TRUE(CloseHandle(h));
}

}  // namespace
}  // namespace vdisk_test
