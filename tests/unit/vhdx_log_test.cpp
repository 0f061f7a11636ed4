// The VHDX log (MS-VHDX §2.3): replay of hand-built dirty logs (read-only in memory, read-write
// into the file), and crash safety of our own journalled updates: a simulated crash after
// every possible number of file writes, and a real writer process killed with SIGKILL, checked
// by our reader and by qemu-img.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif
#include <thread>

#include "host_shell.h"
#include "test_support.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhdx/vhdx_format.h"
#include "formats/vhdx/vhdx_image.h"
#include "formats/vhdx/vhdx_log.h"
#include "formats/vhdx/vhdx_provider.h"
#include "platform/file.h"
#include "platform/memory_file.h"
#include "support/crashing_file.h"
#include "support/file_bytes.h"
#include "support/provider_registry.h"
#include "support/sanitizers.h"
#include "support/wait.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
using namespace vhdx;  // NOLINT(build/namespaces): test of the format's own structures

using vdisk_unit::TempDir;

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdxProvider>(); }

Result<std::unique_ptr<VirtualDisk>> Open(const fs::path& path, bool read_only = true) {
  DiskOpenRequest request;
  request.path = path;
  request.options.read_only = read_only;
  return VirtualDisk::Open(Registry(), request);
}

void CreateDisk(const fs::path& path, std::uint64_t size, std::uint32_t block_size,
                const fs::path& parent = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.virtual_size = size;
  request.options.block_size = block_size;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
}

std::vector<std::byte> ReadFile(const fs::path& path) { return vdisk_unit::ReadWholeFile(path); }

using vdisk_testing::ReadFileBytes;
using vdisk_testing::WriteFileBytes;

Header ReadHeader(const fs::path& path, int index) {
  Header h;
  const auto bytes = ReadFileBytes(path, index == 0 ? kHeader1Offset : kHeader2Offset, sizeof h);
  std::memcpy(&h, bytes.data(), sizeof h);
  return h;
}

// The current header of the file (higher sequence number).
Header CurrentHeader(const fs::path& path) {
  const Header a = ReadHeader(path, 0);
  const Header b = ReadHeader(path, 1);
  return b.sequence_number.get() > a.sequence_number.get() ? b : a;
}

void WriteHeader(const fs::path& path, int index, Header h) {
  std::vector<std::byte> bytes(kHeaderSize);
  h.checksum.set(0);
  std::memcpy(bytes.data(), &h, sizeof h);
  h.checksum.set(Crc32cWithZeroedField(bytes, 4));
  std::memcpy(bytes.data(), &h, sizeof h);
  WriteFileBytes(path, index == 0 ? kHeader1Offset : kHeader2Offset, bytes);
}

// Names `log_guid` in both headers, as a writer that crashed with a dirty log leaves them.
void SetLogGuid(const fs::path& path, const Guid& log_guid) {
  Header h = CurrentHeader(path);
  h.log_guid = log_guid;
  const std::uint64_t seq = h.sequence_number.get();
  h.sequence_number.set(seq + 1);
  WriteHeader(path, 0, h);
  h.sequence_number.set(seq + 2);
  WriteHeader(path, 1, h);
}

constexpr std::uint64_t kLogOffset = kMiB;  // where our writer puts the log
constexpr std::uint64_t kBatOffset = 3 * kMiB;

// Writes `entry` at log offset `position`, wrapping around the 1 MiB ring.
void WriteEntry(const fs::path& path, std::uint32_t position, std::span<const std::byte> entry) {
  const std::size_t first = std::min<std::size_t>(entry.size(), kMiB - position);
  WriteFileBytes(path, kLogOffset + position, entry.first(first));
  if (first < entry.size()) WriteFileBytes(path, kLogOffset, entry.subspan(first));
}

// A BAT sector (4 KiB: 512 entries) with the given entries set.
std::vector<std::byte> BatSector(const std::vector<std::pair<std::size_t, std::uint64_t>>& entries,
                                 std::vector<std::byte> base = {}) {
  if (base.empty()) base.resize(kLogSectorSize);
  for (const auto& [i, value] : entries) {
    Le64 v;
    v.set(value);
    std::memcpy(base.data() + i * 8, &v, 8);
  }
  return base;
}

std::vector<std::byte> Pattern(std::uint8_t seed, std::size_t size) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>(seed + i * 7 + (i >> 9));
  return out;
}

