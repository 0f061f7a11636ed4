// MirrorJob failure paths with injected faults: a full or failing target, a failing source; the
// two ways data moves (copy_file_range, the buffer pool on the I/O queue) and the zeros a
// differencing mirror must keep. The happy paths and the Windows call sequences are in
// tests/api/mirror_api_test.cpp. ctest runs this suite once more with the kernel copy off and
// once with VIRTDISK_IO_BACKEND=threads (tests/CMakeLists.txt).
#include "mirror/mirror_job.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string_view>

#include "core/open_disk.h"
#include "formats/registry/registry.h"
#include "platform/fault_file.h"
#include "support/wait.h"

namespace vdisk {
namespace {

class MirrorJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("mirror_job_test_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    DiskCreateRequest request;
    request.path = dir_ / "src.vhd";
    request.options.virtual_size = 32 << 20;
    auto disk = VirtualDisk::Create(BuiltinProviders(), request);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    reference_.assign(32 << 20, std::byte{0});
    std::mt19937 rng(42);
    // Data in 10 of the 16 blocks.
    for (int block = 0; block < 16; ++block) {
      if (block % 3 == 1) continue;
      std::vector<std::byte> data(256 << 10);
      for (auto& b : data) b = static_cast<std::byte>(rng());
      const std::uint64_t offset = static_cast<std::uint64_t>(block) * (2 << 20) + (64 << 10);
      ASSERT_TRUE((*disk)->Write(offset, data).ok());
      std::memcpy(reference_.data() + offset, data.data(), data.size());
    }
    ASSERT_TRUE((*disk)->Flush().ok());
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::shared_ptr<OpenDisk> OpenSource() {
    DiskOpenRequest request;
    request.path = dir_ / "src.vhd";
    request.options.read_only = false;
    auto open = OpenDisk::Open(BuiltinProviders(), request);
    EXPECT_TRUE(open.ok()) << open.status().message();
    return open.ok() ? *open : nullptr;
  }

  // Starts a mirror, waits for it to end or be ready, and returns the job and its end status.
  struct Outcome {
    std::shared_ptr<MirrorJob> job;
    Status finished;
    bool called = false;
  };
  std::shared_ptr<Outcome> Mirror(const std::shared_ptr<OpenDisk>& disk,
                                  MirrorOptions options = {}) {
    auto outcome = std::make_shared<Outcome>();
    if (options.target_path.empty()) options.target_path = dir_ / "dst.vhd";
    // A raw pointer: the job holds this callback, and the outcome holds the job.
    options.on_finished = [o = outcome.get(), this](const Status& s) {
      std::lock_guard lock(mutex_);
      o->finished = s;
      o->called = true;
      cv_.notify_all();
    };
    auto job = MirrorJob::Start(BuiltinProviders(), disk, options);
    EXPECT_TRUE(job.ok()) << job.status().message();
    if (job.ok()) outcome->job = *job;
    return outcome;
  }
  void WaitEnd(Outcome& outcome) {
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return outcome.called; }));
  }
  // Waits for the copy to end (ready, or failed); the engine announces readiness only through
  // its progress, which the test polls (as a client of GetVirtualDiskOperationProgress does).
  static void WaitCopied(Outcome& outcome) {
    vdisk_testing::WaitUntil(
        [&] { return outcome.job->Progress().state != MirrorProgress::State::kCopying; });
  }
  void WaitReady(Outcome& outcome) {
    WaitCopied(outcome);
    ASSERT_EQ(outcome.job->Progress().state, MirrorProgress::State::kReady);
  }
  // Reads the whole disk of the image at `path` through a fresh read-only open.
  static std::vector<std::byte> ReadImage(const std::filesystem::path& path) {
    DiskOpenRequest request;
    request.path = path;
    auto disk = VirtualDisk::Open(BuiltinProviders(), request);
    EXPECT_TRUE(disk.ok()) << disk.status().message();
    if (!disk.ok()) return {};
    std::vector<std::byte> out((*disk)->size());
    EXPECT_TRUE((*disk)->Read(0, out).ok());
    return out;
  }
  static std::uint64_t AllocatedBytes(const std::filesystem::path& path) {
    auto file = platform::OpenOsFile(path, platform::FileAccess::kRead,
                                     platform::FileDisposition::kOpenExisting);
    EXPECT_TRUE(file.ok());
    if (!file.ok()) return 0;
    auto bytes = (*file)->AllocatedBytes();
    return bytes.ok() ? bytes.value() : 0;
  }
  // Mirrors the source to `options.target_path` (dst.vhd if empty), breaks, and returns how
  // the copy moved its data.
  MirrorCopyStats MirrorAndBreak(MirrorOptions options = {}) {
    auto disk = OpenSource();
    auto outcome = Mirror(disk, std::move(options));
    EXPECT_TRUE(outcome->job);
    if (!outcome->job) return {};
    WaitReady(*outcome);
    const MirrorCopyStats stats = outcome->job->CopyStats();
    EXPECT_TRUE(outcome->job->Break().ok());
    WaitEnd(*outcome);
    EXPECT_TRUE(outcome->finished.ok()) << outcome->finished.message();
    return stats;
  }
  static bool KernelCopyTurnedOffByEnvironment() {
    const char* value = std::getenv("VIRTDISK_COPY_FILE_RANGE");
    return value != nullptr && std::string_view(value) == "0";
  }

  void ExpectSourceIntact(OpenDisk& disk) {
    std::vector<std::byte> back(reference_.size());
    ASSERT_TRUE(disk.Read(0, back).ok());
    EXPECT_TRUE(back == reference_);
  }

  std::filesystem::path dir_;
  std::vector<std::byte> reference_;
  std::mutex mutex_;
  std::condition_variable cv_;
};

