// Compaction benchmark, side by side with qemu in one run.
//
// A 4 GiB dynamic VHDX (32 MiB blocks, as Windows creates) gets 1 GiB of data through the API:
// 32 blocks spread over the disk, every other one all zeros (512 MiB of zero blocks). Then, from
// identical copies with the page cache warm for both:
//   - ours: OpenVirtualDisk + CompactVirtualDisk (NULL OVERLAPPED) + CloseHandle, in place;
//   - qemu: `qemu-img convert -O vhdx` into a new file (qemu's way to compact), then fsync.
// Prints the time and the resulting file size of each, the ratio, and checks with
// `qemu-img compare` that both results read as the original.
//
//   build/linux/bench/compact_bench [--runs N] [dir]
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
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kDiskSize = 4096 * kMiB;
constexpr std::uint64_t kBlock = 32 * kMiB;

[[noreturn]] void Die(const std::string& what, unsigned long code = 0) {
  std::fprintf(stderr, "compact_bench: %s (0x%lx)\n", what.c_str(), code);
  std::exit(1);
}

void MakeSource(const fs::path& path) {
  fs::remove(path);
  VIRTUAL_STORAGE_TYPE type{VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT};
  CREATE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MaximumSize = kDiskSize;
  p.Version2.BlockSizeInBytes = static_cast<ULONG>(kBlock);
  HANDLE h = nullptr;
  const std::wstring w = path.wstring();
  DWORD e = CreateVirtualDisk(&type, w.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                              CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, &h);
  if (e != ERROR_SUCCESS) Die("CreateVirtualDisk " + path.string(), e);
  ATTACH_VIRTUAL_DISK_PARAMETERS a{};
  a.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  e = AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &a, nullptr);
  if (e != ERROR_SUCCESS) Die("AttachVirtualDisk", e);
  std::vector<unsigned char> data(kMiB);
  const std::vector<unsigned char> zeros(kMiB);
  std::mt19937_64 rng(1234);
  // 32 blocks of the 128, every fourth; the odd ones all zeros.
  for (std::uint64_t i = 0; i < 32; ++i) {
    const std::uint64_t block = i * 4;
    for (std::uint64_t mib = 0; mib < kBlock / kMiB; ++mib) {
      if (i % 2 == 0) {
        for (std::size_t b = 0; b < data.size(); b += 8) {
          const std::uint64_t v = rng();
          std::memcpy(data.data() + b, &v, 8);
        }
      }
      LARGE_INTEGER at{};
      at.QuadPart = static_cast<LONGLONG>(block * kBlock + mib * kMiB);
      DWORD n = 0;
      if (!SetFilePointerEx(h, at, nullptr, FILE_BEGIN) ||
          !WriteFile(h, i % 2 == 0 ? data.data() : zeros.data(), static_cast<DWORD>(kMiB), &n,
                     nullptr))
        Die("WriteFile", GetLastError());
    }
  }
  if (!FlushFileBuffers(h)) Die("FlushFileBuffers", GetLastError());
  CloseHandle(h);
}

void Fsync(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) Die("open " + p.string());
  ::fsync(fd);
  ::close(fd);
}

void WarmCache(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  std::vector<char> buffer(1 << 20);
  while (fd >= 0 && ::read(fd, buffer.data(), buffer.size()) > 0) {
  }
  if (fd >= 0) ::close(fd);
}

void Copy(const fs::path& from, const fs::path& to) {
  fs::remove(to);
  // A real copy (no reflink): the compaction must not find its blocks shared with the source.
  const std::string command = "cp --reflink=never --sparse=always '" + from.string() + "' '" +
                              to.string() + "'";
  if (std::system(command.c_str()) != 0) Die("cp failed");
  Fsync(to);
}

double Ours(const fs::path& path) {
  const std::wstring w = path.wstring();
  const auto start = Clock::now();
  VIRTUAL_STORAGE_TYPE type{};
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_1;
  open.Version1.RWDepth = OPEN_VIRTUAL_DISK_RW_DEPTH_DEFAULT;
  HANDLE h = nullptr;
  DWORD e = OpenVirtualDisk(&type, w.c_str(), VIRTUAL_DISK_ACCESS_METAOPS,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h);
  if (e != ERROR_SUCCESS) Die("OpenVirtualDisk", e);
  COMPACT_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = COMPACT_VIRTUAL_DISK_VERSION_1;
  e = CompactVirtualDisk(h, COMPACT_VIRTUAL_DISK_FLAG_NONE, &params, nullptr);
  if (e != ERROR_SUCCESS) Die("CompactVirtualDisk", e);
  CloseHandle(h);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Qemu(const fs::path& source, const fs::path& target) {
  fs::remove(target);
  const std::string command = "qemu-img convert -f vhdx -O vhdx '" + source.string() + "' '" +
                              target.string() + "'";
  const auto start = Clock::now();
  if (std::system(command.c_str()) != 0) Die("command failed: " + command);
  Fsync(target);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool SameContent(const fs::path& a, const fs::path& b) {
  const std::string command =
      "qemu-img compare -q -f vhdx -F vhdx '" + a.string() + "' '" + b.string() + "'";
  return std::system(command.c_str()) == 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  fs::path dir = fs::temp_directory_path() / "compact_bench";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      dir = arg;
    }
  }
  fs::create_directories(dir);
  const fs::path source = dir / "source.vhdx";
  const fs::path ours = dir / "ours.vhdx";
  const fs::path qemu = dir / "qemu.vhdx";
  std::printf("compact_bench: 4 GiB dynamic VHDX, 32 MiB blocks, 1 GiB written (512 MiB of it in "
              "all-zero blocks), %d runs, in %s\n",
              runs, dir.string().c_str());
  MakeSource(source);
  Fsync(source);
  const std::uint64_t source_size = fs::file_size(source);

  std::vector<double> ours_times, qemu_times;
  std::uint64_t ours_size = 0, qemu_size = 0;
  for (int run = 0; run < runs; ++run) {
    // Alternate who goes first; the source is in the page cache for both.
    Copy(source, ours);
    WarmCache(source);
    WarmCache(ours);
    if (run % 2 == 0) {
      qemu_times.push_back(Qemu(source, qemu));
      ours_times.push_back(Ours(ours));
    } else {
      ours_times.push_back(Ours(ours));
      qemu_times.push_back(Qemu(source, qemu));
    }
    ours_size = fs::file_size(ours);
    qemu_size = fs::file_size(qemu);
  }
  const bool ours_same = SameContent(source, ours);
  const bool qemu_same = SameContent(source, qemu);

  const double o = Median(ours_times);
  const double q = Median(qemu_times);
  std::printf("%-44s %9s %14s\n", "", "median s", "file bytes");
  std::printf("%-44s %9s %14llu\n", "source", "", static_cast<unsigned long long>(source_size));
  std::printf("%-44s %9.3f %14llu  content %s\n", "CompactVirtualDisk (in place)", o,
              static_cast<unsigned long long>(ours_size), ours_same ? "equal" : "DIFFERS");
  std::printf("%-44s %9.3f %14llu  content %s\n", "qemu-img convert -O vhdx (+fsync)", q,
              static_cast<unsigned long long>(qemu_size), qemu_same ? "equal" : "DIFFERS");
  std::printf("time ours/qemu: %.2f   size ours/qemu: %.3f\n", o / q,
              static_cast<double>(ours_size) / static_cast<double>(qemu_size));
  fs::remove(source);
  fs::remove(ours);
  fs::remove(qemu);
  return ours_same && qemu_same ? 0 : 1;
}