std::vector<std::byte> ReadDisk(VirtualDisk& disk, std::uint64_t offset, std::size_t size) {
  std::vector<std::byte> out(size);
  const Status status = disk.Read(offset, out);
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

// A dynamic disk of 8 MiB blocks (BAT entry i is payload block i for i < 4) with payload data
// for blocks 0..2 laid down at 4, 12 and 20 MiB that no BAT entry references yet, as an
// allocating writer leaves it before its journal entry.
struct DirtyFixture {
  TempDir dir;
  fs::path path = dir / "dirty.vhdx";
  const Guid log_guid = Guid::Random();
  DirtyFixture() {
    CreateDisk(path, 32 * kMiB, 8 * kMiB);
    for (std::uint8_t b = 0; b < 3; ++b)
      WriteFileBytes(path, (4 + 8 * b) * kMiB, Pattern(b + 1, 8 * kMiB));
  }
  static std::uint64_t Block(std::uint64_t b) {
    return MakeBatEntry(kPayloadFullyPresent, (4 + 8 * b) * kMiB);
  }
  // Checks a read-only open against `expect_blocks` (which block reads which pattern, 0: zeros)
  // without changing the file, then a read-write open that replays and clears the log.
  void Check(const std::vector<int>& expect_blocks, std::uint64_t expected_size = 28 * kMiB) {
    const auto before = ReadFile(path);
    {
      auto disk = Open(path);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      EXPECT_TRUE(dynamic_cast<VhdxImage&>((*disk)->top()).replayed_log());
      ExpectBlocks(**disk, expect_blocks, "read-only replay");
    }
    EXPECT_TRUE(ReadFile(path) == before) << "a read-only open changed the file";
    {
      auto disk = Open(path, /*read_only=*/false);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      ExpectBlocks(**disk, expect_blocks, "read-write replay");
    }
    EXPECT_TRUE(CurrentHeader(path).log_guid.is_zero());
    EXPECT_GE(fs::file_size(path), expected_size);
    auto disk = Open(path);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    EXPECT_FALSE(dynamic_cast<VhdxImage&>((*disk)->top()).replayed_log());
    ExpectBlocks(**disk, expect_blocks, "after replay");
  }
  static void ExpectBlocks(VirtualDisk& disk, const std::vector<int>& blocks,
                           const std::string& when) {
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      const auto data = ReadDisk(disk, b * 8 * kMiB, 8 * kMiB);
      const auto expected = blocks[b] == 0
                                ? std::vector<std::byte>(8 * kMiB)
                                : Pattern(static_cast<std::uint8_t>(blocks[b]), 8 * kMiB);
      EXPECT_TRUE(data == expected)
          << when << ": block " << b << " should read "
          << (blocks[b] == 0 ? std::string("zeros") : "pattern " + std::to_string(blocks[b]));
    }
  }
  std::vector<std::byte> Entry(std::uint64_t seq, std::uint32_t tail,
                               const std::vector<LogUpdate>& updates,
                               std::uint64_t last = 28 * kMiB, const Guid* guid = nullptr) {
    return BuildLogEntry(guid ? *guid : log_guid, seq, tail, updates, 4 * kMiB, last);
  }
};

TEST(VhdxLogReplay, SingleEntry) {
  DirtyFixture f;
  const auto entry = f.Entry(1, 0, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}}))});
  WriteEntry(f.path, 0, entry);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({1, 0, 0, 0}));
  // The replayed BAT sector is in the file.
  EXPECT_EQ(ReadFileBytes(f.path, kBatOffset, kLogSectorSize), BatSector({{0, f.Block(0)}}));
}

TEST(VhdxLogReplay, SeveralEntriesApplyInOrderFromTheTail) {
  DirtyFixture f;
  std::uint32_t at = 0;
  // Stale entries of the same log from before the active sequence's tail: seq 3 would map
  // block 3, but the head's tail (8 KiB on) excludes it.
  const auto stale = f.Entry(3, 0, {LogUpdate::Data(kBatOffset, BatSector({{3, f.Block(2)}}))});
  WriteEntry(f.path, at, stale);
  at += static_cast<std::uint32_t>(stale.size());
  const std::uint32_t tail = at;
  const auto e4 = f.Entry(4, tail, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}}))});
  WriteEntry(f.path, at, e4);
  at += static_cast<std::uint32_t>(e4.size());
  const auto e5 = f.Entry(
      5, tail, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}, {1, f.Block(1)}}))});
  WriteEntry(f.path, at, e5);
  at += static_cast<std::uint32_t>(e5.size());
  // The head: block 0 now points at block 2's data, block 1 stays.
  const auto e6 = f.Entry(
      6, tail, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(2)}, {1, f.Block(1)}}))});
  WriteEntry(f.path, at, e6);
  // A complete but older sequence elsewhere in the ring loses to the newer one.
  const auto old =
      f.Entry(2, 600 * 1024, {LogUpdate::Data(kBatOffset, BatSector({{2, f.Block(2)}}))});
  WriteEntry(f.path, 600 * 1024, old);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({3, 2, 0, 0}));
}

