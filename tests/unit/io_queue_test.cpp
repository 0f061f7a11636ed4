// IoQueue, both backends: random reads and writes compared with plain positional I/O, errors
// carried to the callback, wrapped files served through their own ReadAt/WriteAt, the depth
// bound, and the choice of backend (VIRTDISK_IO_BACKEND).
#include "platform/io_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "platform/fault_file.h"
#include "test_support.h"

namespace vdisk::platform {
namespace {

using vdisk_unit::TempDir;

constexpr std::size_t kFileBytes = 8 << 20;

// Sets an environment variable for the scope and restores the previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old;
    Set(value);
  }
  ~ScopedEnv() { Set(previous_ ? previous_->c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void Set(const char* value) {
#ifdef _WIN32
    _putenv_s(name_.c_str(), value ? value : "");
#else
    if (value) {
      ::setenv(name_.c_str(), value, 1);
    } else {
      ::unsetenv(name_.c_str());
    }
#endif
  }
  std::string name_;
  std::optional<std::string> previous_;
};

// Counts callbacks and keeps the first failure; Wait returns when `n` have run.
class Completions {
 public:
  IoQueue::Callback Add(Status* into = nullptr) {
    return [this, into](const Status& status) {
      std::lock_guard lock(mutex_);
      if (into != nullptr) *into = status;
      if (!status.ok() && first_failure_.ok()) first_failure_ = status;
      ++done_;
      cv_.notify_all();
    };
  }
  void Wait(std::size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return done_ >= n; });
  }
  std::size_t done() {
    std::lock_guard lock(mutex_);
    return done_;
  }
  Status first_failure() {
    std::lock_guard lock(mutex_);
    return first_failure_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t done_ = 0;
  Status first_failure_;
};

std::vector<std::byte> RandomBytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

class IoQueueTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  void SetUp() override {
    auto queue = OpenIoQueue(8, GetParam());
    if (!queue.ok() && queue.status().code() == Code::kNotSupported) {
      GTEST_SKIP() << IoBackendName(GetParam())
                   << " is not available here: " << queue.status().message();
    }
    ASSERT_TRUE(queue.ok()) << queue.status().message();
    queue_ = std::move(*queue);
    ASSERT_EQ(queue_->backend(), GetParam());
    ASSERT_EQ(queue_->depth(), 8u);
    std::mt19937_64 rng(7);
    contents_ = RandomBytes(rng, kFileBytes);
    auto file = OpenOsFile(dir_ / "data.bin", FileAccess::kReadWrite, FileDisposition::kCreateNew);
    ASSERT_TRUE(file.ok()) << file.status().message();
    ASSERT_TRUE((*file)->WriteAt(0, contents_).ok());
    file_ = std::move(*file);
  }

  TempDir dir_;
  std::unique_ptr<IoQueue> queue_;
  std::unique_ptr<File> file_;
  std::vector<std::byte> contents_;
};

TEST_P(IoQueueTest, ReadsAtRandomOffsetsReturnWhatPreadReturns) {
  std::mt19937_64 rng(11);
  constexpr std::size_t kReads = 300;
  std::vector<std::vector<std::byte>> buffers(kReads);
  std::vector<std::uint64_t> offsets(kReads);
  Completions completions;
  for (std::size_t i = 0; i < kReads; ++i) {
    const std::size_t length = 1 + rng() % (300 << 10);
    offsets[i] = rng() % (kFileBytes - length + 1);
    buffers[i].resize(length);
    queue_->Read(*file_, offsets[i], buffers[i], completions.Add());
  }
  completions.Wait(kReads);
  ASSERT_TRUE(completions.first_failure().ok()) << completions.first_failure().message();
  for (std::size_t i = 0; i < kReads; ++i) {
    std::vector<std::byte> expected(buffers[i].size());
    ASSERT_TRUE(file_->ReadAt(offsets[i], expected).ok());
    ASSERT_TRUE(buffers[i] == expected)
        << "read " << i << " of " << buffers[i].size() << " bytes at " << offsets[i];
  }
}

