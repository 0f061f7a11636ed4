// Crash consistency: crash_writer writes random patterns into a dynamic VHD (or a differencing
// child) through the API, one write at a time or four in flight (alternating by trial), and is
// killed with SIGKILL after a random 1..60 ms. Afterwards:
//  - the image opens through our API, read-only and then read-write;
//  - qemu-img info reports the right size; `qemu-img check -f vpc` passes or (qemu 7.2) says it
//    cannot check vpc, in which case qemu-img convert and libvhdi reading every block are the
//    structural check;
//  - every write in the journal (acknowledged before the kill) reads back with its pattern, later
//    writes winning; the writes that may have been in flight (the next DEPTH of the plan) read as
//    old or new data, byte by byte; nothing else changed;
//  - qemu (dynamic only: qemu ignores VHD parents) and libvhdi read exactly what we read;
//  - after a read-write reopen (which repairs a torn footer) further writes allocate cleanly and
//    every reader still agrees.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "crash_plan.h"
#include "interop_support.h"
#include "random_writes.h"

extern char** environ;

namespace vdisk_interop {
namespace {

#define ASSERT_OK(expr) ASSERT_EQ(static_cast<DWORD>(expr), static_cast<DWORD>(ERROR_SUCCESS))

constexpr std::uint64_t kMiB = 1 << 20;
// Small enough that libvhdi (slow on differencing chains) reads a whole disk in ~0.3 s; 24
// blocks of 2 MiB, so a good share of the writes allocate.
constexpr std::uint64_t kDiskSize = 48 * kMiB;
constexpr std::uint64_t kBlockCount = kDiskSize / CrashPlan::kBlock;

struct JournalRecord {
  std::uint64_t index = 0;
  CrashWrite write;
};

// The complete lines of the journal; a torn last line is not an acknowledgement.
std::vector<JournalRecord> ReadJournal(const std::filesystem::path& path) {
  std::vector<JournalRecord> records;
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t start = 0;
  for (std::size_t end = text.find('\n'); end != std::string::npos;
       start = end + 1, end = text.find('\n', start)) {
    std::istringstream line(text.substr(start, end - start));
    JournalRecord r;
    line >> r.index >> r.write.offset >> r.write.length >> r.write.seed;
    if (!line.fail()) records.push_back(r);
  }
  return records;
}

struct WriterRun {
  int status = 0;
  bool killed = false;
  std::chrono::microseconds delay{0};
};

// Starts crash_writer and kills it `delay` after it reports the disk attached (unless it ended
// before).
WriterRun RunAndKill(const std::filesystem::path& image, const std::filesystem::path& journal,
                     std::uint64_t seed, int depth, std::chrono::microseconds delay) {
  WriterRun run;
  run.delay = delay;
  const std::string writer = VIRTDISK_CRASH_WRITER;
  const std::string seed_text = std::to_string(seed);
  const std::string depth_text = std::to_string(depth);
  std::vector<char*> argv = {const_cast<char*>(writer.c_str()),
                             const_cast<char*>(image.c_str()),
                             const_cast<char*>(journal.c_str()),
                             const_cast<char*>(seed_text.c_str()),
                             const_cast<char*>(depth_text.c_str()), nullptr};
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    run.status = -1;
    return run;
  }
  // The writer's end becomes its descriptor 3 (dup2 clears close-on-exec).
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ready[1], 3);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.emplace_back("VIRTDISK_CRASH_READY_FD=3");
  std::vector<char*> env;
  for (auto& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, writer.c_str(), &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(ready[1]);
  if (rc != 0) {
    close(ready[0]);
    run.status = -1;
    return run;
  }
  // Wait (at most 10 s) for the byte; EOF means the writer died before attaching.
  pollfd pfd{ready[0], POLLIN, 0};
  char byte = 0;
  if (poll(&pfd, 1, 10000) == 1) (void)!read(ready[0], &byte, 1);
  close(ready[0]);
  timespec ts{static_cast<time_t>(delay.count() / 1000000),
              static_cast<long>(delay.count() % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0) {
  }
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  run.status = status;
  run.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  return run;
}

// Checks `actual` against the model: exact outside the `uncertain` writes, old or new inside
// them (the writer never has two overlapping writes in flight, so "new" is one write's bytes).
std::string CheckAgainstModel(const Bytes& actual, const Bytes& model,
                              const std::vector<CrashWrite>& uncertain) {
  if (actual.size() != model.size()) return "size " + std::to_string(actual.size());
  Bytes possible = model;  // where an uncertain write lies: its bytes
  for (const CrashWrite& w : uncertain)
    FillPattern(w.seed, std::span(possible).subspan(w.offset, w.length));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] == model[i] || actual[i] == possible[i]) continue;
    std::string in_flight;
    for (const CrashWrite& w : uncertain) {
      in_flight += " [" + std::to_string(w.offset) + ", +" + std::to_string(w.length) + ")";
    }
    return "byte " + std::to_string(i) + " (2 MiB block " + std::to_string(i >> 21) + ") is " +
           std::to_string(actual[i]) + ", expected " + std::to_string(model[i]) +
           (possible[i] != model[i] ? " or " + std::to_string(possible[i]) : std::string()) +
           "; writes possibly in flight:" + in_flight;
  }
  return "ok";
}

