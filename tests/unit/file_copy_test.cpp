// File::CopyFrom (copy_file_range with its fall-back through memory) and File::FindData
// (SEEK_DATA/SEEK_HOLE) on OS files and on wrappers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "platform/fault_file.h"
#include "platform/file.h"
#include "platform/memory_file.h"
#include "test_support.h"

namespace vdisk::platform {
namespace {

namespace fs = std::filesystem;
using vdisk_unit::TempDir;

std::vector<std::byte> RandomBytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

std::unique_ptr<File> MustCreate(const fs::path& path, std::span<const std::byte> contents) {
  auto file = OpenOsFile(path, FileAccess::kReadWrite, FileDisposition::kCreateNew);
  if (!file.ok()) {
    ADD_FAILURE() << file.status().message();
    return nullptr;
  }
  if (!contents.empty()) EXPECT_TRUE((*file)->WriteAt(0, contents).ok());
  return std::move(*file);
}

std::vector<std::byte> ReadAll(File& file) {
  auto size = file.Size();
  EXPECT_TRUE(size.ok());
  std::vector<std::byte> out(size.ok() ? static_cast<std::size_t>(size.value()) : 0);
  EXPECT_TRUE(file.ReadAt(0, out).ok());
  return out;
}

TEST(FileCopyFrom, CopiesARangeInTheKernelOnOneFilesystem) {
  TempDir dir;
  const auto data = RandomBytes(3 << 20, 1);
  auto source = MustCreate(dir / "source", data);
  auto target = MustCreate(dir / "target", {});
  ASSERT_TRUE(source && target);
  auto method = target->CopyFrom(*source, 4096, 1 << 20, (2 << 20) + 512);
  ASSERT_TRUE(method.ok()) << method.status().message();
#ifdef __linux__
  ASSERT_TRUE(target->CanCopyInKernelFrom(*source));
  EXPECT_EQ(*method, CopyMethod::kKernel);
#else
  EXPECT_EQ(*method, CopyMethod::kBuffered);
#endif
  const auto copied = ReadAll(*target);
  ASSERT_EQ(copied.size(), (1u << 20) + (2u << 20) + 512);
  EXPECT_TRUE(std::equal(copied.begin() + (1 << 20), copied.end(), data.begin() + 4096));
  EXPECT_TRUE(std::all_of(copied.begin(), copied.begin() + (1 << 20), [](std::byte b) {
    return b == std::byte{0};
  })) << "the bytes before the copy are a hole that reads as zeros";
}

TEST(FileCopyFrom, AcrossFilesystemsFallsBackToACopyThroughMemory) {
  // /dev/shm is tmpfs on Linux: copy_file_range between it and the temporary directory's
  // filesystem answers EXDEV.
  std::error_code ec;
  const fs::path shm = "/dev/shm";
  if (!fs::is_directory(shm, ec)) GTEST_SKIP() << "no /dev/shm";
  TempDir dir;
  const fs::path source_path = shm / ("vdisk_copy_test_" + std::to_string(std::random_device{}()));
  const auto data = RandomBytes(5 << 20, 2);
  auto source = MustCreate(source_path, data);
  ASSERT_TRUE(source);
  auto target = MustCreate(dir / "target", {});
  ASSERT_TRUE(target);
  const bool same_filesystem = target->CanCopyInKernelFrom(*source);
  auto method = target->CopyFrom(*source, 0, 0, data.size());
  source.reset();
  fs::remove(source_path, ec);
  ASSERT_TRUE(method.ok()) << method.status().message();
  EXPECT_TRUE(ReadAll(*target) == data);
  if (same_filesystem) GTEST_SKIP() << "/dev/shm is on the temporary directory's filesystem";
  if (*method == CopyMethod::kKernel) {
    GTEST_SKIP() << "this kernel copies between these two filesystems itself (5.3 to 5.18)";
  }
  EXPECT_EQ(*method, CopyMethod::kBuffered);
}

TEST(FileCopyFrom, AWrappedSourceIsReadThroughItsReadAt) {
  TempDir dir;
  const auto data = RandomBytes(3 << 20, 3);
  auto plain = MustCreate(dir / "source", data);
  auto target = MustCreate(dir / "target", {});
  ASSERT_TRUE(plain && target);
  FaultPlan plan;
  plan.fail_read_at = 2;  // the second 1 MiB piece
  FaultInjectingFile source(std::move(plain), plan);
  EXPECT_FALSE(target->CanCopyInKernelFrom(source));
  auto method = target->CopyFrom(source, 0, 0, data.size());
  ASSERT_FALSE(method.ok()) << "the injected fault must be seen";
  EXPECT_EQ(method.status().code(), Code::kIoError) << method.status().message();
}

TEST(FileCopyFrom, AMemoryFileCopiesThroughMemory) {
  TempDir dir;
  const auto data = RandomBytes((1 << 20) + 4096, 4);
  MemoryFile source(data);
  auto target = MustCreate(dir / "target", {});
  ASSERT_TRUE(target);
  auto method = target->CopyFrom(source, 0, 0, data.size());
  ASSERT_TRUE(method.ok()) << method.status().message();
  EXPECT_EQ(*method, CopyMethod::kBuffered);
  EXPECT_TRUE(ReadAll(*target) == data);
}

TEST(FileCopyFrom, CopyingPastTheEndOfTheSourceFailsAsReadAtDoes) {
  TempDir dir;
  const auto data = RandomBytes(64 << 10, 5);
  auto source = MustCreate(dir / "source", data);
  auto target = MustCreate(dir / "target", {});
  ASSERT_TRUE(source && target);
  auto method = target->CopyFrom(*source, 32 << 10, 0, 64 << 10);
  ASSERT_FALSE(method.ok());
  EXPECT_EQ(method.status().code(), Code::kFileCorrupt) << method.status().message();
}

TEST(FileFindData, FindsTheDataBetweenHoles) {
  TempDir dir;
  auto file = MustCreate(dir / "sparse", {});
  ASSERT_TRUE(file);
  const auto data = RandomBytes(64 << 10, 6);
  ASSERT_TRUE(file->WriteAt(1 << 20, data).ok());
  ASSERT_TRUE(file->WriteAt(4 << 20, data).ok());
  ASSERT_TRUE(file->Resize(8 << 20).ok());
  const std::uint64_t end = 8 << 20;
  auto first = file->FindData(0, end);
  ASSERT_TRUE(first.ok()) << first.status().message();
  if (first->begin == 0 && first->end == end) {
    GTEST_SKIP() << "this filesystem does not report holes";
  }
  EXPECT_EQ(first->begin, 1u << 20);
  EXPECT_EQ(first->end, (1u << 20) + (64u << 10));
  auto second = file->FindData(first->end, end);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->begin, 4u << 20);
  EXPECT_EQ(second->end, (4u << 20) + (64u << 10));
  auto none = file->FindData(second->end, end);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << none->begin << ".." << none->end;
  // A range that ends inside data is cut there.
  auto cut = file->FindData(0, (1 << 20) + 4096);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->begin, 1u << 20);
  EXPECT_EQ(cut->end, (1u << 20) + 4096);
}

TEST(FileFindData, FilesThatCannotTellAnswerTheWholeRange) {
  MemoryFile file(std::vector<std::byte>(1 << 20));
  auto range = file.FindData(4096, 65536);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->begin, 4096u);
  EXPECT_EQ(range->end, 65536u);
}

}  // namespace
}  // namespace vdisk::platform