TEST(VhdxLogReplay, EntryThatWrapsAroundTheEndOfTheLog) {
  DirtyFixture f;
  std::vector<LogUpdate> updates = {
      LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(1)}, {2, f.Block(2)}})),
      LogUpdate::Data(kBatOffset + kLogSectorSize, BatSector({})),
  };
  const auto entry = f.Entry(77, kMiB - 8192, updates);
  ASSERT_EQ(entry.size(), 3 * kLogSectorSize);
  WriteEntry(f.path, kMiB - 8192, entry);  // the last data sector lands at log offset 0
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({2, 0, 3, 0}));
}

TEST(VhdxLogReplay, TornLastEntryIsNotReplayed) {
  DirtyFixture f;
  const auto e1 = f.Entry(1, 0, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}}))});
  WriteEntry(f.path, 0, e1);
  auto e2 =
      f.Entry(2, 0, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}, {1, f.Block(1)}}))});
  // Torn: the data sector never made it (its bytes differ from what the CRC covers).
  std::fill(e2.end() - 100, e2.end(), std::byte{0xEE});
  WriteEntry(f.path, static_cast<std::uint32_t>(e1.size()), e2);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({1, 0, 0, 0}));
}

TEST(VhdxLogReplay, ZeroDescriptorsZeroAndExtend) {
  DirtyFixture f;
  // Block 0 mapped, then the whole BAT sector zeroed, then block 1 mapped; and a zero range past
  // the end of the file, which replay creates.
  const auto entry =
      f.Entry(9, 0,
              {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}})),
               LogUpdate::Zero(kBatOffset, kLogSectorSize),
               LogUpdate::Data(kBatOffset + kLogSectorSize, Pattern(3, kLogSectorSize)),
               LogUpdate::Zero(kBatOffset + kLogSectorSize, 2 * kLogSectorSize),
               LogUpdate::Data(kBatOffset, BatSector({{1, f.Block(1)}})),
               LogUpdate::Zero(30 * kMiB, 2 * kMiB)},
              32 * kMiB);
  WriteEntry(f.path, 0, entry);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({0, 2, 0, 0}, 32 * kMiB));
  EXPECT_EQ(ReadFileBytes(f.path, kBatOffset + kLogSectorSize, kLogSectorSize),
            std::vector<std::byte>(kLogSectorSize));
}

TEST(VhdxLogReplay, ExtendsTheFileToLastFileOffset) {
  DirtyFixture f;
  // The head entry says every structure fits below 40 MiB: a read-only open sees the missing
  // tail as zeros, a read-write open extends the file.
  const auto entry =
      f.Entry(1, 0,
              {LogUpdate::Data(kBatOffset,
                               BatSector({{3, MakeBatEntry(kPayloadFullyPresent, 30 * kMiB)}}))},
              40 * kMiB);
  WriteEntry(f.path, 0, entry);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({0, 0, 0, 0}, 40 * kMiB));
  EXPECT_EQ(fs::file_size(f.path), 40 * kMiB);
}

TEST(VhdxLogReplay, EntriesOfAnotherLogAreIgnored) {
  DirtyFixture f;
  const Guid other = Guid::Random();
  const auto mine = f.Entry(1, 0, {LogUpdate::Data(kBatOffset, BatSector({{0, f.Block(0)}}))});
  WriteEntry(f.path, 0, mine);
  // Newer, but written under another LogGuid (§2.3.2 note <4>).
  const auto foreign =
      f.Entry(2, static_cast<std::uint32_t>(mine.size()),
              {LogUpdate::Data(kBatOffset, BatSector({{1, f.Block(1)}}))}, 28 * kMiB, &other);
  WriteEntry(f.path, static_cast<std::uint32_t>(mine.size()), foreign);
  SetLogGuid(f.path, f.log_guid);
  ASSERT_NO_FATAL_FAILURE(f.Check({1, 0, 0, 0}));
}

