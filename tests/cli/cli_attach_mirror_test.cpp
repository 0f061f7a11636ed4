// attach / detach / list with qemu-io and nbdinfo as the clients, and mirror: its result, its
// progress bar on a terminal, and Ctrl-C in the middle of a 2 GiB copy.
#include <gtest/gtest.h>

#include <signal.h>

#include <regex>

#include "cli_support.h"

namespace cli_test {
namespace {

// "attached PATH at URI" -> URI.
std::string UriOf(const std::string& line) {
  const auto at = line.rfind(" at ");
  return at == std::string::npos ? std::string() : line.substr(at + 4);
}

TEST(VdiskAttach, ServesTheDiskToQemuIoUntilCtrlC) {
  TempDir dir;
  const auto path = (dir / "a.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "64M"}).exit_code, 0);
  Background attach({VdiskPath(), "attach", path});
  const auto attached = attach.WaitForLine("attached ");
  ASSERT_TRUE(attached) << attach.output();
  const std::string uri = UriOf(*attached);
  ASSERT_EQ(uri.rfind("nbd+unix://", 0), 0u) << uri;
  // The printed qemu-io line is ready to use.
  const auto qemu_line = attach.WaitForLine("qemu-io -f raw");
  ASSERT_TRUE(qemu_line);
  EXPECT_NE(qemu_line->find("'" + uri + "'"), std::string::npos);
  ASSERT_TRUE(attach.WaitForLine("until Ctrl-C"));
  const Result write = Exec({"qemu-io", "-f", "raw", "-c", "write -P 0x77 1M 2M", uri});
  EXPECT_EQ(write.exit_code, 0) << write.out << write.err;
  const Result info = Exec({"nbdinfo", "--size", uri});
  EXPECT_EQ(info.out, "67108864\n") << info.err;
  const Result list = Vdisk({"list", "--output=json"});
  EXPECT_NE(list.out.find("\"uri\": \"" + uri + "\""), std::string::npos) << list.out;
  const Result ours = Vdisk({"info", path});  // the disk another process holds
  EXPECT_EQ(ours.exit_code, 0) << ours.err;
  EXPECT_NE(ours.out.find("attached at:          " + uri), std::string::npos) << ours.out;
  attach.Signal(SIGINT);
  EXPECT_EQ(attach.Wait(), 0) << attach.output();
  EXPECT_NE(attach.output().find("detached " + path), std::string::npos) << attach.output();
  EXPECT_EQ(Vdisk({"list"}).out.find(uri), std::string::npos);
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", path}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x77 1M 2M", path}).exit_code, 0);
}

TEST(VdiskAttach, DetachFromAnotherProcessEndsAForegroundAttachment) {
  TempDir dir;
  const auto path = (dir / "d.vhd").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "16M"}).exit_code, 0);
  Background attach({VdiskPath(), "attach", path});
  ASSERT_TRUE(attach.WaitForLine("until Ctrl-C")) << attach.output();
  const Result detach = Vdisk({"detach", path});
  EXPECT_EQ(detach.exit_code, 0) << detach.err;
  EXPECT_TRUE(attach.WaitForLine("by another process")) << attach.output();
  EXPECT_EQ(attach.Wait(), 0);
}