TEST_P(IoQueueTest, WritesAtRandomOffsetsLandWherePwriteWouldPutThem) {
  // One write in each 64 KiB slot, slots in random order, so that writes in flight never overlap.
  std::mt19937_64 rng(13);
  constexpr std::size_t kSlot = 64 << 10;
  std::vector<std::size_t> slots(kFileBytes / kSlot);
  for (std::size_t i = 0; i < slots.size(); ++i) slots[i] = i;
  std::shuffle(slots.begin(), slots.end(), rng);
  struct Write {
    std::uint64_t offset;
    std::vector<std::byte> data;
  };
  std::vector<Write> writes;
  std::vector<std::byte> expected = contents_;
  for (std::size_t slot : slots) {
    const std::size_t length = 1 + rng() % kSlot;
    const std::uint64_t offset = slot * kSlot + rng() % (kSlot - length + 1);
    writes.push_back(Write{offset, RandomBytes(rng, length)});
    std::memcpy(expected.data() + offset, writes.back().data.data(), length);
  }
  Completions completions;
  for (const Write& w : writes) queue_->Write(*file_, w.offset, w.data, completions.Add());
  queue_->Drain();
  EXPECT_EQ(completions.done(), writes.size()) << "Drain returns after every callback";
  ASSERT_TRUE(completions.first_failure().ok()) << completions.first_failure().message();
  std::vector<std::byte> actual(kFileBytes);
  ASSERT_TRUE(file_->ReadAt(0, actual).ok());
  EXPECT_TRUE(actual == expected);
}

TEST_P(IoQueueTest, AWritePastTheEndExtendsTheFile) {
  const std::vector<std::byte> tail(4096, std::byte{0x5A});
  Status status(Code::kInternal, "not called");
  Completions completions;
  queue_->Write(*file_, kFileBytes + 8192, tail, completions.Add(&status));
  completions.Wait(1);
  ASSERT_TRUE(status.ok()) << status.message();
  auto size = file_->Size();
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size.value(), kFileBytes + 8192 + tail.size());
}

TEST_P(IoQueueTest, AReadPastTheEndFailsAsFileReadAtDoes) {
  std::vector<std::byte> crossing(8192);
  std::vector<std::byte> beyond(512);
  Status crossing_status;
  Status beyond_status;
  Completions completions;
  queue_->Read(*file_, kFileBytes - 4096, crossing, completions.Add(&crossing_status));
  queue_->Read(*file_, kFileBytes + (1 << 20), beyond, completions.Add(&beyond_status));
  completions.Wait(2);
  EXPECT_EQ(crossing_status.code(), Code::kFileCorrupt) << crossing_status.message();
  EXPECT_EQ(beyond_status.code(), Code::kFileCorrupt) << beyond_status.message();
  EXPECT_NE(crossing_status.message().find("data.bin"), std::string_view::npos)
      << "the error names the file: " << crossing_status.message();
}

TEST_P(IoQueueTest, AWriteToAReadOnlyFileFailsWithTheOsError) {
  file_.reset();  // Windows share modes: one writer at a time
  auto read_only = OpenOsFile(dir_ / "data.bin", FileAccess::kRead, FileDisposition::kOpenExisting);
  ASSERT_TRUE(read_only.ok()) << read_only.status().message();
  const std::vector<std::byte> data(4096, std::byte{1});
  Status status;
  Completions completions;
  queue_->Write(**read_only, 0, data, completions.Add(&status));
  completions.Wait(1);
  EXPECT_FALSE(status.ok()) << "expected a failure, got success";
  EXPECT_NE(status.os_error(), 0) << status.message();
  std::vector<std::byte> head(4096);
  ASSERT_TRUE((*read_only)->ReadAt(0, head).ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), contents_.begin())) << "nothing was written";
}

TEST_P(IoQueueTest, WrappedFilesAreServedThroughTheirOwnReadAt) {
  // The second read of the wrapper fails: the queue must go through it, not around it.
  FaultPlan plan;
  plan.fail_read_at = 2;
  FaultInjectingFile wrapped(std::move(file_), plan);
  ASSERT_FALSE(wrapped.native_handle().has_value());
  std::vector<std::byte> first(4096);
  std::vector<std::byte> second(4096);
  Status first_status;
  Status second_status;
  Completions completions;
  queue_->Read(wrapped, 0, first, completions.Add(&first_status));
  completions.Wait(1);
  queue_->Read(wrapped, 4096, second, completions.Add(&second_status));
  completions.Wait(2);
  ASSERT_TRUE(first_status.ok()) << first_status.message();
  EXPECT_TRUE(std::equal(first.begin(), first.end(), contents_.begin()));
  EXPECT_EQ(second_status.code(), Code::kIoError) << second_status.message();
  EXPECT_NE(second_status.message().find("injected"), std::string_view::npos)
      << second_status.message();
}

