// Merge benchmark, peers side by side in one run.
//
// A 4 GiB dynamic parent holding 512 MiB (every other MiB of its first GiB) and a 1 GiB child
// (every other MiB of the first 2 GiB, half of it over the parent's data) are merged by
//   - MergeVirtualDisk (V2, source depth 1, target depth 2, NULL OVERLAPPED: the sample's call),
//     child and parent both in the format asked for;
//   - `qemu-img commit -d` of a qcow2 child holding the same bytes over a copy of the same
//     parent (qemu reads neither VHD parents nor differencing VHDX, so its child is qcow2; the
//     parent it writes is the same VHD/VHDX file), then fsync of the parent, as our merge
//     flushes before it returns.
// Each run starts from fresh copies of the same files (not timed). Prints the median time of
// the runs (with fastest and slowest), the ratio, and the parent's size afterwards (apparent
// and allocated) for each.
//
//   build/linux/bench/merge_bench [--format vhdx|vhd] [--runs N] [dir]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <virtdisk.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kParentSize = 4096 * kMiB;

[[noreturn]] void Die(const std::string& what, unsigned long code = 0) {
  std::fprintf(stderr, "merge_bench: %s (0x%lx)\n", what.c_str(), code);
  std::exit(1);
}

void Run(const std::string& command) {
  if (std::system(command.c_str()) != 0) Die("failed: " + command);
}

std::wstring Wide(const fs::path& p) { return p.wstring(); }

unsigned char ByteOf(std::uint64_t mib, bool child) {
  return static_cast<unsigned char>((mib * 7 + (child ? 101 : 3)) % 251 + 1);
}

HANDLE Create(const fs::path& path, const fs::path& parent) {
  VIRTUAL_STORAGE_TYPE type{};  // UNKNOWN: the extension decides
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = parent.empty() ? kParentSize : 0;
  const std::wstring wparent = Wide(parent);
  if (!parent.empty()) params.Version2.ParentPath = wparent.c_str();
  HANDLE h = nullptr;
  const std::wstring wpath = Wide(path);
  const DWORD e = CreateVirtualDisk(&type, wpath.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                                    CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &params, nullptr, &h);
  if (e != ERROR_SUCCESS) Die("CreateVirtualDisk " + path.string(), e);
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  const DWORD a =
      AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &attach, nullptr);
  if (a != ERROR_SUCCESS) Die("AttachVirtualDisk", a);
  return h;
}

void WriteMiBs(HANDLE h, std::uint64_t first, std::uint64_t end, bool child) {
  std::vector<unsigned char> buffer(kMiB);
  for (std::uint64_t mib = first; mib < end; mib += 2) {
    std::memset(buffer.data(), ByteOf(mib, child), buffer.size());
    LARGE_INTEGER at{};
    at.QuadPart = static_cast<LONGLONG>(mib * kMiB);
    DWORD n = 0;
    if (!SetFilePointerEx(h, at, nullptr, FILE_BEGIN) ||
        !WriteFile(h, buffer.data(), static_cast<DWORD>(kMiB), &n, nullptr))
      Die("WriteFile", GetLastError());
  }
}

struct Sizes {
  std::uint64_t apparent = 0;
  std::uint64_t allocated = 0;
};
Sizes SizeOf(const fs::path& p) {
  struct stat st {};
  if (stat(p.c_str(), &st) != 0) Die("stat " + p.string());
  return {static_cast<std::uint64_t>(st.st_size), static_cast<std::uint64_t>(st.st_blocks) * 512};
}

