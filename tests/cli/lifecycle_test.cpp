// The lifecycle commands (resize, expand, compact, merge) end to end, qemu-img as the referee.
#include <gtest/gtest.h>

#include "cli_support.h"

namespace cli_test {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;

std::uint64_t VirtualSize(const std::string& path, const char* format) {
  const Result info = Exec({"qemu-img", "info", "--output=json", "-f", format, path});
  return JsonNumber(info.out, "virtual-size").value_or(0);
}

TEST(VdiskResize, GrowsAndShrinksKeepingTheData) {
  TempDir dir;
  const auto path = (dir / "r.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x41 1M 1M", path}).exit_code, 0);
  const Result grow = Vdisk({"resize", path, "1.5G"});
  ASSERT_EQ(grow.exit_code, 0) << grow.err;
  EXPECT_EQ(VirtualSize(path, "vhdx"), 1536 * kMiB);
  const Result shrink = Vdisk({"resize", path, "32M", "--allow-unsafe"});
  ASSERT_EQ(shrink.exit_code, 0) << shrink.err;
  EXPECT_EQ(VirtualSize(path, "vhdx"), 32 * kMiB);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x41 1M 1M", path}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", path}).exit_code, 0);
}

TEST(VdiskResize, RefusesToCutDataWithoutAllowUnsafe) {
  TempDir dir;
  const auto path = (dir / "r.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x41 60M 1M", path}).exit_code, 0);
  const Result r = Vdisk({"resize", path, "16M"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("r.vhdx: ERROR_"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("ERROR_CALL_NOT_IMPLEMENTED"), std::string::npos) << r.err;
  EXPECT_EQ(VirtualSize(path, "vhdx"), 64 * kMiB);
}

TEST(VdiskExpand, GrowsAVhd) {
  TempDir dir;
  const auto path = (dir / "e.vhd").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "64M"}).exit_code, 0);
  const Result r = Vdisk({"expand", path, "128M"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(VirtualSize(path, "vpc"), 128 * kMiB);
}

TEST(VdiskCompact, GivesBackTheSpaceOfZeroedBlocks) {
  TempDir dir;
  const auto path = (dir / "c.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "256M", "--block-size", "1M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x11 0 64M", path}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -z 0 48M", path}).exit_code, 0);
  const auto before = fs::file_size(path);
  const Result r = Vdisk({"compact", path, "-p"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(fs::file_size(path), before - 32 * kMiB);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x11 48M 16M", path}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", path}).exit_code, 0);
}

TEST(VdiskMerge, MovesTheChildsDataIntoItsParent) {
  TempDir dir;
  const auto parent = (dir / "p.vhdx").string(), child = (dir / "c.vhdx").string();
  ASSERT_EQ(Vdisk({"create", parent, "--size", "64M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", parent, "--offset", "0", "--length", "2M", "--pattern", "1"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", child, "--parent", parent}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", child, "--offset", "1M", "--length", "2M", "--pattern", "2"}).exit_code, 0);
  const auto flat = (dir / "before.raw").string();
  ASSERT_EQ(Vdisk({"convert", child, flat}).exit_code, 0);
  const Result r = Vdisk({"merge", child});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "raw", "-F", "vhdx", flat, parent}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", parent}).exit_code, 0);
}

}  // namespace
}  // namespace cli_test