TEST_F(MirrorJobTest, FullTargetAtEveryChunkEndsWithDiskFullAndRemovesTheTarget) {
  // Target writes: creation takes a few, then each chunk a few more; try a spread of them.
  for (std::uint64_t k : {1, 2, 3, 4, 5, 8, 12, 20, 30}) {
    SCOPED_TRACE("failing from target write " + std::to_string(k));
    platform::FaultPlan plan;
    plan.fail_write_from = k;
    platform::ScopedFaultInjection faults("dst.vhd", plan);
    auto disk = OpenSource();
    MirrorOptions options;
    options.target_path = dir_ / "dst.vhd";
    Status end;
    bool called = false;
    options.on_finished = [&](const Status& s) {
      std::lock_guard lock(mutex_);
      end = s;
      called = true;
      cv_.notify_all();
    };
    auto job = MirrorJob::Start(BuiltinProviders(), disk, options);
    if (!job.ok()) {
      // Creating the target itself hit the fault: reported at once, nothing left behind.
      EXPECT_EQ(job.status().code(), Code::kDiskFull) << job.status().message();
    } else {
      std::unique_lock lock(mutex_);
      ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return called; }));
      EXPECT_EQ(end.code(), Code::kDiskFull) << end.message();
      EXPECT_EQ((*job)->Progress().state, MirrorProgress::State::kFailed);
      EXPECT_FALSE((*job)->Break().ok());
    }
    EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd"));
    ExpectSourceIntact(*disk);
  }
}

TEST_F(MirrorJobTest, FailingSourceReadEndsWithItsError) {
  auto disk = OpenSource();
  // Reopen the source through a faulty file whose data reads fail with EIO.
  disk.reset();
  platform::FaultPlan plan;
  plan.fail_reads_of_at_least = (64 << 10) + 1;  // above the 64 KiB format probe
  {
    platform::ScopedFaultInjection faults("src.vhd", plan);
    disk = OpenSource();
  }
  auto outcome = Mirror(disk);
  ASSERT_TRUE(outcome->job);
  WaitEnd(*outcome);
  EXPECT_EQ(outcome->finished.code(), Code::kIoError) << outcome->finished.message();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd"));
  // Read back through a fresh, fault-free open.
  outcome.reset();
  disk.reset();
  ExpectSourceIntact(*OpenSource());
}

TEST_F(MirrorJobTest, TargetFailureWhenReadyFailsTheMirrorButNotTheWrite) {
  auto disk = OpenSource();
  // Enough writes for the creation and the copy, then the target fills up.
  platform::FaultPlan plan;
  plan.fail_write_from = 200;
  platform::ScopedFaultInjection faults("dst.vhd", plan);
  auto outcome = Mirror(disk);
  ASSERT_TRUE(outcome->job);
  WaitReady(*outcome);
  std::vector<std::byte> data(4096, std::byte{0x5A});
  Status last;
  for (int i = 0; i < 400 && !outcome->called; ++i) {
    const std::uint64_t offset = static_cast<std::uint64_t>(i % 16) * (2 << 20);
    last = disk->Write(offset, data);
    EXPECT_TRUE(last.ok()) << "the guest's write reached the source: " << last.message();
    std::memcpy(reference_.data() + offset, data.data(), data.size());
  }
  WaitEnd(*outcome);
  EXPECT_EQ(outcome->finished.code(), Code::kDiskFull);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "dst.vhd"));
  ExpectSourceIntact(*disk);
}

