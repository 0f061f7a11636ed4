// convert, map, compare and metadata on real images, qemu-img as the referee.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "cli_support.h"

namespace cli_test {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;

// A 64 MiB raw file holding 16 MiB of random data in three places, the rest holes.
fs::path MakeSparseRaw(const TempDir& dir, const std::string& name = "data.raw") {
  const fs::path path = dir / name;
  std::ofstream(path, std::ios::binary).flush();
  fs::resize_file(path, 64 * kMiB);
  WriteRandom(path, 0, 4 * kMiB, 1);
  WriteRandom(path, 20 * kMiB, 4 * kMiB, 2);
  WriteRandom(path, 40 * kMiB, 8 * kMiB, 3);
  return path;
}

// Done when 3.
TEST(VdiskConvert, RawToVhdxIsSparseAndEqualAndBack) {
  TempDir dir;
  const fs::path raw = MakeSparseRaw(dir);
  const auto vhdx = (dir / "disk.vhdx").string();
  const Result to = Vdisk({"convert", raw.string(), vhdx});
  ASSERT_EQ(to.exit_code, 0) << to.err;
  EXPECT_LT(fs::file_size(vhdx), 40 * kMiB);
  const Result same = Exec({"qemu-img", "compare", "-f", "raw", "-F", "vhdx", raw.string(), vhdx});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", vhdx}).exit_code, 0);

  const auto back = (dir / "back.img").string();
  const Result from = Vdisk({"convert", vhdx, back});
  ASSERT_EQ(from.exit_code, 0) << from.err;
  EXPECT_EQ(fs::file_size(back), 64 * kMiB);
  EXPECT_LE(AllocatedBytes(back), 17 * kMiB) << "all-zero ranges must stay holes";
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "raw", "-F", "raw", raw.string(), back}).exit_code, 0);
}

TEST(VdiskConvert, VhdToVhdxAndFixedVhd) {
  TempDir dir;
  const auto vhd = (dir / "q.vhd").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vpc", vhd, "32M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vpc", "-c", "write -P 0x3c 1M 2M", vhd}).exit_code, 0);
  const auto vhdx = (dir / "out.vhdx").string(), fixed = (dir / "fixed.vhd").string();
  ASSERT_EQ(Vdisk({"convert", vhd, vhdx}).exit_code, 0);
  ASSERT_EQ(Vdisk({"convert", vhdx, fixed, "--fixed"}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "vpc", "-F", "vhdx", vhd, vhdx}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "vhdx", "-F", "vpc", vhdx, fixed}).exit_code, 0);
  const Result info = Vdisk({"info", fixed});
  EXPECT_NE(info.out.find("fixed"), std::string::npos) << info.out;
}

TEST(VdiskConvert, TellsRawByContentAndReadsAndWritesStandardStreams) {
  TempDir dir;
  const fs::path raw = MakeSparseRaw(dir, "data.dat");  // no telling extension
  const auto vhdx = (dir / "from-stdin.vhdx").string();
  const Result in = Vdisk({"convert", "-", vhdx}, raw.string());
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "raw", "-F", "vhdx", raw.string(), vhdx}).exit_code, 0);
  const auto by_content = (dir / "by-content.vhd").string();
  ASSERT_EQ(Vdisk({"convert", raw.string(), by_content}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "raw", "-F", "vpc", raw.string(), by_content}).exit_code, 0);
  const auto out = (dir / "stdout.bin").string();
  const Result to = Vdisk({"convert", vhdx, "-"}, {}, out);
  ASSERT_EQ(to.exit_code, 0) << to.err;
  EXPECT_EQ(fs::file_size(out), 64 * kMiB);
  EXPECT_EQ(Exec({"cmp", raw.string(), out}).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "-"));
}

