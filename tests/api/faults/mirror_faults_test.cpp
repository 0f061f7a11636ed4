// The mirror's failures as a Win32 caller sees them: through the caller's OVERLAPPED, its event
// and GetVirtualDiskOperationProgress. This binary links the library's sources statically
// (tests/api/CMakeLists.txt) so that it can make the target's file fail: a full disk (ENOSPC)
// or a failing device (EIO) from target write k on (src/platform/fault_file.h); on Windows the
// same failures with their Win32 codes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../api_test_support.h"
#include "platform/fault_file.h"

namespace vdisk_test {
namespace {

namespace platform = vdisk::platform;

constexpr ULONGLONG kSize = 64ull << 20;

struct Written {
  std::uint64_t offset;
  std::vector<unsigned char> bytes;
};

// A dynamic VHD with data in several blocks; returns what was written where.
std::vector<Written> MakeSource(const WString& path) {
  HANDLE h = nullptr;
  EXPECT_EQ(CreateVhd(path, kSize, false, &h), ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(h), ERROR_SUCCESS);
  std::vector<Written> written;
  for (std::uint32_t i = 0; i < 12; ++i) {
    Written w{std::uint64_t{i} * (5u << 20) + 4096u * i, Pattern(1u << 20, 500 + i)};
    EXPECT_EQ(WriteAt(h, w.offset, w.bytes.data(), static_cast<DWORD>(w.bytes.size())),
              ERROR_SUCCESS);
    written.push_back(std::move(w));
  }
  EXPECT_TRUE(CloseHandle(h));
  return written;
}

void ExpectHolds(const WString& path, const std::vector<Written>& written) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, true, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  for (const Written& w : written) {
    std::vector<unsigned char> back(w.bytes.size());
    ASSERT_EQ(ReadAt(h, w.offset, back.data(), static_cast<DWORD>(back.size())), ERROR_SUCCESS);
    EXPECT_TRUE(back == w.bytes) << "source bytes at " << w.offset;
  }
  EXPECT_TRUE(CloseHandle(h));
}

struct Fault {
  const char* name;
  int os_error;
  vdisk::Code code;
  DWORD expected;
};

class MirrorFaults : public ::testing::TestWithParam<Fault> {};

TEST_P(MirrorFaults, TargetFailureAtChunkKCompletesTheOverlappedWithItsError) {
  const Fault fault = GetParam();
  TempDir dir;
  const WString source = dir.Wide("src.vhd");
  const std::vector<Written> written = MakeSource(source);
  const WString target = dir.Wide("dst.vhd");
  int failed_in_flight = 0;
  for (const std::uint64_t k : {1, 2, 4, 8, 16, 32}) {
    SCOPED_TRACE("target writes fail from number " + std::to_string(k));
    platform::FaultPlan plan;
    plan.fail_write_from = k;
    plan.write_error = fault.code;
    plan.write_os_error = fault.os_error;
    platform::ScopedFaultInjection faults("dst.vhd", plan);

    HANDLE h = nullptr;
    ASSERT_EQ(OpenV2(source, false, &h), ERROR_SUCCESS);
    MIRROR_VIRTUAL_DISK_PARAMETERS params{};
    params.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
    params.Version1.MirrorVirtualDiskPath = target.c_str();
    OVERLAPPED ov{};
    ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    const DWORD started = MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &params, &ov);
    if (started == ERROR_IO_PENDING) {
      ++failed_in_flight;
      ASSERT_EQ(WaitForSingleObject(ov.hEvent, 60000), WAIT_OBJECT_0) << "the mirror never ended";
      DWORD bytes = 0;
      EXPECT_FALSE(GetOverlappedResult(h, &ov, &bytes, FALSE));
      EXPECT_EQ(GetLastError(), fault.expected);
      VIRTUAL_DISK_PROGRESS progress{};
      ASSERT_EQ(GetVirtualDiskOperationProgress(h, &ov, &progress), ERROR_SUCCESS);
      EXPECT_EQ(progress.OperationStatus, fault.expected);
      EXPECT_NE(BreakMirrorVirtualDisk(h), static_cast<DWORD>(ERROR_SUCCESS));
    } else {
      // Creating the target hit the fault: the call itself fails with the error.
      EXPECT_EQ(started, fault.expected);
    }
    CloseHandle(ov.hEvent);
    EXPECT_TRUE(CloseHandle(h));
    EXPECT_FALSE(std::filesystem::exists(dir / "dst.vhd")) << "the created target is removed";
    ExpectHolds(source, written);
  }
  EXPECT_GT(failed_in_flight, 2) << "most faults should hit the copy, not the creation";
}

INSTANTIATE_TEST_SUITE_P(
    Errors, MirrorFaults,
#ifdef _WIN32
    ::testing::Values(Fault{"DiskFull", ERROR_DISK_FULL, vdisk::Code::kDiskFull, ERROR_DISK_FULL},
                      Fault{"IoDevice", ERROR_IO_DEVICE, vdisk::Code::kIoError, ERROR_IO_DEVICE}),
#else
    ::testing::Values(Fault{"ENOSPC", 28, vdisk::Code::kDiskFull, ERROR_DISK_FULL},
                      Fault{"EIO", 5, vdisk::Code::kIoError, ERROR_IO_DEVICE}),
#endif
    [](const ::testing::TestParamInfo<Fault>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vdisk_test
