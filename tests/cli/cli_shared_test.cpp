// Disks that another process holds: `vdisk info -U` reads one that a process holds open for
// writing (qemu-img info -U as the referee), and `vdisk list` says of each attachment which
// image it is, its URI, whether it is read-only and permanent, and which process serves it.
// The holder is attach_client (tests/api), a client of the public API that attaches a disk for
// the life of its process: it opens the image read-write and keeps the image's lock.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "cli_support.h"

namespace cli_test {
namespace {

std::string AttachClient() { return ATTACH_CLIENT_PATH; }

// The JSON object of `list --output=json` that names `disk`, up to its closing brace.
std::string ListEntry(const std::string& json, const std::string& disk) {
  const auto at = json.find("\"disk\": \"" + disk + "\"");
  if (at == std::string::npos) return {};
  const auto begin = json.rfind('{', at);
  const auto end = json.find('}', at);
  return json.substr(begin, end - begin + 1);
}

// The whitespace-separated fields of the `list` table row whose first field is `disk`.
std::vector<std::string> ListRow(const std::string& table, const std::string& disk) {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string word; words >> word;) fields.push_back(word);
    if (!fields.empty() && fields.front() == disk) return fields;
  }
  return {};
}

std::string ProcessName(long long pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

TEST(VdiskInfo, ForceShareReadsADiskAnotherProcessHoldsForWriting) {
  TempDir dir;
  const auto path = (dir / "held.vhdx").string();
  ASSERT_EQ(Exec({"qemu-img", "create", "-f", "vhdx", path, "100M"}).exit_code, 0);
  ASSERT_EQ(Exec({"qemu-io", "-f", "vhdx", "-c", "write -P 0x5a 0 3M", path}).exit_code, 0);
  Background holder({AttachClient(), "attach-and-wait", path});
  const auto attached = holder.WaitForLine("attached ");
  ASSERT_TRUE(attached) << holder.output();
  const std::string uri = attached->substr(attached->find(' ') + 1);

  // Without -U the lock keeps info out, and the error says what to do.
  const Result plain = Vdisk({"info", path});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  EXPECT_NE(plain.err.find("ERROR_SHARING_VIOLATION"), std::string::npos) << plain.err;
  EXPECT_NE(plain.err.find("-U"), std::string::npos) << plain.err;

  const auto file_before = ReadBytes(path, 0, fs::file_size(path));
  const Result ours = Vdisk({"info", "-U", "--output=json", path});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  EXPECT_EQ(ReadBytes(path, 0, fs::file_size(path)), file_before) << "info -U wrote to the image";
  const Result qemu = Exec({"qemu-img", "info", "-U", "--output=json", "-f", "vhdx", path});
  ASSERT_EQ(qemu.exit_code, 0) << qemu.err;
  EXPECT_EQ(JsonNumber(ours.out, "virtual-size"), JsonNumber(qemu.out, "virtual-size"));
  EXPECT_EQ(JsonNumber(ours.out, "virtual-size"), std::uint64_t{100} << 20);
  EXPECT_EQ(JsonNumber(ours.out, "file-size"), std::optional<std::uint64_t>(fs::file_size(path)));
  EXPECT_EQ(JsonNumber(ours.out, "disk-usage"), JsonNumber(qemu.out, "actual-size"));
  EXPECT_EQ(JsonNumber(ours.out, "block-size"), JsonNumber(qemu.out, "cluster-size"));
  // The holder's attachment, from the registry.
  EXPECT_NE(ours.out.find("\"attached\": \"nbd+unix://"), std::string::npos) << ours.out;

  // The holder goes on writing (through its export): info -U kept nothing. Its log now holds
  // entries, which qemu-img info -U refuses to read without a replay; ours replays them in
  // memory and sees the new block.
  const Result write = Exec({"qemu-io", "-f", "raw", "-c", "write -P 0x33 8M 1M", uri});
  EXPECT_EQ(write.exit_code, 0) << write.out << write.err;
  const Result human = Vdisk({"info", "-U", path});
  EXPECT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("104857600 bytes (100 MiB)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find(std::to_string(fs::file_size(path)) + " bytes"), std::string::npos)
      << human.out;
  holder.Signal(SIGTERM);  // killed while attached: the log is left to replay
  holder.Wait();
  EXPECT_EQ(Exec({"qemu-img", "check", "-r", "all", "-f", "vhdx", path}).exit_code, 0);
  EXPECT_EQ(Exec({"qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 0 3M", "-c",
                  "read -P 0x33 8M 1M", path})
                .exit_code,
            0);
}

TEST(VdiskList, ShowsEachAttachmentsDiskUriModeLifetimeAndProcess) {
  TempDir dir;
  const auto permanent_ro = (dir / "ro.vhdx").string();
  const auto in_process = (dir / "rw.vhd").string();
  ASSERT_EQ(Vdisk({"create", permanent_ro, "--size", "16M"}).exit_code, 0);
  ASSERT_EQ(Vdisk({"create", in_process, "--size", "16M"}).exit_code, 0);
  // vdisk attach hands the disk to an attach host (PERMANENT_LIFETIME) and waits for Ctrl-C;
  // attach_client serves its disk itself, for the life of its process.
  Background foreground({VdiskPath(), "attach", "--read-only", permanent_ro});
  ASSERT_TRUE(foreground.WaitForLine("until Ctrl-C")) << foreground.output();
  Background client({AttachClient(), "attach-and-wait", in_process});
  const auto client_line = client.WaitForLine("attached ");
  ASSERT_TRUE(client_line) << client.output();
  const std::string client_uri = client_line->substr(client_line->find(' ') + 1);
  const std::string ro_disk = fs::canonical(permanent_ro).string();
  const std::string rw_disk = fs::canonical(in_process).string();

  const Result json = Vdisk({"list", "--output=json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const std::string ro = ListEntry(json.out, ro_disk);
  ASSERT_FALSE(ro.empty()) << json.out;
  EXPECT_NE(ro.find("\"uri\": \"nbd+unix://"), std::string::npos) << ro;
  EXPECT_NE(ro.find("\"read-only\": true"), std::string::npos) << ro;
  EXPECT_NE(ro.find("\"permanent\": true"), std::string::npos) << ro;
  std::smatch pid;
  ASSERT_TRUE(std::regex_search(ro, pid, std::regex(R"("pid": ([0-9]+))"))) << ro;
  const long long host_pid = std::stoll(pid[1].str());
  EXPECT_NE(host_pid, static_cast<long long>(foreground.pid())) << "the attach host serves it";
  EXPECT_EQ(ProcessName(host_pid).rfind("virtdisk-attach", 0), 0u) << ProcessName(host_pid);
  const std::string rw = ListEntry(json.out, rw_disk);
  ASSERT_FALSE(rw.empty()) << json.out;
  EXPECT_NE(rw.find("\"uri\": \"" + client_uri + "\""), std::string::npos) << rw;
  EXPECT_NE(rw.find("\"read-only\": false"), std::string::npos) << rw;
  EXPECT_NE(rw.find("\"permanent\": false"), std::string::npos) << rw;
  EXPECT_NE(rw.find("\"pid\": " + std::to_string(client.pid())), std::string::npos) << rw;

  const Result table = Vdisk({"list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(ListRow(table.out, "DISK"),
            (std::vector<std::string>{"DISK", "URI", "MODE", "LIFETIME", "PID"}))
      << table.out;
  const auto ro_row = ListRow(table.out, ro_disk);
  ASSERT_EQ(ro_row.size(), 5u) << table.out;
  EXPECT_EQ(ro_row[1].rfind("nbd+unix://", 0), 0u);
  EXPECT_EQ(ro_row[2], "ro");
  EXPECT_EQ(ro_row[3], "permanent");
  EXPECT_EQ(ro_row[4], std::to_string(host_pid));
  EXPECT_EQ(ListRow(table.out, rw_disk),
            (std::vector<std::string>{rw_disk, client_uri, "rw", "process",
                                      std::to_string(client.pid())}))
      << table.out;

  foreground.Signal(SIGINT);
  EXPECT_EQ(foreground.Wait(), 0) << foreground.output();
  client.Signal(SIGTERM);
  client.Wait();
  const Result after = Vdisk({"list", "--output=json"});
  EXPECT_TRUE(ListEntry(after.out, ro_disk).empty()) << after.out;
  EXPECT_TRUE(ListEntry(after.out, rw_disk).empty()) << after.out;
}

}  // namespace
}  // namespace cli_test