TEST(VdiskReadWrite, DashIsStandardInputAndOutput) {
  TempDir dir;
  const auto disk = (dir / "io.vhdx").string();
  ASSERT_EQ(Vdisk({"create", disk, "--size", "8M"}).exit_code, 0);
  WriteRandom(dir / "in.bin", 0, kMiB, 7);
  const Result write = Vdisk({"write", disk, "--offset", "1M", "--from", "-", "--length", "1M"},
                             (dir / "in.bin").string());
  ASSERT_EQ(write.exit_code, 0) << write.err;
  const auto out = (dir / "out.bin").string();
  const Result read = Vdisk({"read", disk, "--offset", "1M", "--length", "1M", "--to", "-"}, {}, out);
  ASSERT_EQ(read.exit_code, 0) << read.err;
  EXPECT_EQ(Exec({"cmp", (dir / "in.bin").string(), out}).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "-"));
  // qemu-img, the referee, finds the same bytes at 1 MiB of the disk.
  const auto full = (dir / "full.raw").string();
  ASSERT_EQ(Exec({"qemu-img", "convert", "-f", "vhdx", "-O", "raw", disk, full}).exit_code, 0);
  EXPECT_EQ(ReadBytes(full, kMiB, kMiB), ReadBytes(dir / "in.bin", 0, kMiB));
}

TEST(VdiskConvert, RefusesAnExistingTarget) {
  TempDir dir;
  const fs::path raw = MakeSparseRaw(dir);
  const auto vhdx = (dir / "x.vhdx").string();
  ASSERT_EQ(Vdisk({"create", vhdx, "--size", "1M"}).exit_code, 0);
  const Result r = Vdisk({"convert", raw.string(), vhdx});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("x.vhdx: ERROR_FILE_EXISTS"), std::string::npos) << r.err;
}

// The ranges with data, as "start+length@offset", from a map in qemu-img's JSON form.
std::vector<std::string> DataRanges(const std::string& json) {
  std::vector<std::string> out;
  std::regex item(R"(\{[^}]*\})");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), item); it != std::sregex_iterator(); ++it) {
    const std::string text = it->str();
    if (text.find("\"data\": true") == std::string::npos) continue;
    out.push_back(std::to_string(*JsonNumber(text, "start")) + "+" +
                  std::to_string(*JsonNumber(text, "length")) + "@" +
                  std::to_string(JsonNumber(text, "offset").value_or(0)));
  }
  return out;
}

// qemu's VHD driver reports block status (its VHDX driver reports everything as data).
TEST(VdiskMap, ListsTheSameDataRangesAndOffsetsAsQemuImgForVhd) {
  TempDir dir;
  const auto vhd = (dir / "m.vhd").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vpc", vhd, "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vpc", "-c", "write -P 1 0 1M", "-c", "write -P 2 8M 3M", vhd}).exit_code, 0);
  const Result ours = Vdisk({"map", "--output=json", vhd});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  const Result qemu = Exec({"qemu-img", "map", "--output=json", "-f", "vpc", vhd});
  ASSERT_EQ(qemu.exit_code, 0);
  EXPECT_EQ(DataRanges(ours.out), DataRanges(qemu.out)) << ours.out << qemu.out;
  EXPECT_EQ(DataRanges(ours.out).size(), 3u);  // the blocks at 0, 8M and 10M (2 MiB blocks)
}

TEST(VdiskMap, ListsTheBlocksQemuWroteIntoAVhdx) {
  TempDir dir;
  const auto vhdx = (dir / "m.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", "-o", "block_size=1M", vhdx, "64M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 1 0 1M", "-c", "write -P 2 8M 3M", vhdx}).exit_code, 0);
  const Result ours = Vdisk({"map", "--output=json", vhdx});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  auto ranges = DataRanges(ours.out);
  for (auto& range : ranges) range.erase(range.find('@'));
  EXPECT_EQ(ranges, (std::vector<std::string>{"0+1048576", "8388608+3145728"})) << ours.out;
  // Where the data is in the file: qemu-io reads the same bytes there.
  std::smatch offset;
  ASSERT_TRUE(std::regex_search(ours.out, offset, std::regex(R"("offset": ([0-9]+))")));
  EXPECT_EQ(ReadBytes(vhdx, std::stoull(offset[1].str()), 4), (std::vector<std::uint8_t>{1, 1, 1, 1}));
}

