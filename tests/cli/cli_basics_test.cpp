// vdisk's command line itself (version, help, unknown commands, exit codes), create and info,
// and what its errors say, with qemu-img as the referee for the disks it makes.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "cli_support.h"

namespace cli_test {
namespace {

TEST(VdiskCommandLine, VersionPrintsTheProjectVersion) {
  const Result r = Vdisk({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(^vdisk [0-9]+\.[0-9]+\.[0-9]+)"))) << r.out;
}

TEST(VdiskCommandLine, CommandHelpIsThatCommandsHelp) {
  const Result r = Vdisk({"attach", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("vdisk attach"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--permanent"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("mirror"), std::string::npos) << "general help instead:\n" << r.out;
}

TEST(VdiskCommandLine, GeneralHelpListsEveryCommand) {
  const Result r = Vdisk({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"create", "info", "convert", "attach", "detach", "list", "mirror",
                              "resize", "expand", "compact", "merge", "set-parent", "check", "map",
                              "compare", "metadata", "read", "write"}) {
    EXPECT_NE(r.out.find(std::string("  ") + command), std::string::npos) << command;
  }
}

TEST(VdiskCommandLine, UnknownCommandFailsWithTheUsageStatus) {
  const Result r = Vdisk({"frobnicate", "x.vhdx"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
}

TEST(VdiskCommandLine, MissingArgumentFailsWithTheUsageStatus) {
  TempDir dir;
  const Result r = Vdisk({"create", (dir / "a.vhdx").string()});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_NE(r.err.find("--size is required"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "a.vhdx"));
}

TEST(VdiskCreate, AcceptsSizesWithDecimals) {
  TempDir dir;
  const auto path = (dir / "a.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "1.5G"}).exit_code, 0);
  const Result info = Exec({"qemu-img", "info", "--output=json", path});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(JsonNumber(info.out, "virtual-size"), std::uint64_t{3} << 29);
  EXPECT_EQ(Vdisk({"create", (dir / "b.vhd").string(), "--size", "1.3K"}).exit_code, 64)
      << "1.3K is not a whole number of bytes";
}

TEST(VdiskInfo, AgreesWithQemuImgAndPrintsEachRowOnce) {
  TempDir dir;
  const auto path = (dir / "q.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", path, "100M"}).exit_code, 0);
  const Result r = Vdisk({"info", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("104857600 bytes (100 MiB)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not available"), std::string::npos) << r.out;
  std::set<std::string> labels;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(':');
    if (line.rfind("  ", 0) != 0 || colon == std::string::npos) continue;
    EXPECT_TRUE(labels.insert(line.substr(0, colon)).second) << "duplicate row: " << line;
  }
  EXPECT_TRUE(labels.count("  block size")) << r.out;
  const Result json = Vdisk({"info", "--output=json", path});
  ASSERT_EQ(json.exit_code, 0);
  const Result qemu = Exec({"qemu-img", "info", "--output=json", path});
  EXPECT_EQ(JsonNumber(json.out, "virtual-size"), JsonNumber(qemu.out, "virtual-size"));
  EXPECT_EQ(JsonNumber(json.out, "file-size"), JsonNumber(qemu.out, "actual-size").has_value()
                                                   ? std::optional<std::uint64_t>(fs::file_size(path))
                                                   : std::nullopt);
  EXPECT_EQ(JsonNumber(json.out, "disk-usage"), JsonNumber(qemu.out, "actual-size"));
}

TEST(VdiskInfo, ShowsTheParentChainOfADifferencingDisk) {
  TempDir dir;
  const auto base = (dir / "base.vhdx").string(), mid = (dir / "mid.vhdx").string(),
             top = (dir / "top.vhdx").string();
  ASSERT_EQ(Vdisk({"create", base, "--size", "64M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", mid, "--parent", base}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", top, "--parent", mid}).exit_code, 0);
  const Result r = Vdisk({"info", "--output=json", top});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"type\": \"differencing\""), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\"backing-chain\": \\[\\s*\"[^\"]*mid.vhdx\",\\s*\"[^\"]*base.vhdx\"")))
      << r.out;
  // libvhdi, the referee (qemu has no VHDX differencing), reads the same parent link.
  const Result vhdi = Exec({"vhdiinfo", top});
  ASSERT_EQ(vhdi.exit_code, 0) << vhdi.err;
  EXPECT_NE(vhdi.out.find("mid.vhdx"), std::string::npos) << vhdi.out;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(vhdi.out, id, std::regex(R"(Parent identifier\s*: ([0-9a-f-]+))"))) << vhdi.out;
  EXPECT_NE(r.out.find("\"parent-identifier\": \"" + id[1].str() + "\""), std::string::npos)
      << r.out << vhdi.out;
}

// Done when 5: each error names the file, the Win32 error's name and the library's sentence.
TEST(VdiskErrors, TooLargeVhdxCarriesTheReason) {
  TempDir dir;
  const Result r = Vdisk({"create", (dir / "big.vhdx").string(), "--size", "65T"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("big.vhdx: ERROR_INVALID_PARAMETER (87): "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("at most 64 TiB"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("VIRTDISK_TRACE"), std::string::npos) << r.err;
}

TEST(VdiskErrors, MissingFileCarriesTheReason) {
  TempDir dir;
  const Result r = Vdisk({"info", (dir / "missing.vhdx").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.vhdx: ERROR_FILE_NOT_FOUND (2): "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST(VdiskErrors, DirectoryCarriesTheReasonAndTheErrorName) {
  TempDir dir;
  fs::create_directory(dir / "folder.vhdx");
  const Result r = Vdisk({"info", (dir / "folder.vhdx").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(folder\.vhdx: ERROR_[A-Z_]+ \([0-9]+\): )"))) << r.err;
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;
}

TEST(VdiskErrors, WrongParentCarriesTheReason) {
  TempDir dir;
  const auto parent = (dir / "parent.vhd").string(), child = (dir / "child.vhd").string();
  ASSERT_EQ(Vdisk({"create", parent, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", child, "--parent", parent}).exit_code, 0);
  fs::remove(parent);
  ASSERT_EQ(Vdisk({"create", parent, "--size", "16M"}).exit_code, 0);  // another disk, another id
  const Result r = Vdisk({"read", child, "--offset", "0", "--length", "512"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("child.vhd: ERROR_VHD_CHILD_PARENT_ID_MISMATCH"), std::string::npos) << r.err;
  // info still describes the child, and says why the chain did not open.
  const Result info = Vdisk({"info", child});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.err.find("ERROR_VHD_CHILD_PARENT_ID_MISMATCH"), std::string::npos) << info.err;
}

}  // namespace
}  // namespace cli_test
