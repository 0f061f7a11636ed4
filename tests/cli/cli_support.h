// Running the real vdisk binary (and the referees: qemu-img, qemu-io, nbdinfo) as subprocesses,
// and the small file helpers the CLI tests share.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cli_test {

namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;  // 128 + N when killed by signal N
  std::string out;
  std::string err;
};

// Runs `argv` to completion. `stdin_file`: its standard input (else /dev/null); `stdout_file`:
// its standard output goes there instead of into Result::out.
Result Exec(const std::vector<std::string>& argv, const std::string& stdin_file = {},
           const std::string& stdout_file = {});
// Runs vdisk with `args`.
Result Vdisk(const std::vector<std::string>& args, const std::string& stdin_file = {},
             const std::string& stdout_file = {});
std::string VdiskPath();

// A process running in the background whose standard output and error come through one pipe,
// read line by line: tests synchronise on what it prints.
class Background {
 public:
  explicit Background(const std::vector<std::string>& argv);
  ~Background();  // kills it if it still runs
  // Reads lines until one contains `text`; returns it, or nullopt at end of output (or after
  // `timeout_ms` without output: a hung process fails the test instead of hanging it).
  std::optional<std::string> WaitForLine(const std::string& text, int timeout_ms = 120000);
  void Signal(int signal);
  int Wait();  // exit code (128 + N when killed by signal N)
  const std::string& output() const { return output_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string output_;
  std::string pending_;
};

// A process on a pseudo-terminal (forkpty): what it writes to its terminal, until it exits.
struct TerminalResult {
  int exit_code = -1;
  std::string output;
};
TerminalResult RunOnTerminal(const std::vector<std::string>& argv);

// A fresh directory for one test, removed at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// "qemu-img info --output=json"'s number after "\"key\": ", or nullopt.
std::optional<std::uint64_t> JsonNumber(const std::string& json, const std::string& key);
// Bytes the file system allocated for the file (st_blocks * 512).
std::uint64_t AllocatedBytes(const fs::path& path);
// Reads and writes raw bytes of a file.
std::vector<std::uint8_t> ReadBytes(const fs::path& path, std::uint64_t offset, std::size_t count);
void WriteBytes(const fs::path& path, std::uint64_t offset, const std::vector<std::uint8_t>& bytes);
// Writes `count` bytes of random data at `offset` of a raw file.
void WriteRandom(const fs::path& path, std::uint64_t offset, std::uint64_t count, unsigned seed);
std::uint32_t Crc32c(const std::vector<std::uint8_t>& bytes);

bool HaveProgram(const std::string& name);

}  // namespace cli_test