TEST(VhdxLogReplay, FindActiveSequencePicksTheNewestCompleteSequence) {
  const Guid guid = Guid::Random();
  std::vector<std::byte> log(64 * 1024);
  auto put = [&](std::uint32_t at, std::uint64_t seq, std::uint32_t tail, std::uint8_t fill) {
    const auto e =
        BuildLogEntry(guid, seq, tail,
                      std::vector<LogUpdate>{LogUpdate::Data(
                          kMiB, std::vector<std::byte>(kLogSectorSize, std::byte{fill}))},
                      kMiB, 2 * kMiB);
    std::copy(e.begin(), e.end(), log.begin() + at);
    return static_cast<std::uint32_t>(e.size());
  };
  std::uint32_t at = 0;
  at += put(at, 10, 0, 1);
  at += put(at, 11, 0, 2);
  put(at, 12, 0, 3);
  put(40960, 13, 8192 /* not part of its own run */, 4);
  const LogScan scan = FindActiveSequence(log, guid);
  ASSERT_TRUE(scan.active.has_value());
  EXPECT_EQ(scan.active->head_sequence_number, 12u);
  EXPECT_EQ(scan.active->entry_count, 3u);
  ASSERT_EQ(scan.active->updates.size(), 3u);
  EXPECT_EQ(scan.active->updates.back().data[100], std::byte{3});
  EXPECT_EQ(scan.active->tail_position, 0u);
  EXPECT_EQ(scan.active->end_position, 3 * 8192u);
  // No valid entry at all.
  std::vector<std::byte> empty(64 * 1024);
  EXPECT_FALSE(FindActiveSequence(empty, guid).active.has_value());
}

// --- our writer under crashes ------------------------------------------------------------------

using vdisk_testing::CrashingOpener;
using vdisk_testing::CrashPoints;

// One step of a writer's workload: a write of `length` bytes of `seed`'s pattern at `offset`,
// or (length 0) user metadata item kItem set to a value derived from `seed`.
struct Step {
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t seed = 0;
};
const Guid kItem = MakeGuid(0x12345678, 0x9abc, 0xdef0, {1, 2, 3, 4, 5, 6, 7, 8});

std::vector<std::byte> StepBytes(const Step& s) {
  std::vector<std::byte> out(s.length != 0 ? s.length : 24 + s.seed % 3000);
  std::mt19937_64 rng(s.seed);
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
  }
  return out;
}

// 4 KiB aligned writes of 4 KiB..192 KiB (a third crossing a 1 MiB block boundary) and, every
// fourth step, a metadata update.
class Workload {
 public:
  Workload(std::uint64_t seed, std::uint64_t disk_size) : rng_(seed), size_(disk_size) {}
  Step Next() {
    Step s;
    s.seed = rng_();
    if (count_++ % 4 == 3) return s;
    const std::uint64_t units = rng_() % 48 + 1;
    s.length = static_cast<std::uint32_t>(units * 4096);
    if (count_ % 3 == 0 && units >= 2) {
      const std::uint64_t boundary = (rng_() % (size_ / kMiB - 1) + 1) * kMiB;
      s.offset = boundary - (rng_() % (units - 1) + 1) * 4096;
    } else {
      s.offset = (rng_() % ((size_ - s.length) / 4096 + 1)) * 4096;
    }
    return s;
  }

 private:
  std::mt19937_64 rng_;
  std::uint64_t size_;
  std::uint64_t count_ = 0;
};

// `from_file`: data steps go through Image::WriteFromFile from a memory file (the data step is
// then the CopyFrom fall-back's WriteAt, which a crashing file counts).
Status Apply(VirtualDisk& disk, const Step& s, bool from_file = false) {
  if (s.length == 0) return disk.top().SetUserMetadata(kItem, StepBytes(s));
  if (from_file) {
    platform::MemoryFile staging(StepBytes(s));
    auto copied = disk.top().WriteFromFile(s.offset, s.length, staging, 0);
    return copied.ok() ? Status::Ok() : copied.status();
  }
  return disk.Write(s.offset, StepBytes(s));
}

// What the disk and kItem should hold after `acknowledged` steps.
struct Expectation {
  std::vector<std::byte> data;
  std::vector<std::byte> item;  // empty: no item yet
  bool has_item = false;
};

void ApplyToModel(Expectation& model, const Step& s) {
  const auto bytes = StepBytes(s);
  if (s.length == 0) {
    model.item = bytes;
    model.has_item = true;
  } else {
    std::copy(bytes.begin(), bytes.end(),
              model.data.begin() + static_cast<std::ptrdiff_t>(s.offset));
  }
}

std::string CheckItem(VirtualDisk& disk, const Expectation& model, const Step* in_flight);