void Fsync(const fs::path& p) {
  const int fd = open(p.c_str(), O_RDWR);
  if (fd < 0 || fsync(fd) != 0) Die("fsync " + p.string());
  close(fd);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Summary {
  double median = 0, fastest = 0, slowest = 0;
};
Summary Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string format = "vhdx";
  int runs = 3;
  fs::path dir = fs::temp_directory_path() / "merge_bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--format" && i + 1 < argc) {
      format = argv[++i];
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      dir = a;
    }
  }
  if (format != "vhd" && format != "vhdx") Die("--format vhd or vhdx");
  const std::string qemu_format = format == "vhd" ? "vpc" : "vhdx";
  const std::string ext = "." + format;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path tparent = dir / ("template-parent" + ext);
  const fs::path tchild = dir / ("template-child" + ext);
  const fs::path tqcow = dir / "template-child.qcow2";

  // The parent: 512 MiB; our child: 1 GiB over it.
  {
    HANDLE h = Create(tparent, {});
    WriteMiBs(h, 1, 1024, false);
    CloseHandle(h);
  }
  {
    HANDLE h = Create(tchild, tparent);
    WriteMiBs(h, 0, 2048, true);
    CloseHandle(h);
  }
  // qemu's child: the same bytes in a qcow2 over the same parent.
  const fs::path qparent_for_fill = dir / ("qemu-fill-parent" + ext);
  fs::copy_file(tparent, qparent_for_fill);
  Run("qemu-img create -q -f qcow2 -b '" + qparent_for_fill.string() + "' -F " + qemu_format +
      " '" + tqcow.string() + "'");
  {
    std::string command = "qemu-io -f qcow2";
    for (std::uint64_t mib = 0; mib < 2048; mib += 2) {
      char c[96];
      std::snprintf(c, sizeof c, " -c 'write -q -P %u %llu 1M'", ByteOf(mib, true),
                    static_cast<unsigned long long>(mib * kMiB));
      command += c;
    }
    Run(command + " '" + tqcow.string() + "' > /dev/null");
  }
  std::printf(
      "merge_bench: %s parent of 4 GiB holding 512 MiB, child holding 1 GiB (half of it "
      "over the parent's data); %d run(s)\n",
      format.c_str(), runs);

  std::vector<double> ours, qemu;
  Sizes ours_size, qemu_size;
  for (int run = 0; run < runs; ++run) {
    const fs::path parent = dir / ("parent" + ext);
    const fs::path child = dir / ("child" + ext);
    fs::remove(parent);
    fs::remove(child);
    Run("cp --sparse=always '" + tparent.string() + "' '" + parent.string() + "'");
    Run("cp --sparse=always '" + tchild.string() + "' '" + child.string() + "'");
    // The copy's relative locator names template-parent; re-point it (not timed).
    {
      VIRTUAL_STORAGE_TYPE type{};
      OPEN_VIRTUAL_DISK_PARAMETERS open{};
      open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
      HANDLE h = nullptr;
      const std::wstring wchild = Wide(child);
      DWORD e = OpenVirtualDisk(&type, wchild.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                                OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, &open, &h);
      if (e != ERROR_SUCCESS) Die("OpenVirtualDisk (no parents)", e);
      SET_VIRTUAL_DISK_INFO set{};
      set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH;
      const std::wstring wparent = Wide(parent);
      set.ParentFilePath = wparent.c_str();
      e = SetVirtualDiskInformation(h, &set);
      if (e != ERROR_SUCCESS) Die("SetVirtualDiskInformation", e);
      CloseHandle(h);
    }
    Run("sync");
    {
      const auto start = Clock::now();
      VIRTUAL_STORAGE_TYPE type{};
      OPEN_VIRTUAL_DISK_PARAMETERS open{};
      open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
      HANDLE h = nullptr;
      const std::wstring wchild = Wide(child);
      DWORD e = OpenVirtualDisk(&type, wchild.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                                OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h);
      if (e != ERROR_SUCCESS) Die("OpenVirtualDisk", e);
      MERGE_VIRTUAL_DISK_PARAMETERS p{};
      p.Version = MERGE_VIRTUAL_DISK_VERSION_2;
      p.Version2.MergeSourceDepth = 1;
      p.Version2.MergeTargetDepth = 2;
      e = MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
      if (e != ERROR_SUCCESS) Die("MergeVirtualDisk", e);
      CloseHandle(h);
      ours.push_back(Seconds(Clock::now() - start));
    }
    ours_size = SizeOf(parent);

    const fs::path qparent = dir / ("qemu-parent" + ext);
    const fs::path qchild = dir / "qemu-child.qcow2";
    fs::remove(qparent);
    fs::remove(qchild);
    Run("cp --sparse=always '" + tparent.string() + "' '" + qparent.string() + "'");
    Run("cp --sparse=always '" + tqcow.string() + "' '" + qchild.string() + "'");
    Run("qemu-img rebase -q -u -f qcow2 -b '" + qparent.string() + "' -F " + qemu_format + " '" +
        qchild.string() + "'");
    Run("sync");
    {
      const auto start = Clock::now();
      Run("qemu-img commit -q -d -f qcow2 '" + qchild.string() + "'");
      Fsync(qparent);
      qemu.push_back(Seconds(Clock::now() - start));
    }
    qemu_size = SizeOf(qparent);
    // Both parents must hold the same disk.
    if (std::system(("qemu-img compare -q -f " + qemu_format + " -F " + qemu_format + " '" +
                     parent.string() + "' '" + qparent.string() + "'")
                        .c_str()) != 0)
      Die("the two merged parents differ");
  }
  const Summary o = Summarize(ours);
  const Summary q = Summarize(qemu);
  std::printf("%-28s %9s %9s %9s %14s %14s\n", "", "median s", "fastest", "slowest", "parent bytes",
              "allocated");
  std::printf("%-28s %9.3f %9.3f %9.3f %14llu %14llu\n", "MergeVirtualDisk", o.median, o.fastest,
              o.slowest, static_cast<unsigned long long>(ours_size.apparent),
              static_cast<unsigned long long>(ours_size.allocated));
  std::printf("%-28s %9.3f %9.3f %9.3f %14llu %14llu\n", "qemu-img commit -d + fsync", q.median,
              q.fastest, q.slowest, static_cast<unsigned long long>(qemu_size.apparent),
              static_cast<unsigned long long>(qemu_size.allocated));
  std::printf("ratio ours/qemu (median): %.2f\n", o.median / q.median);
  fs::remove_all(dir);
  return 0;
}