struct Totals {
  int trials = 0;
  int killed_mid_run = 0;     // killed with at least one acknowledged write
  std::uint64_t acknowledged = 0;
  std::uint64_t allocating = 0;  // acknowledged writes that allocated at least one block
  int in_flight_allocating = 0;  // trials with an allocating write possibly in flight
  int reopened = 0;
};

// Marks the blocks `w` touches in `allocated`; true if any was not allocated yet.
bool Allocates(std::vector<bool>& allocated, const CrashWrite& w) {
  bool any = false;
  for (std::uint64_t b = w.offset / CrashPlan::kBlock;
       b <= (w.offset + w.length - 1) / CrashPlan::kBlock; ++b) {
    if (!allocated[b]) any = true;
    allocated[b] = true;
  }
  return any;
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override { INTEROP_REQUIRE_TOOL("qemu-img"); }

  // Creates `image` through the API and writes `writes` random CrashPlan writes of `seed`
  // (4 KiB aligned) into it, applying them to `model`.
  static void Populate(const std::filesystem::path& image, const CreateSpec& spec,
                       std::uint64_t seed, int writes, Bytes& model,
                       std::vector<bool>& allocated) {
    allocated.assign(kBlockCount, false);
    Handle h;
    ASSERT_OK(CreateVhd(image, spec, h));
    ASSERT_OK(AttachRaw(h.get(), false));
    CrashPlan plan(seed, kDiskSize);
    for (int i = 0; i < writes; ++i) {
      const CrashWrite w = plan.Next();
      Bytes data(w.length);
      FillPattern(w.seed, data);
      ASSERT_OK(WriteAt(h.get(), w.offset, data));
      std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(w.offset));
      Allocates(allocated, w);
    }
    ASSERT_TRUE(h.Close());
  }

  // One trial: copy the template, run and kill the writer, check every reader.
  void Trial(int trial, const std::filesystem::path& template_image,
             const std::filesystem::path& image, const std::vector<std::filesystem::path>& parents,
             const Bytes& template_model, const std::vector<bool>& template_allocated,
             bool qemu_reads_data, std::mt19937_64& rng, Totals& totals) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " on " + image.string());
    std::filesystem::copy_file(template_image, image,
                               std::filesystem::copy_options::overwrite_existing);
    const auto journal = image.string() + ".journal";
    std::filesystem::remove(journal);
    const std::uint64_t seed = rng();
    const auto delay = std::chrono::microseconds(
        std::uniform_int_distribution<std::int64_t>(1000, 60000)(rng));
    const int depth = trial % 2 == 0 ? 1 : 4;
    const WriterRun run = RunAndKill(image, journal, seed, depth, delay);
    ASSERT_TRUE(run.killed) << "crash_writer ended by itself with status " << run.status
                            << " (seed " << seed << ")";
    ++totals.trials;

    // The model: the template, then the acknowledged writes in order.
    const auto records = ReadJournal(journal);
    CrashPlan plan(seed, kDiskSize);
    Bytes model = template_model;
    std::vector<bool> allocated = template_allocated;
    for (std::size_t i = 0; i < records.size(); ++i) {
      const CrashWrite w = plan.Next();
      ASSERT_EQ(records[i].index, i);
      ASSERT_EQ(records[i].write.offset, w.offset) << "journal record " << i;
      ASSERT_EQ(records[i].write.length, w.length) << "journal record " << i;
      ASSERT_EQ(records[i].write.seed, w.seed) << "journal record " << i;
      FillPattern(w.seed, std::span(model).subspan(w.offset, w.length));
      totals.allocating += Allocates(allocated, w);
    }
    // What the writer may have issued after its last journaled write: the next writes of the
    // plan, at most `depth`, up to the first that overlaps one of them (issuing that one would
    // have retired, and so journaled, the oldest first).
    std::vector<CrashWrite> in_flight;
    bool allocating = false;
    for (int i = 0; i < depth; ++i) {
      const CrashWrite w = plan.Next();
      const bool overlaps = std::any_of(in_flight.begin(), in_flight.end(), [&](const CrashWrite& f) {
        return w.offset < f.offset + f.length && f.offset < w.offset + w.length;
      });
      if (overlaps) break;
      in_flight.push_back(w);
      allocating = Allocates(allocated, w) || allocating;
    }
    totals.in_flight_allocating += allocating;
    totals.acknowledged += records.size();
    if (!records.empty()) ++totals.killed_mid_run;
    SCOPED_TRACE("seed " + std::to_string(seed) + ", depth " + std::to_string(depth) +
                 ", killed after " +
                 std::to_string(delay.count()) + " us, " + std::to_string(records.size()) +
                 " acknowledged writes");

    std::vector<std::filesystem::path> chain = {image};
    chain.insert(chain.end(), parents.begin(), parents.end());

    // Read-only first: what a reader sees before anyone repairs anything.
    std::string error;
    const auto ours = ReadImageThroughApi(image, &error);
    ASSERT_TRUE(ours.has_value()) << "after the kill: " << error;
    ASSERT_EQ(CheckAgainstModel(*ours, model, in_flight), "ok") << "our reader";

    EXPECT_EQ(QemuVirtualSize(image, "vpc"), kDiskSize) << "qemu-img info after the kill";
    const QemuCheck check = QemuCheckVpc(image);
    EXPECT_TRUE(check.passed) << check.detail;
    if (qemu_reads_data) {
      const auto qemu_view = QemuReadAll(image, "vpc", image.parent_path(), &error);
      ASSERT_TRUE(qemu_view.has_value()) << error;
      EXPECT_EQ(CompareBytes(*qemu_view, *ours), "equal") << "qemu vs our reader after the kill";
    }
    if (HaveLibvhdi()) {
      const auto libvhdi_view = LibvhdiReadAll(chain, nullptr, &error);
      ASSERT_TRUE(libvhdi_view.has_value()) << error;
      EXPECT_EQ(CompareBytes(*libvhdi_view, *ours), "equal")
          << "libvhdi vs our reader after the kill";
    }

    // Every fifth trial (both depths): reopen read-write (repairs), write more, check again.
    if (trial % 5 != 0) return;
    ++totals.reopened;
    Bytes after = *ours;
    {
      Handle h;
      ASSERT_OK(OpenV2(image, StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false), false, h));
      ASSERT_OK(AttachRaw(h.get(), false));
      CrashPlan more(seed ^ 0x5eed, kDiskSize);
      for (int i = 0; i < 6; ++i) {
        const CrashWrite w = more.Next();
        Bytes data(w.length);
        FillPattern(w.seed, data);
        ASSERT_OK(WriteAt(h.get(), w.offset, data)) << "write after reopening";
        std::copy(data.begin(), data.end(), after.begin() + static_cast<std::ptrdiff_t>(w.offset));
      }
      ASSERT_TRUE(h.Close());
    }
    const auto reread = ReadImageThroughApi(image, &error);
    ASSERT_TRUE(reread.has_value()) << "after the read-write reopen: " << error;
    EXPECT_EQ(CompareBytes(*reread, after), "equal") << "our reader after the reopen";
    EXPECT_EQ(QemuVirtualSize(image, "vpc"), kDiskSize) << "qemu-img info after the reopen";
    if (qemu_reads_data) {
      const auto qemu_view = QemuReadAll(image, "vpc", image.parent_path(), &error);
      ASSERT_TRUE(qemu_view.has_value()) << error;
      EXPECT_EQ(CompareBytes(*qemu_view, after), "equal") << "qemu after the reopen";
    }
    if (HaveLibvhdi()) {
      const auto libvhdi_view = LibvhdiReadAll(chain, nullptr, &error);
      ASSERT_TRUE(libvhdi_view.has_value()) << error;
      EXPECT_EQ(CompareBytes(*libvhdi_view, after), "equal") << "libvhdi after the reopen";
    }
  }

  static void Report(const char* what, const Totals& t) {
    std::printf("%s: %d trials, %d killed after >= 1 acknowledged write, %llu acknowledged "
                "writes (%llu allocating a block), %d killed with an allocating write possibly in flight, "
                "%d reopened read-write\n",
                what, t.trials, t.killed_mid_run, static_cast<unsigned long long>(t.acknowledged),
                static_cast<unsigned long long>(t.allocating), t.in_flight_allocating,
                t.reopened);
    ::testing::Test::RecordProperty("trials", t.trials);
    ::testing::Test::RecordProperty("acknowledged_writes", static_cast<int>(t.acknowledged));
  }

  ScratchDir dir_;
};