// Checks `disk` against `model`, allowing the in-flight step to have happened or not (byte by
// byte for data, whole for the item).
std::string CheckModel(VirtualDisk& disk, const Expectation& model, const Step* in_flight) {
  // The crash sweeps call this a few hundred times per case: one buffer serves every call (a
  // new one each time cost a fresh mapping and its page faults, most of the sweeps' time under
  // the sanitizers and Wine), and equal chunks are compared with memcmp.
  const std::size_t size = model.data.size();
  static thread_local std::vector<std::byte> actual;
  actual.resize(size);
  const Status status = disk.Read(0, actual);
  if (!status.ok()) return "read: " + std::string(status.message());
  std::vector<std::byte> fresh;
  if (in_flight != nullptr && in_flight->length != 0) fresh = StepBytes(*in_flight);
  constexpr std::size_t kChunk = 4096;
  for (std::size_t at = 0; at < size; at += kChunk) {
    const std::size_t n = std::min(kChunk, size - at);
    if (std::memcmp(actual.data() + at, model.data.data() + at, n) == 0) continue;
    for (std::size_t i = at; i < at + n; ++i) {
      if (actual[i] == model.data[i]) continue;
      if (!fresh.empty() && i >= in_flight->offset && i < in_flight->offset + fresh.size() &&
          actual[i] == fresh[i - in_flight->offset]) {
        continue;
      }
      return "byte " + std::to_string(i) + " differs from every acknowledged state";
    }
  }
  return CheckItem(disk, model, in_flight);
}

std::string CheckItem(VirtualDisk& disk, const Expectation& model, const Step* in_flight) {
  auto item = disk.top().GetUserMetadata(kItem);
  const bool may_be_new = in_flight != nullptr && in_flight->length == 0;
  if (!item.ok()) {
    if (item.status().code() == Code::kNotFound && !model.has_item) return "ok";
    return "metadata item: " + std::string(item.status().message());
  }
  if (model.has_item && *item == model.item) return "ok";
  if (may_be_new && *item == StepBytes(*in_flight)) return "ok";
  return "metadata item holds neither the acknowledged nor the in-flight value";
}

void CrashSweep(bool differencing, bool from_file = false) {
  constexpr std::uint64_t kSize = 6 * kMiB;
  bool saw_torn_metadata = false;
  // Reused by every crash point (see CheckModel).
  Expectation model;
  std::vector<std::byte> all(kSize);
  for (int budget = 0;; ++budget) {
    SCOPED_TRACE("crash after " + std::to_string(budget) + " file writes");
    TempDir dir;
    fs::path path = dir / "disk.vhdx";
    ASSERT_NO_FATAL_FAILURE(CreateDisk(dir / "base.vhdx", kSize, kMiB));
    model.data.assign(kSize, std::byte{0});
    model.item.clear();
    model.has_item = false;
    if (differencing) {
      auto base = Open(dir / "base.vhdx", false);
      ASSERT_TRUE(base.ok());
      Workload seed_writes(99, kSize);
      for (int i = 0; i < 6; ++i) {
        Step s = seed_writes.Next();
        if (s.length == 0) continue;
        ASSERT_TRUE(Apply(**base, s).ok());
        ApplyToModel(model, s);
      }
      base->reset();
      path = dir / "child.avhdx";
      ASSERT_NO_FATAL_FAILURE(CreateDisk(path, 0, kMiB, dir / "base.vhdx"));
    } else {
      path = dir / "base.vhdx";
    }
    bool crashed = false;
    std::optional<Step> in_flight;
    {
      CrashingOpener opener(budget, CrashPoints::kWritesAndResizes);
      auto disk = Open(path, /*read_only=*/false);
      if (disk.ok()) {
        Workload work(7, kSize);
        for (int i = 0; i < 12; ++i) {
          const Step s = work.Next();
          if (!Apply(**disk, s, from_file).ok()) {
            in_flight = s;
            break;
          }
          ApplyToModel(model, s);
        }
      }
      crashed = opener.crashed();
    }
    if (in_flight && in_flight->length == 0) saw_torn_metadata = true;
    {
      auto disk = Open(path);
      ASSERT_TRUE(disk.ok()) << "read-only after the crash: " << disk.status().message();
      ASSERT_EQ(CheckModel(**disk, model, in_flight ? &*in_flight : nullptr), "ok")
          << "read-only after the crash";
    }
    {
      auto disk = Open(path, /*read_only=*/false);
      ASSERT_TRUE(disk.ok()) << "read-write after the crash: " << disk.status().message();
      ASSERT_EQ(CheckModel(**disk, model, in_flight ? &*in_flight : nullptr), "ok")
          << "read-write after the crash";
      // Settle the in-flight step and continue writing.
      ASSERT_TRUE((*disk)->Read(0, all).ok());
      model.data = all;
      auto item = (*disk)->top().GetUserMetadata(kItem);
      model.has_item = item.ok();
      if (item.ok()) model.item = *item;
      Workload more(11, kSize);
      for (int i = 0; i < 5; ++i) {
        const Step s = more.Next();
        ASSERT_TRUE(Apply(**disk, s).ok());
        ApplyToModel(model, s);
      }
    }
    auto disk = Open(path);
    ASSERT_TRUE(disk.ok()) << disk.status().message();
    ASSERT_EQ(CheckModel(**disk, model, nullptr), "ok") << "after writes following the crash";
    EXPECT_TRUE(CurrentHeader(path).log_guid.is_zero());
    if (!crashed || ::testing::Test::HasFailure()) {
      EXPECT_GT(budget, 40) << "the workload should have taken many writes";
      EXPECT_TRUE(saw_torn_metadata) << "no crash hit a metadata update";
      break;
    }
  }
}

