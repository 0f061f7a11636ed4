// VHDX benchmark, side by side with a raw file in one run.
//
//  1. Resident memory: a 64 TiB dynamic VHDX (32 MiB and 1 MiB blocks) is created, opened,
//     written at scattered places and read back; the growth of VmRSS is printed (goal < 40 MiB).
//  2. Throughput: a 1 GiB dynamic VHDX filled through the API and a raw file with the same
//     bytes; sequential 1 MiB and random 4 KiB reads and writes through ReadFile/WriteFile
//     (synchronous, at the file pointer) against pread/pwrite at the same offsets; the ratio.
//
//   build/linux/bench/vhdx_bench [dir] [--ops N]
#include <fcntl.h>
#include <unistd.h>
#include <virtdisk.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what, unsigned long code = 0) {
  std::fprintf(stderr, "vhdx_bench: %s (0x%lx)\n", what.c_str(), code);
  std::exit(1);
}

long RssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

HANDLE Create(const fs::path& path, ULONGLONG size, ULONG block) {
  fs::remove(path);
  VIRTUAL_STORAGE_TYPE type{VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT};
  CREATE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MaximumSize = size;
  p.Version2.BlockSizeInBytes = block;
  HANDLE h = nullptr;
  const std::wstring w = path.wstring();
  const DWORD e = CreateVirtualDisk(&type, w.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                                    CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, &h);
  if (e != ERROR_SUCCESS) Die("CreateVirtualDisk " + path.string(), e);
  ATTACH_VIRTUAL_DISK_PARAMETERS a{};
  a.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  const DWORD ae = AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &a, nullptr);
  if (ae != ERROR_SUCCESS) Die("AttachVirtualDisk", ae);
  return h;
}

void Io(HANDLE h, bool write, std::uint64_t offset, void* buffer, DWORD length) {
  LARGE_INTEGER at{};
  at.QuadPart = static_cast<LONGLONG>(offset);
  DWORD n = 0;
  const BOOL ok = SetFilePointerEx(h, at, nullptr, FILE_BEGIN) &&
                  (write ? WriteFile(h, buffer, length, &n, nullptr)
                         : ReadFile(h, buffer, length, &n, nullptr));
  if (!ok || n != length) Die(write ? "WriteFile" : "ReadFile", GetLastError());
}

void Memory(const fs::path& dir, ULONG block) {
  const long before = RssKib();
  long peak = before;
  {
    const fs::path path = dir / "huge.vhdx";
    HANDLE h = Create(path, 64ull << 40, block);
    std::vector<unsigned char> data(4096, 0x5A);
    std::mt19937_64 rng(7);
    for (int i = 0; i < 40; ++i) {
      const std::uint64_t offset = (rng() % ((64ull << 40) / 4096)) * 4096;
      Io(h, true, offset, data.data(), 4096);
      Io(h, false, offset, data.data(), 4096);
      peak = std::max(peak, RssKib());
    }
    CloseHandle(h);
    fs::remove(path);
  }
  std::printf("64 TiB dynamic VHDX, %2u MiB blocks: VmRSS grew %.1f MiB (goal < 40 MiB)\n",
              block >> 20, (peak - before) / 1024.0);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path() / "vdisk-vhdx-bench";
  std::uint64_t ops = 100000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--ops" && i + 1 < argc) {
      ops = std::strtoull(argv[++i], nullptr, 10);
    } else {
      dir = arg;
    }
  }
  fs::create_directories(dir);
  Memory(dir, 32u << 20);
  Memory(dir, 1u << 20);

  constexpr std::uint64_t kSize = 1ull << 30;
  constexpr std::uint64_t kSeq = 1 << 20;
  const fs::path vhdx = dir / "bench.vhdx";
  const fs::path raw_path = dir / "bench.raw";
  HANDLE h = Create(vhdx, kSize, 0);
  const int raw = ::open(raw_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (raw < 0) Die("open raw");
  std::vector<unsigned char> buffer(kSeq);
  std::mt19937_64 rng(42);
  auto time = [](auto&& body) {
    const auto start = Clock::now();
    body();
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  struct Row {
    const char* name;
    double ours;
    double peer;
    double mib;
  };
  std::vector<Row> rows;
  // Sequential writes fill both (allocating every VHDX block).
  for (auto& b : buffer) b = static_cast<unsigned char>(rng());
  const double seq_write_ours =
      time([&] { for (std::uint64_t o = 0; o < kSize; o += kSeq) Io(h, true, o, buffer.data(), kSeq); });
  const double seq_write_raw = time([&] {
    for (std::uint64_t o = 0; o < kSize; o += kSeq)
      if (::pwrite(raw, buffer.data(), kSeq, static_cast<off_t>(o)) != static_cast<ssize_t>(kSeq)) Die("pwrite");
  });
  rows.push_back({"seq 1 MiB write (allocating)", seq_write_ours, seq_write_raw, kSize / 1048576.0});
  for (int rep = 0; rep < 2; ++rep) {  // the second round is the one kept (warm cache)
    rows.resize(1);
    const double ours = time([&] { for (std::uint64_t o = 0; o < kSize; o += kSeq) Io(h, false, o, buffer.data(), kSeq); });
    const double peer = time([&] {
      for (std::uint64_t o = 0; o < kSize; o += kSeq)
        if (::pread(raw, buffer.data(), kSeq, static_cast<off_t>(o)) != static_cast<ssize_t>(kSeq)) Die("pread");
    });
    rows.push_back({"seq 1 MiB read", ours, peer, kSize / 1048576.0});
    std::vector<std::uint64_t> offsets(ops);
    std::mt19937_64 r(rep + 1);
    for (auto& o : offsets) o = (r() % (kSize / 4096)) * 4096;
    const double rr_ours = time([&] { for (auto o : offsets) Io(h, false, o, buffer.data(), 4096); });
    const double rr_raw = time([&] {
      for (auto o : offsets)
        if (::pread(raw, buffer.data(), 4096, static_cast<off_t>(o)) != 4096) Die("pread");
    });
    rows.push_back({"rand 4 KiB read", rr_ours, rr_raw, ops * 4096 / 1048576.0});
    const double rw_ours = time([&] { for (auto o : offsets) Io(h, true, o, buffer.data(), 4096); });
    const double rw_raw = time([&] {
      for (auto o : offsets)
        if (::pwrite(raw, buffer.data(), 4096, static_cast<off_t>(o)) != 4096) Die("pwrite");
    });
    rows.push_back({"rand 4 KiB write (allocated)", rw_ours, rw_raw, ops * 4096 / 1048576.0});
  }
  std::printf("\n1 GiB dynamic VHDX (32 MiB blocks) vs raw file, %llu random ops\n",
              static_cast<unsigned long long>(ops));
  std::printf("%-32s %12s %12s %8s\n", "operation", "VHDX MB/s", "raw MB/s", "ratio");
  for (const Row& row : rows) {
    std::printf("%-32s %12.1f %12.1f %8.2f\n", row.name, row.mib * 1.048576 / row.ours,
                row.mib * 1.048576 / row.peer, row.peer / row.ours);
  }
  CloseHandle(h);
  ::close(raw);
  fs::remove_all(dir);
  return 0;
}
