// core/merge.h over real VHD and VHDX chains, and the format pieces a merge relies on: a
// cancelled merge leaves the chain as it was and a second one completes it; a VHDX target keeps
// its DataWriteGuid; VHD SetParentLocation and SetUniqueId persist.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/merge.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhdx/vhdx_image.h"
#include "test_support.h"

namespace vdisk {
namespace {

// Neither cancels nor watches progress.
CallbackControl quiet;

namespace fs = std::filesystem;
using vdisk_unit::TempDir;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kSize = 16 * kMiB;

std::unique_ptr<VirtualDisk> MustCreate(const fs::path& path, DiskFormat format,
                                        const fs::path& parent = {}) {
  DiskCreateRequest request;
  request.path = path;
  request.format = format;
  request.options.virtual_size = parent.empty() ? kSize : 0;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(BuiltinProviders(), request);
  EXPECT_TRUE(disk.ok()) << (disk.ok() ? "" : std::string(disk.status().message()));
  return disk.ok() ? std::move(disk).value() : nullptr;
}

void WriteFill(VirtualDisk& disk, std::uint64_t offset, std::uint64_t length, std::uint8_t byte) {
  std::vector<std::byte> data(length, std::byte{byte});
  ASSERT_TRUE(disk.Write(offset, data).ok());
}

std::vector<std::byte> ReadAll(const fs::path& path) {
  DiskOpenRequest request;
  request.path = path;
  auto disk = VirtualDisk::Open(BuiltinProviders(), request);
  EXPECT_TRUE(disk.ok()) << (disk.ok() ? "" : std::string(disk.status().message()));
  if (!disk.ok()) return {};
  std::vector<std::byte> data((*disk)->size());
  EXPECT_TRUE((*disk)->Read(0, data).ok());
  return data;
}

class MergeCore : public ::testing::TestWithParam<DiskFormat> {
 protected:
  fs::path File(const std::string& stem) const {
    return dir_ / (stem + (GetParam() == DiskFormat::kVhd ? ".vhd" : ".vhdx"));
  }
  void MakeChain() {
    auto base = MustCreate(File("base"), GetParam());
    ASSERT_NE(base, nullptr);
    WriteFill(*base, 0, 8 * kMiB, 0x11);
    base.reset();
    auto child = MustCreate(File("child"), GetParam(), File("base"));
    ASSERT_NE(child, nullptr);
    for (std::uint64_t at = kMiB / 2; at + kMiB <= kSize; at += 3 * kMiB)
      WriteFill(*child, at, kMiB, 0x22);
  }
  TempDir dir_;
};

TEST_P(MergeCore, CancelledMergeLeavesTheChainAsBeforeAndASecondOneCompletes) {
  MakeChain();
  const auto before = ReadAll(File("child"));
  const auto base_before = ReadAll(File("base"));
  ASSERT_NE(before, base_before);
  DiskOpenRequest request;
  request.path = File("child");
  request.options.read_only = false;
  auto open = OpenDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(open.ok());
  int windows = 0;
  CallbackControl control;
  control.stop_when = [&windows] { return windows >= 1; };
  control.on_progress = [&windows](std::uint64_t, std::uint64_t) { ++windows; };
  const Status cancelled = MergeDisk(**open, BuiltinProviders(), {0, 1}, control);
  EXPECT_EQ(cancelled.code(), Code::kOperationAborted) << cancelled.message();
  EXPECT_EQ(windows, 1);
  std::vector<std::byte> through_handle(kSize);
  ASSERT_TRUE((*open)->disk()->Read(0, through_handle).ok()) << "the disk is open again";
  EXPECT_EQ(through_handle, before);
  open = Status::Ok();  // closes the disk
  EXPECT_EQ(ReadAll(File("child")), before);
  EXPECT_NE(ReadAll(File("base")), before) << "the first window only was merged";

  open = OpenDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE(MergeDisk(**open, BuiltinProviders(), {0, 1}, quiet).ok());
  open = Status::Ok();
  EXPECT_EQ(ReadAll(File("base")), before);
  EXPECT_EQ(ReadAll(File("child")), before);
}

TEST_P(MergeCore, RefusesDepthsOutsideTheChain) {
  MakeChain();
  DiskOpenRequest request;
  request.path = File("child");
  request.options.read_only = false;
  auto open = OpenDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(MergeDisk(**open, BuiltinProviders(), {0, 2}, quiet).code(), Code::kInvalidParameter);
  EXPECT_EQ(MergeDisk(**open, BuiltinProviders(), {1, 1}, quiet).code(), Code::kInvalidParameter);
}

INSTANTIATE_TEST_SUITE_P(Formats, MergeCore, ::testing::Values(DiskFormat::kVhd, DiskFormat::kVhdx),
                         [](const auto& info) {
                           return std::string(info.param == DiskFormat::kVhd ? "Vhd" : "Vhdx");
                         });

TEST(VhdxMergeTarget, KeepsItsDataWriteGuidSoThatChildrenStillMatch) {
  TempDir dir;
  MustCreate(dir / "p.vhdx", DiskFormat::kVhdx).reset();
  Guid linkage;
  {
    DiskOpenRequest request;
    request.path = dir / "p.vhdx";
    auto disk = VirtualDisk::Open(BuiltinProviders(), request);
    ASSERT_TRUE(disk.ok());
    linkage = (*disk)->top().unique_id();
  }
  auto file = platform::OpenFile(dir / "p.vhdx", platform::FileAccess::kReadWrite);
  ASSERT_TRUE(file.ok());
  OpenOptions options;
  options.read_only = false;
  options.keep_data_write_guid = true;
  auto image = vhdx::VhdxImage::Open(std::move(file).value(), options);
  ASSERT_TRUE(image.ok());
  std::vector<std::byte> data(kMiB, std::byte{0x5a});
  ASSERT_TRUE((*image)->Write(0, data).ok());
  EXPECT_EQ((*image)->data_write_guid(), linkage);

  OpenOptions plain;
  plain.read_only = false;
  image = Status::Ok();
  auto again = vhdx::VhdxImage::Open(
      std::move(platform::OpenFile(dir / "p.vhdx", platform::FileAccess::kReadWrite)).value(),
      plain);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Write(0, data).ok());
  EXPECT_NE((*again)->data_write_guid(), linkage) << "without the option a write changes it";
}

TEST(VhdSetInformation, ParentLocationAndIdentifierPersist) {
  TempDir dir;
  MustCreate(dir / "p.vhd", DiskFormat::kVhd).reset();
  MustCreate(dir / "c.vhd", DiskFormat::kVhd, dir / "p.vhd").reset();
  fs::copy_file(dir / "p.vhd", dir / "moved.vhd");
  fs::remove(dir / "p.vhd");
  const Guid id = Guid::Random();
  {
    DiskOpenRequest request;
    request.path = dir / "c.vhd";
    request.options.read_only = false;
    request.no_parents = true;
    auto child = VirtualDisk::Open(BuiltinProviders(), request);
    ASSERT_TRUE(child.ok());
    request.path = dir / "moved.vhd";
    request.options.read_only = true;
    auto parent = VirtualDisk::Open(BuiltinProviders(), request);
    ASSERT_TRUE(parent.ok());
    ASSERT_TRUE((*child)->top().SetParentLocation(dir / "moved.vhd", (*parent)->top()).ok());
    ASSERT_TRUE((*child)->top().SetUniqueId(id).ok());
    EXPECT_EQ((*child)->top().SetPhysicalSectorSize(4096).code(), Code::kNotSupported);
    EXPECT_TRUE((*child)->top().SetPhysicalSectorSize(512).ok());
  }
  DiskOpenRequest request;
  request.path = dir / "c.vhd";
  auto chain = VirtualDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(chain.ok()) << chain.status().message();
  ASSERT_EQ((*chain)->chain().size(), 2u);
  EXPECT_EQ((*chain)->chain()[1]->file().path().filename(), "moved.vhd");
  EXPECT_EQ((*chain)->top().unique_id(), id);
  // The copy of the footer at offset 0 has the new id too: with the end footer gone, the
  // image still says it.
  chain = Status::Ok();
  const auto size = fs::file_size(dir / "c.vhd");
  fs::resize_file(dir / "c.vhd", size - 512);
  request.no_parents = true;
  auto repaired = VirtualDisk::Open(BuiltinProviders(), request);
  ASSERT_TRUE(repaired.ok()) << repaired.status().message();
  EXPECT_EQ((*repaired)->top().unique_id(), id);
}

}  // namespace
}  // namespace vdisk