TEST(VdiskCompare, SaysEqualOrTheFirstDifferenceOrError) {
  TempDir dir;
  const auto a = (dir / "a.vhdx").string(), b = (dir / "b.vhd").string();
  ASSERT_EQ(Vdisk({"create", a, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", b, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", a, "--offset", "1M", "--length", "4K", "--pattern", "7"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", b, "--offset", "1M", "--length", "4K", "--pattern", "7"}).exit_code, 0);
  const Result equal = Vdisk({"compare", a, b});
  EXPECT_EQ(equal.exit_code, 0) << equal.out << equal.err;
  ASSERT_EQ(Vdisk({"write", b, "--offset", "3M", "--length", "512", "--pattern", "9"}).exit_code, 0);
  const Result differ = Vdisk({"compare", a, b});
  EXPECT_EQ(differ.exit_code, 1);
  EXPECT_NE(differ.out.find("offset 3145728"), std::string::npos) << differ.out;
  // qemu-img, the referee, finds the same offset.
  const Result qemu = Exec({"qemu-img", "compare", "-f", "vhdx", "-F", "vpc", a, b});
  EXPECT_NE(qemu.out.find("offset 3145728"), std::string::npos) << qemu.out;
  const Result error = Vdisk({"compare", a, (dir / "missing.vhdx").string()});
  EXPECT_EQ(error.exit_code, 2);
  EXPECT_NE(error.err.find("missing.vhdx: ERROR_FILE_NOT_FOUND"), std::string::npos) << error.err;
}

TEST(VdiskMetadata, SetGetListDeleteRoundTrip) {
  TempDir dir;
  const auto vhdx = (dir / "meta.vhdx").string();
  const std::string id = "8d6f1e46-4b0e-4e1b-9a8a-1c2d3e4f5a6b";
  ASSERT_EQ(Vdisk({"create", vhdx, "--size", "16M"}).exit_code, 0);
  const fs::path item = dir / "item.bin";
  std::ofstream(item, std::ios::binary) << "hello, metadata";
  const Result set = Vdisk({"metadata", vhdx, "set", id, item.string()});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  const Result list = Vdisk({"metadata", vhdx, "list"});
  EXPECT_NE(list.out.find(id + "  15 bytes"), std::string::npos) << list.out;
  const Result get = Vdisk({"metadata", vhdx, "get", id});
  EXPECT_EQ(get.out, "hello, metadata");
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", vhdx}).exit_code, 0) << "the file stays valid";
  ASSERT_EQ(Vdisk({"metadata", vhdx, "delete", id}).exit_code, 0);
  const Result gone = Vdisk({"metadata", vhdx, "get", id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("meta.vhdx: ERROR_"), std::string::npos) << gone.err;
}

TEST(VdiskSetParent, PointsAChildAtItsMovedParent) {
  TempDir dir;
  const auto parent = (dir / "p.vhdx").string(), child = (dir / "c.vhdx").string();
  ASSERT_EQ(Vdisk({"create", parent, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"write", parent, "--offset", "0", "--length", "1M", "--pattern", "0x42"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", child, "--parent", parent}).exit_code, 0);
  fs::create_directory(dir / "moved");
  const auto moved = (dir / "moved" / "p.vhdx").string();
  fs::rename(parent, moved);
  EXPECT_EQ(Vdisk({"read", child, "--offset", "0", "--length", "512"}).exit_code, 1);
  const Result r = Vdisk({"set-parent", child, moved});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Result read = Vdisk({"read", child, "--offset", "0", "--length", "1M"});
  EXPECT_NE(read.out.find("all 1048576 bytes = 0x42"), std::string::npos) << read.out << read.err;
  const Result vhdi = Exec({"vhdiinfo", child});
  EXPECT_NE(vhdi.out.find("moved"), std::string::npos) << vhdi.out;
}

}  // namespace
}  // namespace cli_test