TEST(VhdxCrashSafety, DynamicDiskSurvivesACrashAtAnyWrite) { CrashSweep(false); }
TEST(VhdxCrashSafety, DifferencingDiskSurvivesACrashAtAnyWrite) { CrashSweep(true); }
TEST(VhdxCrashSafety, WriteFromFileOnADynamicDiskSurvivesACrashAtAnyWrite) {
  CrashSweep(false, /*from_file=*/true);
}
TEST(VhdxCrashSafety, WriteFromFileOnADifferencingDiskSurvivesACrashAtAnyWrite) {
  CrashSweep(true, /*from_file=*/true);
}

std::string FindTool(const char* name) { return vdisk_unit::HostTool(name); }

int RunTool(const std::string& command) { return vdisk_unit::HostShell(command); }

// The child process of the kill test: runs the workload of `seed` until killed, appending the
// index of each acknowledged step to `journal` (flushed to the OS per line, without fsync: a
// process kill loses nothing the kernel has). The journal exists before the disk is opened.
[[noreturn]] void RunWriter(const fs::path& image, const fs::path& journal, std::uint64_t seed,
                            std::uint64_t size) {
  std::FILE* out = std::fopen(journal.string().c_str(), "ab");
  if (out == nullptr) std::_Exit(2);
  std::fflush(out);
  auto disk = Open(image, /*read_only=*/false);
  if (!disk.ok()) std::_Exit(3);
  Workload work(seed, size);
  for (std::uint64_t i = 0;; ++i) {
    if (!Apply(**disk, work.Next()).ok()) std::_Exit(4);
    if (std::fprintf(out, "%llu\n", static_cast<unsigned long long>(i)) < 0 ||
        std::fflush(out) != 0)
      std::_Exit(5);
  }
}

// The writer as a process of its own, and its kill: fork and SIGKILL on Linux; on Windows this
// program again, running only the case VhdxCrashSafety.WriterChild with the writer's arguments
// in the environment, and TerminateProcess.
#ifdef _WIN32
constexpr const char* kWriterVariable = "VIRTDISK_KILLED_WRITER";
constexpr DWORD kKilledCode = 137;

struct Writer {
  HANDLE process = nullptr;
  fs::path output;  // the child's standard output and error
};

Writer StartWriter(const fs::path& image, const fs::path& journal, std::uint64_t seed,
                   std::uint64_t size) {
  const std::string spec = image.string() + "|" + journal.string() + "|" + std::to_string(seed) +
                           "|" + std::to_string(size);
  SetEnvironmentVariableA(kWriterVariable, spec.c_str());
  std::vector<wchar_t> self(32768);
  GetModuleFileNameW(nullptr, self.data(), static_cast<DWORD>(self.size()));
  std::wstring command = L"\"" + std::wstring(self.data()) +
                         L"\" --gtest_filter=VhdxCrashSafety.WriterChild";
  // The child's test output is not this test's: it goes to a file, shown if the child ends by
  // itself.
  const fs::path output = journal.string() + ".out";
  SECURITY_ATTRIBUTES inheritable{sizeof inheritable, nullptr, TRUE};
  HANDLE null = CreateFileW(L"NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &inheritable,
                            OPEN_EXISTING, 0, nullptr);
  HANDLE out = CreateFileW(output.c_str(), GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                           &inheritable, CREATE_ALWAYS, 0, nullptr);
  STARTUPINFOW startup{};
  startup.cb = sizeof startup;
  startup.dwFlags = STARTF_USESTDHANDLES;
  startup.hStdInput = null;
  startup.hStdOutput = startup.hStdError = out;
  PROCESS_INFORMATION info{};
  const BOOL started = CreateProcessW(self.data(), command.data(), nullptr, nullptr, TRUE, 0,
                                      nullptr, nullptr, &startup, &info);
  CloseHandle(null);
  CloseHandle(out);
  SetEnvironmentVariableA(kWriterVariable, nullptr);
  if (!started) return {};
  CloseHandle(info.hThread);
  return {info.hProcess, output};
}