// A File that counts how many of its reads run at once (each holds on until released in
// batches, so that the queue has the chance to exceed its depth if it would).
class ConcurrencyCountingFile final : public File {
 public:
  explicit ConcurrencyCountingFile(File& inner) : inner_(inner) {}
  Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override {
    {
      std::unique_lock lock(mutex_);
      ++running_;
      max_running_ = std::max(max_running_, running_);
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_ > 0; });
      --released_;
    }
    const Status status = inner_.ReadAt(offset, out);
    {
      std::lock_guard lock(mutex_);
      --running_;
    }
    return status;
  }
  // Lets `n` reads finish once `running` reads are waiting.
  void Release(std::size_t running, std::size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return running_ >= running; });
    released_ += n;
    cv_.notify_all();
  }
  std::size_t max_running() {
    std::lock_guard lock(mutex_);
    return max_running_;
  }
  Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override {
    return inner_.WriteAt(offset, data);
  }
  Status Flush() override { return inner_.Flush(); }
  Result<std::uint64_t> Size() override { return inner_.Size(); }
  Status Resize(std::uint64_t size) override { return inner_.Resize(size); }
  Status Allocate(std::uint64_t offset, std::uint64_t length) override {
    return inner_.Allocate(offset, length);
  }
  Result<std::uint64_t> AllocatedBytes() override { return inner_.AllocatedBytes(); }
  Status Lock(bool exclusive) override { return inner_.Lock(exclusive); }
  bool writable() const override { return inner_.writable(); }
  const std::filesystem::path& path() const override { return inner_.path(); }

 private:
  File& inner_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t running_ = 0;
  std::size_t max_running_ = 0;
  std::size_t released_ = 0;
};

TEST_P(IoQueueTest, NoMoreThanDepthRequestsAreInFlight) {
  auto queue = OpenIoQueue(2, GetParam());
  ASSERT_TRUE(queue.ok());
  ConcurrencyCountingFile counting(*file_);
  constexpr std::size_t kReads = 12;
  std::vector<std::vector<std::byte>> buffers(kReads, std::vector<std::byte>(512));
  Completions completions;
  std::thread submitter([&] {
    for (std::size_t i = 0; i < kReads; ++i)
      (*queue)->Read(counting, i * 512, buffers[i], completions.Add());
  });
  // The thread-pool backend runs up to min(depth, its threads) at once: wait for the first
  // one, then let them through one at a time.
  for (std::size_t i = 0; i < kReads; ++i) counting.Release(1, 1);
  submitter.join();
  completions.Wait(kReads);
  EXPECT_TRUE(completions.first_failure().ok()) << completions.first_failure().message();
  EXPECT_LE(counting.max_running(), 2u);
}

TEST_P(IoQueueTest, DestroyingTheQueueWaitsForItsRequests) {
  std::vector<std::vector<std::byte>> buffers(32, std::vector<std::byte>(64 << 10));
  Completions completions;
  for (std::size_t i = 0; i < buffers.size(); ++i)
    queue_->Read(*file_, i * (64 << 10), buffers[i], completions.Add());
  queue_.reset();
  EXPECT_EQ(completions.done(), buffers.size());
}

INSTANTIATE_TEST_SUITE_P(Backends, IoQueueTest,
                         ::testing::Values(IoBackend::kUring, IoBackend::kThreads),
                         [](const ::testing::TestParamInfo<IoBackend>& info) {
                           return std::string(IoBackendName(info.param));
                         });

TEST(IoQueueSelection, ThreadsWhenTheEnvironmentForcesThem) {
  ScopedEnv env("VIRTDISK_IO_BACKEND", "threads");
  auto queue = OpenIoQueue(4);
  ASSERT_TRUE(queue.ok()) << queue.status().message();
  EXPECT_EQ((*queue)->backend(), IoBackend::kThreads);
}

TEST(IoQueueSelection, UringWhenAvailableUnlessForcedOff) {
  ScopedEnv env("VIRTDISK_IO_BACKEND", nullptr);
  const bool uring_available = OpenUringIoQueue(4).ok();
  auto queue = OpenIoQueue(4);
  ASSERT_TRUE(queue.ok()) << queue.status().message();
  EXPECT_EQ((*queue)->backend(), uring_available ? IoBackend::kUring : IoBackend::kThreads);
  ScopedEnv forced("VIRTDISK_IO_BACKEND", "uring");
  auto forced_queue = OpenIoQueue(4);
  if (uring_available) {
    ASSERT_TRUE(forced_queue.ok()) << forced_queue.status().message();
    EXPECT_EQ((*forced_queue)->backend(), IoBackend::kUring);
  } else {
    EXPECT_EQ(forced_queue.status().code(), Code::kNotSupported)
        << "forcing an unavailable backend fails rather than silently choosing another";
  }
}

TEST(IoQueueSelection, AnUnknownBackendNameIsRefused) {
  ScopedEnv env("VIRTDISK_IO_BACKEND", "aio");
  auto queue = OpenIoQueue(4);
  ASSERT_FALSE(queue.ok());
  EXPECT_EQ(queue.status().code(), Code::kInvalidParameter) << queue.status().message();
}

TEST(IoQueueSelection, ADepthOfZeroIsRefused) {
  EXPECT_EQ(OpenIoQueue(0, IoBackend::kThreads).status().code(), Code::kInvalidParameter);
}

}  // namespace
}  // namespace vdisk::platform