TEST_F(MirrorJobTest, ZerosWrittenOverACopiedChunkReachTheTarget) {
  auto disk = OpenSource();
  platform::FaultPlan plan;
  plan.write_delay = std::chrono::milliseconds(15);  // a slow target keeps the copy going
  platform::ScopedFaultInjection faults("dst.vhd", plan);
  auto outcome = Mirror(disk);
  ASSERT_TRUE(outcome->job);
  // Chunks are copied in ascending order: wait for the first one (block 0) to be done.
  vdisk_testing::WaitUntil([&] { return outcome->job->Progress().current >= (2u << 20); });
  ASSERT_EQ(outcome->job->Progress().state, MirrorProgress::State::kCopying)
      << "the copy must still be running for this test to mean anything";
  const std::vector<std::byte> zeros(256 << 10);
  ASSERT_TRUE(disk->Write(64 << 10, zeros).ok());
  std::memset(reference_.data() + (64 << 10), 0, zeros.size());
  WaitReady(*outcome);
  ASSERT_TRUE(outcome->job->Break().ok());
  WaitEnd(*outcome);
  ASSERT_TRUE(outcome->finished.ok());
  // The handle's disk is now the mirror.
  EXPECT_EQ(disk->disk()->top().file().path().filename(), "dst.vhd");
  ExpectSourceIntact(*disk);
}

TEST_F(MirrorJobTest, TargetHardensItsWritesOnceItIsTheActiveDisk) {
  auto disk = OpenSource();
  ASSERT_TRUE(disk->disk()->top().write_hardening());
  auto outcome = Mirror(disk);
  ASSERT_TRUE(outcome->job);
  WaitReady(*outcome);
  ASSERT_TRUE(outcome->job->Break().ok());
  WaitEnd(*outcome);
  ASSERT_TRUE(outcome->finished.ok());
  ASSERT_EQ(disk->disk()->top().file().path().filename(), "dst.vhd");
  // Copied without flush barriers, but from the switch on a crash must not lose what an
  // allocating write acknowledged.
  EXPECT_TRUE(disk->disk()->top().write_hardening());
}

TEST_F(MirrorJobTest, EngineMemoryDoesNotDependOnTheDiskSize) {
  // The dirty set holds chunks with data, not the disk: a 1 TiB disk with the same data seeds
  // the same number of chunks.
  DiskCreateRequest request;
  request.path = dir_ / "big.vhd";
  request.options.virtual_size = 1ull << 40 > (2040ull << 30) ? (2040ull << 30) : 1ull << 40;
  auto big = VirtualDisk::Create(BuiltinProviders(), request);
  ASSERT_TRUE(big.ok());
  std::vector<std::byte> data(4096, std::byte{1});
  ASSERT_TRUE((*big)->Write(0, data).ok());
  ASSERT_TRUE((*big)->Write((1ull << 40) - (4 << 20), data).ok());
  big->reset();
  DiskOpenRequest open_request;
  open_request.path = request.path;
  open_request.options.read_only = false;
  auto disk = OpenDisk::Open(BuiltinProviders(), open_request);
  ASSERT_TRUE(disk.ok());
  MirrorOptions options;
  options.target_path = dir_ / "big-mirror.vhd";
  auto job = MirrorJob::Start(BuiltinProviders(), *disk, options);
  ASSERT_TRUE(job.ok()) << job.status().message();
  vdisk_testing::WaitUntil(
      [&] { return (*job)->Progress().state != MirrorProgress::State::kCopying; });
  const MirrorProgress p = (*job)->Progress();
  ASSERT_EQ(p.state, MirrorProgress::State::kReady);
  EXPECT_EQ(p.completion, 2u * (2 << 20)) << "two 2 MiB chunks scheduled out of 512K";
  ASSERT_TRUE((*job)->Break().ok());
  (*job)->WaitFinished();
  EXPECT_LT(std::filesystem::file_size(dir_ / "big-mirror.vhd"), 16u << 20);
}

TEST_F(MirrorJobTest, CopiesInTheKernelWhereBothFilesAreOnOneFilesystem) {
  if (KernelCopyTurnedOffByEnvironment()) GTEST_SKIP() << "VIRTDISK_COPY_FILE_RANGE=0";
  {
    auto source = platform::OpenOsFile(dir_ / "src.vhd", platform::FileAccess::kRead,
                                       platform::FileDisposition::kOpenExisting);
    ASSERT_TRUE(source.ok());
    if (!(*source)->CanCopyInKernelFrom(**source)) GTEST_SKIP() << "no copy_file_range here";
  }
  const MirrorCopyStats stats = MirrorAndBreak();
  EXPECT_TRUE(stats.kernel_copy);
  EXPECT_GT(stats.kernel_bytes, 0u);
  EXPECT_EQ(stats.buffered_bytes, 0u) << "nothing went through the buffer pool";
  EXPECT_GT(stats.skipped_zero_bytes, 0u) << "the holes of the source's blocks were left out";
  EXPECT_TRUE(ReadImage(dir_ / "dst.vhd") == reference_);
  // Into a fresh target the holes stay holes: no more space than the source takes.
  const double source_bytes = static_cast<double>(AllocatedBytes(dir_ / "src.vhd"));
  EXPECT_LE(static_cast<double>(AllocatedBytes(dir_ / "dst.vhd")), source_bytes * 1.02)
      << "source allocates " << source_bytes;
}