// Kills the writer; how it ended: "killed" if it was still running (it must not end by itself),
// else its exit code.
std::string KillWriter(Writer& writer) {
  TerminateProcess(writer.process, kKilledCode);
  WaitForSingleObject(writer.process, INFINITE);
  DWORD code = 0;
  GetExitCodeProcess(writer.process, &code);
  CloseHandle(writer.process);
  if (code == kKilledCode) return "killed";
  std::ifstream in(writer.output, std::ios::binary);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return "exit code " + std::to_string(code) + ", output:\n" + output;
}

TEST(VhdxCrashSafety, WriterChild) {
  const char* spec = std::getenv(kWriterVariable);
  if (spec == nullptr) GTEST_SKIP() << "the writer process of WriterKilledWithSigkill...";
  std::vector<std::string> parts;
  std::string rest = spec;
  for (std::size_t bar; (bar = rest.find('|')) != std::string::npos; rest.erase(0, bar + 1))
    parts.push_back(rest.substr(0, bar));
  parts.push_back(rest);
  if (parts.size() != 4) std::_Exit(6);
  RunWriter(parts[0], parts[1], std::stoull(parts[2]), std::stoull(parts[3]));
}
#else
struct Writer {
  pid_t pid = -1;
};

Writer StartWriter(const fs::path& image, const fs::path& journal, std::uint64_t seed,
                   std::uint64_t size) {
  const pid_t pid = ::fork();
  if (pid == 0) RunWriter(image, journal, seed, size);
  return {pid};
}