TEST(VdiskAttach, PermanentOutlivesVdiskUntilDetach) {
  TempDir dir;
  const auto path = (dir / "p.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "32M"}).exit_code, 0);
  const Result attach = Vdisk({"attach", "--permanent", path});
  ASSERT_EQ(attach.exit_code, 0) << attach.err;
  std::smatch uri;
  ASSERT_TRUE(std::regex_search(attach.out, uri, std::regex(R"(attached \S+ at (\S+))")));
  EXPECT_EQ(Exec({"qemu-io", "-f", "raw", "-c", "write -P 0x12 0 1M", uri[1].str()}).exit_code, 0);
  EXPECT_NE(Vdisk({"list"}).out.find(uri[1].str()), std::string::npos);
  const Result detach = Vdisk({"detach", path});
  EXPECT_EQ(detach.exit_code, 0) << detach.err;
  EXPECT_EQ(Vdisk({"list"}).out.find(uri[1].str()), std::string::npos);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x12 0 1M", path}).exit_code, 0);
}

TEST(VdiskAttach, ReadOnlyRefusesWritesAndTcpServesOnLoopback) {
  TempDir dir;
  const auto path = (dir / "r.vhdx").string();
  ASSERT_EQ(Vdisk({"create", path, "--size", "16M"}).exit_code, 0);
  {
    Background attach({VdiskPath(), "attach", "--read-only", path});
    const auto line = attach.WaitForLine("attached ");
    ASSERT_TRUE(line) << attach.output();
    const std::string uri = UriOf(*line);
    EXPECT_NE(Exec({"qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", uri}).exit_code, 0);
    EXPECT_EQ(Exec({"qemu-io", "-f", "raw", "-r", "-c", "read -P 0 0 4k", uri}).exit_code, 0);
    attach.Signal(SIGTERM);
    EXPECT_EQ(attach.Wait(), 0);
  }
  Background attach({VdiskPath(), "attach", "--tcp", path});
  const auto line = attach.WaitForLine("attached ");
  ASSERT_TRUE(line) << attach.output();
  const std::string uri = UriOf(*line);
  EXPECT_TRUE(std::regex_search(uri, std::regex(R"(^nbds?://[^/]*127\.0\.0\.1:[0-9]+/)"))) << uri;
  const Result info = Exec({"nbdinfo", "--size", uri});
  EXPECT_EQ(info.out, "16777216\n") << info.err;
  attach.Signal(SIGINT);
  EXPECT_EQ(attach.Wait(), 0);
}

TEST(VdiskMirror, CopiesTheDiskAndSwitchesToTheCopy) {
  TempDir dir;
  const auto source = (dir / "s.vhdx").string(), target = (dir / "t.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", source, "256M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x21 0 8M", "-c", "write -P 0x22 100M 8M", source}).exit_code, 0);
  const Result r = Vdisk({"mirror", source, target});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << "no progress off a terminal without -p: " << r.err;
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", source, target}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", target}).exit_code, 0);
}

TEST(VdiskMirror, DrawsAProgressBarOnATerminal) {
  TempDir dir;
  const auto source = (dir / "s.vhdx").string(), target = (dir / "t.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", source, "512M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x31 0 64M", source}).exit_code, 0);
  const TerminalResult r = RunOnTerminal({VdiskPath(), "mirror", source, target});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A bar redrawn in place: carriage returns, percent, the bar, a rate.
  EXPECT_NE(r.output.find("\rmirror "), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(100% \[=+\] 64 MiB/64 MiB [0-9.]+ [KMG]?i?B/s)")))
      << r.output;
  EXPECT_EQ(Exec({"qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", source, target}).exit_code, 0);
}

// Done when 2.
TEST(VdiskMirror, CtrlCCancelsLeavesNoTargetAndTheSourceIntact) {
  TempDir dir;
  const auto source = (dir / "big.vhdx").string(), target = (dir / "copy.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", source, "2G"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x5a 0 1G", source}).exit_code, 0);
  Background mirror({VdiskPath(), "mirror", "-p", source, target});
  // A 2 GiB disk holding 1 GiB of data. On an idle machine the whole copy takes about a second,
  // so the signal goes at the first progress line (the mirror is started: MirrorVirtualDisk has
  // returned ERROR_IO_PENDING and the target exists), not at a later percentage the copy may
  // already have passed.
  ASSERT_TRUE(mirror.WaitForLine("mirror: 0%")) << mirror.output();
  mirror.Signal(SIGINT);
  EXPECT_EQ(mirror.Wait(), 130) << mirror.output();
  EXPECT_NE(mirror.output().find("cancelled"), std::string::npos) << mirror.output();
  EXPECT_FALSE(fs::exists(target));
  EXPECT_EQ(Exec({"qemu-img", "check", "-f", "vhdx", source}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 0 1G", source}).exit_code, 0);
  // And again: the interrupted run left nothing in the way.
  const Result again = Vdisk({"mirror", source, target});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

}  // namespace
}  // namespace cli_test