TEST_F(MirrorJobTest, CopiesThroughTheBufferPoolWhenTheKernelCopyIsOff) {
  MirrorOptions options;
  options.kernel_copy = false;
  const MirrorCopyStats stats = MirrorAndBreak(options);
  EXPECT_FALSE(stats.kernel_copy);
  EXPECT_EQ(stats.kernel_bytes, 0u);
  EXPECT_GT(stats.buffered_bytes, 0u);
  EXPECT_GT(stats.skipped_zero_bytes, 0u) << "all-zero pieces are not written into a new target";
  EXPECT_TRUE(ReadImage(dir_ / "dst.vhd") == reference_);
  const double source_bytes = static_cast<double>(AllocatedBytes(dir_ / "src.vhd"));
  EXPECT_LE(static_cast<double>(AllocatedBytes(dir_ / "dst.vhd")), source_bytes * 1.02)
      << "source allocates " << source_bytes;
}

TEST_F(MirrorJobTest, ATargetOnAnotherFilesystemIsCopiedThroughTheBufferPool) {
  std::error_code ec;
  if (!std::filesystem::is_directory("/dev/shm", ec)) GTEST_SKIP() << "no /dev/shm";
  const std::filesystem::path target =
      std::filesystem::path("/dev/shm") /
      ("mirror_job_test_" + std::to_string(std::random_device{}()) + ".vhd");
  MirrorOptions options;
  options.target_path = target;
  const MirrorCopyStats stats = MirrorAndBreak(options);
  const auto copy = ReadImage(target);
  std::filesystem::remove(target, ec);
  EXPECT_TRUE(copy == reference_);
  if (stats.kernel_bytes > 0) GTEST_SKIP() << "/dev/shm is on the source's filesystem";
  EXPECT_FALSE(stats.kernel_copy);
  EXPECT_GT(stats.buffered_bytes, 0u);
}

TEST_F(MirrorJobTest, ADifferencingMirrorKeepsZerosWrittenOverItsParent) {
  // The source's top is a child whose zeros hide its parent's data: the mirror (a child of the
  // same parent) must hold those zeros, not fall through to the parent there.
  for (const bool kernel_copy : {true, false}) {
    SCOPED_TRACE(kernel_copy ? "kernel copy" : "buffer pool");
    std::error_code ec;
    std::filesystem::remove(dir_ / "child.vhd", ec);
    std::filesystem::remove(dir_ / "child-mirror.vhd", ec);
    DiskCreateRequest create;
    create.path = dir_ / "child.vhd";
    create.parent_path = dir_ / "src.vhd";
    {
      auto child = VirtualDisk::Create(BuiltinProviders(), create);
      ASSERT_TRUE(child.ok()) << child.status().message();
    }
    DiskOpenRequest request;
    request.path = dir_ / "child.vhd";
    request.options.read_only = false;
    auto open = OpenDisk::Open(BuiltinProviders(), request);
    ASSERT_TRUE(open.ok()) << open.status().message();
    std::shared_ptr<OpenDisk> disk = std::move(*open);
    std::vector<std::byte> expected = reference_;
    const std::vector<std::byte> zeros(128 << 10);
    const std::vector<std::byte> ones(64 << 10, std::byte{1});
    for (std::uint64_t offset : {std::uint64_t{64} << 10, std::uint64_t{6} << 20}) {
      ASSERT_TRUE(disk->Write(offset, zeros).ok());
      std::memset(expected.data() + offset, 0, zeros.size());
    }
    ASSERT_TRUE(disk->Write(12 << 20, ones).ok());
    std::memset(expected.data() + (12 << 20), 1, ones.size());
    MirrorOptions options;
    options.target_path = dir_ / "child-mirror.vhd";
    options.kernel_copy = kernel_copy;
    auto outcome = Mirror(disk, options);
    ASSERT_TRUE(outcome->job);
    WaitReady(*outcome);
    ASSERT_TRUE(outcome->job->Break().ok());
    WaitEnd(*outcome);
    ASSERT_TRUE(outcome->finished.ok()) << outcome->finished.message();
    outcome.reset();
    disk.reset();
    EXPECT_TRUE(ReadImage(dir_ / "child-mirror.vhd") == expected);
  }
}

}  // namespace
}  // namespace vdisk