std::string KillWriter(Writer& writer) {
  ::kill(writer.pid, SIGKILL);
  int status = 0;
  while (::waitpid(writer.pid, &status, 0) < 0) {
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return "killed";
  return WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                           : "signal " + std::to_string(WTERMSIG(status));
}
#endif

std::uint64_t CountJournal(const fs::path& journal) {
  std::ifstream in(journal);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
}

using vdisk_testing::kSanitized;

TEST(VhdxCrashSafety, WriterKilledWithSigkillLeavesAConsistentFile) {
  const std::string qemu_img = FindTool("qemu-img");
  if (qemu_img.empty() && vdisk_unit::OraclesRequired())
    FAIL() << "qemu-img is not installed (VIRTDISK_REQUIRE_ORACLES=1 makes this a failure)";
  constexpr std::uint64_t kSize = 16 * kMiB;
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(CreateDisk(dir / "template.vhdx", kSize, kMiB));
  ASSERT_NO_FATAL_FAILURE(CreateDisk(dir / "base.vhdx", kSize, 2 * kMiB));
  Expectation base_model;
  base_model.data.resize(kSize);
  {
    auto base = Open(dir / "base.vhdx", false);
    ASSERT_TRUE(base.ok());
    Workload w(1234, kSize);
    for (int i = 0; i < 20; ++i) {
      const Step s = w.Next();
      ASSERT_TRUE(Apply(**base, s).ok());
      ApplyToModel(base_model, s);
    }
  }
  ASSERT_NO_FATAL_FAILURE(CreateDisk(dir / "child-template.avhdx", 0, kMiB, dir / "base.vhdx"));

  std::mt19937_64 rng(0xC0FFEE);
  int trials = 0, killed_mid_run = 0, dirty_logs = 0, qemu_replays = 0, in_flight_metadata = 0;
  std::uint64_t acknowledged = 0;
  const auto start = std::chrono::steady_clock::now();
  // Fewer under the sanitizers (several times slower) and under Wine, where each trial starts a
  // Windows process (about 0.6 s); the plain Linux build runs 60.
#ifdef _WIN32
  constexpr int kPlainTrials = 24;
#else
  constexpr int kPlainTrials = 60;
#endif
  const int kTrials = kSanitized ? 20 : kPlainTrials;
  for (int trial = 0; trial < kTrials; ++trial) {
    const bool differencing = trial % 3 == 2;  // qemu cannot open differencing VHDX files
    SCOPED_TRACE("trial " + std::to_string(trial) + (differencing ? " (differencing)" : ""));
    const fs::path image = dir / (differencing ? "child.avhdx" : "disk.vhdx");
    const fs::path journal = dir / "journal";
    fs::remove(image);  // (mingw's copy_file cannot overwrite)
    fs::copy_file(dir / (differencing ? "child-template.avhdx" : "template.vhdx"), image);
    fs::remove(journal);
    const std::uint64_t seed = rng();
    // A quarter of the kills land early (open, the first header updates, the first entries:
    // the kill follows the journal's creation); the others once the writer has acknowledged a
    // random number of steps, in the step that follows, so that the test adapts to the speed of
    // the machine's flushes. The writer announces its progress only in its journal, which the
    // test polls.
    const bool early = trial % 4 == 0;
    const std::uint64_t wait_for_steps = early ? 0 : 1 + rng() % 40;
    Writer writer = StartWriter(image, journal, seed, kSize);
    // The writer has started once its journal exists (a Windows process takes a while to start;
    // a forked one does not). The bounds only keep a broken writer from hanging the test.
    vdisk_testing::WaitUntil([&] { return fs::exists(journal); }, std::chrono::seconds(30));
    if (wait_for_steps > 0) {
      vdisk_testing::WaitUntil([&] { return CountJournal(journal) >= wait_for_steps; },
                               std::chrono::seconds(3));
    }
    // The writer's own exits: 2 journal, 3 open, 4 write, 5 journal write, 6 arguments.
    ASSERT_EQ(KillWriter(writer), "killed") << "the writer ended by itself";
    ++trials;

    const std::uint64_t done = CountJournal(journal);
    acknowledged += done;
    if (done > 0) ++killed_mid_run;
    Expectation model;
    model.data = differencing ? base_model.data : std::vector<std::byte>(kSize);
    Workload replay(seed, kSize);
    for (std::uint64_t i = 0; i < done; ++i) ApplyToModel(model, replay.Next());
    const Step in_flight = replay.Next();
    if (in_flight.length == 0) ++in_flight_metadata;
    SCOPED_TRACE(std::to_string(done) + " acknowledged steps" +
                 (early ? ", killed once the journal existed" : ""));

    // Our reader first, read-only: replays in memory and changes nothing.
    const auto before = ReadFile(image);
    const bool dirty = !CurrentHeader(image).log_guid.is_zero();
    dirty_logs += dirty;
    std::vector<std::byte> ours(kSize);
    {
      auto disk = Open(image);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      ASSERT_EQ(CheckModel(**disk, model, &in_flight), "ok") << "read-only after the kill";
      ASSERT_TRUE((*disk)->Read(0, ours).ok());
    }
    ASSERT_TRUE(ReadFile(image) == before) << "the read-only open changed the file";
    const fs::path raw = dir / "ours.raw";
    {
      std::ofstream out(raw, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(ours.data()),
                static_cast<std::streamsize>(ours.size()));
    }

    // qemu replays the same log to the same content.
    if (!qemu_img.empty() && !differencing && dirty) {
      const fs::path copy = dir / "qemu-copy.vhdx";
      fs::remove(copy);
      fs::copy_file(image, copy);
      ASSERT_EQ(RunTool(qemu_img + " check -r all -f vhdx " + vdisk_unit::ShellQuote(copy)), 0)
          << "qemu-img check -r all (replays our log)";
      EXPECT_EQ(RunTool(qemu_img + " compare -f vhdx -F raw " + vdisk_unit::ShellQuote(copy) +
                        " " + vdisk_unit::ShellQuote(raw)),
                0)
          << "qemu's replay differs from ours";
      ++qemu_replays;
    }

    // A read-write open replays into the file; then the file is clean for everyone.
    {
      auto disk = Open(image, /*read_only=*/false);
      ASSERT_TRUE(disk.ok()) << disk.status().message();
      ASSERT_EQ(CheckModel(**disk, model, &in_flight), "ok") << "read-write after the kill";
    }
    EXPECT_TRUE(CurrentHeader(image).log_guid.is_zero());
    if (!qemu_img.empty() && !differencing) {
      EXPECT_EQ(RunTool(qemu_img + " check -f vhdx " + vdisk_unit::ShellQuote(image)), 0)
          << "qemu-img check after our replay";
      const fs::path raw = dir / "ours.raw";
      EXPECT_EQ(RunTool(qemu_img + " compare -f vhdx -F raw " + vdisk_unit::ShellQuote(image) +
                        " " + vdisk_unit::ShellQuote(raw)),
                0)
          << "qemu reads what we read";
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ KILL     ] %d trials in %.1f s: %d killed after >= 1 acknowledged step, %llu "
      "acknowledged steps, %d dirty logs (%d replayed by qemu too), %d killed with a "
      "metadata update in flight\n",
      trials, seconds, killed_mid_run, static_cast<unsigned long long>(acknowledged), dirty_logs,
      qemu_replays, in_flight_metadata);
  EXPECT_EQ(trials, kTrials);
  EXPECT_GE(killed_mid_run, trials / 2) << "most kills should land after the writer started";
  EXPECT_GE(dirty_logs, trials / 2) << "most kills should leave a log to replay";
}

}  // namespace
}  // namespace vdisk