TEST_F(CrashTest, KilledWriterLeavesDynamicVhdConsistent) {
  const auto template_image = dir_ / "template.vhd";
  Bytes model(kDiskSize, 0);
  std::vector<bool> allocated;
  ASSERT_NO_FATAL_FAILURE(
      Populate(template_image, {kDiskSize, false, 0, {}}, 1, 6, model, allocated));
  // VIRTDISK_INTEROP_SEED replays another series of trials.
  const std::uint64_t series = SeedFor("CrashTest.Dynamic");
  SCOPED_TRACE("series seed " + std::to_string(series));
  std::mt19937_64 rng(series);
  Totals totals;
  for (int trial = 0; trial < 26; ++trial) {
    ASSERT_NO_FATAL_FAILURE(Trial(trial, template_image, dir_ / "dynamic.vhd", {}, model,
                                  allocated, true, rng, totals));
  }
  Report("dynamic", totals);
  EXPECT_GE(totals.killed_mid_run, totals.trials / 4)
      << "too few kills landed after an acknowledged write: the test lost its power";
}

TEST_F(CrashTest, KilledWriterLeavesDifferencingChildConsistent) {
  const auto base = dir_ / "base.vhd";
  const auto template_image = dir_ / "child-template.vhd";
  Bytes model(kDiskSize, 0);
  std::vector<bool> allocated;
  ASSERT_NO_FATAL_FAILURE(Populate(base, {kDiskSize, false, 0, {}}, 2, 24, model, allocated));
  // Allocation now means allocation in the child: start from the child's own blocks.
  ASSERT_NO_FATAL_FAILURE(
      Populate(template_image, {0, false, 0, base}, 3, 6, model, allocated));
  const std::uint64_t series = SeedFor("CrashTest.Differencing");
  SCOPED_TRACE("series seed " + std::to_string(series));
  std::mt19937_64 rng(series);
  Totals totals;
  for (int trial = 0; trial < 24; ++trial) {
    // The child lives beside its parent, so both of its parent locators resolve.
    ASSERT_NO_FATAL_FAILURE(Trial(trial, template_image, dir_ / "child.vhd", {base}, model,
                                  allocated, false, rng, totals));
  }
  Report("differencing", totals);
  EXPECT_GE(totals.killed_mid_run, totals.trials / 4)
      << "too few kills landed after an acknowledged write: the test lost its power";
}

}  // namespace
}  // namespace vdisk_interop
