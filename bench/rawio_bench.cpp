// rawio_bench [DIR] [--size-mib N] [--ops N] [--reps N] [--seed N] [--keep] [--only TEXT]
//             [--fill-cache]
//
// Raw I/O through the VirtDisk API against plain pread/pwrite on a raw file holding the same
// data, as a client of Microsoft's RawIO sample pattern sees it:
//  1. creates a dynamic VHD (default 1 GiB, 2 MiB blocks) with CreateVirtualDisk and a raw file
//     in DIR (default: a new directory under $TMPDIR or /tmp), attaches the VHD with
//     ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST and fills both with the same data, so that every
//     read hits an allocated block and every later write lands in one (no allocation, so the
//     library's write hardening never flushes during the measurements);
//  2. drops the files' pages from the page cache (fdatasync, POSIX_FADV_DONTNEED) and reads
//     everything once, so every file is cached as reads cache it (readahead's folios) rather
//     than as its write history left it: a file written in 1 MiB pieces on a 2 MiB boundary
//     holds 2 MiB folios, the VHD's blocks (4 KiB-aligned, written around their bitmaps) smaller
//     ones, and that alone moves random 4 KiB reads by 5-10%; --fill-cache keeps the cache the
//     fill left (the earlier behaviour);
//  3. measures, after one warm-up round, REPS rounds with the variants interleaved (the order
//     rotates every round):
//     - sequential 1 MiB reads of the whole disk;
//     - OPS random 4 KiB reads and writes at the same seeded offsets, through
//         ReadFile/WriteFile with a NULL OVERLAPPED after SetFilePointerEx (synchronous),
//         ReadFile/WriteFile with an OVERLAPPED offset + GetOverlappedResult(wait), one at a time,
//         ReadFile with 16 OVERLAPPED requests in flight,
//         pread/pwrite on the raw file;
//     the writes thus measure the library's overhead on top of writing into already dirty
//     page-cache pages: with clean pages the cost of a 4 KiB pwrite on this kernel (6.18, ext4
//     with large folios) swings 2-20 us with the file's history and writeback, which would drown
//     the difference being measured;
//         pread/pwrite on the VHD file itself at the offsets the BAT maps them to (the "floor": the
//         same page-cache work the library has to do, without the library);
//  4. prints the best round of each variant (ops/s, MB/s, mean latency), the ratio to the faster
//     raw file and, for the API, the ratio to the floor, and checks that every path holds the
//     same bytes afterwards.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <virtdisk.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::uint32_t kIoSize = 4096;
constexpr std::uint32_t kSeqSize = 1 << 20;
constexpr int kQueueDepth = 16;

struct Options {
  std::filesystem::path dir;
  bool own_dir = false;
  std::uint64_t size = std::uint64_t{1} << 30;
  std::uint64_t ops = 200000;
  int reps = 3;
  std::uint64_t seed = 20240601;
  bool keep = false;
  std::string only;  // --only: run just the variants whose name contains this ("A|B": A or B)
  bool fill_cache = false;  // --fill-cache: measure with the page cache as the fill left it
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rawio_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(DWORD error, const char* what) {
  if (error != ERROR_SUCCESS) Die(std::string(what) + " failed with " + std::to_string(error));
}

std::basic_string<WCHAR> Wide(const std::filesystem::path& path) {
  const std::wstring w = path.wstring();
  return {w.begin(), w.end()};
}

// splitmix64: cheap, deterministic fill data.
void Fill(std::uint64_t seed, std::uint8_t* out, std::size_t n) {
  std::uint64_t state = seed;
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(out + i, &z, 8);
  }
}

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// --- the ways a client reads and writes ------------------------------------------------------------

void SeekTo(HANDLE h, std::uint64_t offset) {
  LARGE_INTEGER to{};
  to.QuadPart = static_cast<LONGLONG>(offset);
  if (!SetFilePointerEx(h, to, nullptr, FILE_BEGIN)) Check(GetLastError(), "SetFilePointerEx");
}

void ReadSync(HANDLE h, std::uint64_t offset, void* buffer, DWORD length) {
  SeekTo(h, offset);
  DWORD n = 0;
  if (!ReadFile(h, buffer, length, &n, nullptr)) Check(GetLastError(), "ReadFile");
  if (n != length) Die("short ReadFile");
}

void WriteSync(HANDLE h, std::uint64_t offset, const void* buffer, DWORD length) {
  SeekTo(h, offset);
  DWORD n = 0;
  if (!WriteFile(h, buffer, length, &n, nullptr)) Check(GetLastError(), "WriteFile");
  if (n != length) Die("short WriteFile");
}

void SetOffset(OVERLAPPED& ov, std::uint64_t offset) {
  ov = OVERLAPPED{};
  ov.Offset = static_cast<DWORD>(offset);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
}

// Starts a request; true if it completed at once (it may, as on Windows).
bool Start(HANDLE h, bool write, OVERLAPPED& ov, void* buffer, DWORD length) {
  DWORD n = 0;
  const BOOL done = write ? WriteFile(h, buffer, length, &n, &ov) : ReadFile(h, buffer, length, &n, &ov);
  if (done) return true;
  if (GetLastError() != ERROR_IO_PENDING) Check(GetLastError(), write ? "WriteFile" : "ReadFile");
  return false;
}

void Finish(HANDLE h, OVERLAPPED& ov, DWORD length) {
  DWORD n = 0;
  if (!GetOverlappedResult(h, &ov, &n, TRUE)) Check(GetLastError(), "GetOverlappedResult");
  if (n != length) Die("short overlapped transfer");
}

void Overlapped(HANDLE h, bool write, std::uint64_t offset, void* buffer, DWORD length) {
  OVERLAPPED ov;
  SetOffset(ov, offset);
  Start(h, write, ov, buffer, length);
  Finish(h, ov, length);
}

void Pread(int fd, std::uint64_t offset, void* buffer, std::size_t length) {
  if (pread(fd, buffer, length, static_cast<off_t>(offset)) != static_cast<ssize_t>(length))
    Die("pread failed");
}

void Pwrite(int fd, std::uint64_t offset, const void* buffer, std::size_t length) {
  if (pwrite(fd, buffer, length, static_cast<off_t>(offset)) != static_cast<ssize_t>(length))
    Die("pwrite failed");
}

// --- measurement ---------------------------------------------------------------------------------

struct Variant {
  std::string name;
  bool raw = false;    // a raw-file baseline
  bool write = false;
  bool floor = false;  // pread/pwrite at the VHD file's mapped offsets
  std::uint32_t io_size = kIoSize;
  // Runs every operation; returns a checksum of what was read (0 for writes).
  std::function<std::uint64_t()> run;
  std::vector<double> seconds;
  std::uint64_t checksum = 0;
  double Best() const { return *std::min_element(seconds.begin(), seconds.end()); }
};

std::uint64_t Word(const std::uint8_t* buffer, std::uint64_t offset) {
  std::uint64_t word;
  std::memcpy(&word, buffer + (offset >> 12) % (kIoSize / 8) * 8, 8);
  return word;
}

// One warm-up round (not counted: it brings every page the runs touch into the cache and, for
// the writes, dirties it), then `reps` measured rounds.
void Measure(std::vector<Variant>& variants, int reps, const std::string& only) {
  if (!only.empty()) {
    // "A|B": the variants whose name contains A or B.
    std::vector<std::string> wanted;
    for (std::size_t start = 0;;) {
      const std::size_t bar = only.find('|', start);
      wanted.push_back(only.substr(start, bar - start));
      if (bar == std::string::npos) break;
      start = bar + 1;
    }
    std::erase_if(variants, [&](const Variant& v) {
      return std::none_of(wanted.begin(), wanted.end(), [&](const std::string& w) {
        return v.name.find(w) != std::string::npos;
      });
    });
  }
  for (int rep = 0; rep <= reps; ++rep) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(rep)) % variants.size()];
      const auto t = Clock::now();
      v.checksum = v.run();
      if (rep > 0) v.seconds.push_back(Seconds(t));
    }
  }
}

void Print(const std::vector<Variant>& variants, std::uint64_t ops) {
  std::printf("%-34s %12s %10s %10s %9s %9s\n", "variant", "ops/s", "MB/s", "us/op", "vs raw",
              "vs floor");
  for (const Variant& v : variants) {
    const double best = v.Best();
    const double ops_s = static_cast<double>(ops) / best;
    // Against the faster raw baseline of the same direction: never flattering.
    double raw_best = 0;
    for (const Variant& b : variants)
      if (b.raw && b.write == v.write && (raw_best == 0 || b.Best() < raw_best)) raw_best = b.Best();
    const double ratio = raw_best / best;
    double floor_best = 0;
    for (const Variant& b : variants)
      if (b.floor && b.write == v.write) floor_best = b.Best();
    char vs_floor[16] = "";
    if (!v.raw && !v.floor && floor_best > 0)
      std::snprintf(vs_floor, sizeof vs_floor, "%8.2fx", floor_best / best);
    std::printf("%-34s %12.0f %10.1f %10.2f %8.2fx %9s\n", v.name.c_str(), ops_s,
                ops_s * v.io_size / 1e6, best / static_cast<double>(ops) * 1e6, ratio, vs_floor);
  }
}

std::uint64_t BigEndian(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Where each virtual 4 KiB of a dynamic VHD lives in its file (VHD spec: footer copy at 0, data
// offset -> dynamic header, BAT of big-endian sector numbers, each block led by its bitmap).
struct VhdMap {
  std::uint64_t block_size = 0;
  std::uint64_t bitmap_bytes = 0;
  std::vector<std::uint64_t> block_offsets;  // file offset of each block's data
  std::uint64_t FileOffset(std::uint64_t virtual_offset) const {
    return block_offsets[virtual_offset / block_size] + virtual_offset % block_size;
  }
};

VhdMap ReadVhdMap(int fd, std::uint64_t disk_size) {
  std::uint8_t footer[512];
  std::uint8_t header[1024];
  Pread(fd, 0, footer, sizeof footer);
  Pread(fd, BigEndian(footer + 16, 8), header, sizeof header);
  VhdMap map;
  const std::uint64_t table = BigEndian(header + 16, 8);
  map.block_size = BigEndian(header + 32, 4);
  map.bitmap_bytes = (map.block_size / 512 / 8 + 511) / 512 * 512;
  const std::uint64_t blocks = disk_size / map.block_size;
  std::vector<std::uint8_t> bat(blocks * 4);
  Pread(fd, table, bat.data(), bat.size());
  for (std::uint64_t b = 0; b < blocks; ++b) {
    const std::uint64_t entry = BigEndian(bat.data() + b * 4, 4);
    if (entry == 0xFFFFFFFFu) Die("block " + std::to_string(b) + " is not allocated");
    map.block_offsets.push_back(entry * 512 + map.bitmap_bytes);
  }
  return map;
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::uint64_t {
      if (i + 1 >= argc) Die("missing value after " + arg);
      return std::strtoull(argv[++i], nullptr, 0);
    };
    if (arg == "--size-mib") {
      o.size = value() << 20;
    } else if (arg == "--ops") {
      o.ops = value();
    } else if (arg == "--reps") {
      o.reps = static_cast<int>(value());
    } else if (arg == "--seed") {
      o.seed = value();
    } else if (arg == "--keep") {
      o.keep = true;
    } else if (arg == "--fill-cache") {
      o.fill_cache = true;
    } else if (arg == "--only") {
      if (i + 1 >= argc) Die("missing value after --only");
      o.only = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: %s [DIR] [--size-mib N] [--ops N] [--reps N] [--seed N] [--keep] [--only TEXT] [--fill-cache]\n",
                  argv[0]);
      std::exit(0);
    } else if (!arg.empty() && arg[0] != '-' && o.dir.empty()) {
      o.dir = arg;
    } else {
      Die("unknown argument " + arg);
    }
  }
  if (o.size < (std::uint64_t{4} << 20) || o.size % (2 << 20) != 0)
    Die("--size-mib must be an even number of at least 4");
  if (o.reps < 1 || o.ops < kQueueDepth) Die("--ops must be at least 16 and --reps positive");
  if (o.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/rawio-bench-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) Die("mkdtemp " + pattern);
    o.dir = pattern;
    o.own_dir = true;
  } else {
    std::filesystem::create_directories(o.dir);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  const auto vhd_path = o.dir / "rawio-bench.vhd";
  const auto raw_path = o.dir / "rawio-bench.raw";
  const auto raw4k_path = o.dir / "rawio-bench-4k.raw";
  std::filesystem::remove(vhd_path);
  std::filesystem::remove(raw_path);
  std::filesystem::remove(raw4k_path);

  // --- create and fill -------------------------------------------------------------------------
  VIRTUAL_STORAGE_TYPE type{VIRTUAL_STORAGE_TYPE_DEVICE_VHD, VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT};
  CREATE_VIRTUAL_DISK_PARAMETERS create{};
  create.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  create.Version2.MaximumSize = o.size;
  create.Version2.BlockSizeInBytes = 2 << 20;
  create.Version2.SectorSizeInBytes = 512;
  HANDLE h = nullptr;
  const auto wide = Wide(vhd_path);
  Check(CreateVirtualDisk(&type, wide.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                          CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &create, nullptr, &h),
        "CreateVirtualDisk");
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  Check(AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &attach,
                          nullptr),
        "AttachVirtualDisk");
  // Two raw baselines with the same bytes: one filled like the VHD (1 MiB writes), one filled
  // 4 KiB at a time. On kernels whose ext4 caches files in large folios (6.16+), 1 MiB writes
  // give 2 MiB folios, and a random 4 KiB pwrite into such a file costs several times more
  // (the buffer heads of the whole folio are walked); the VHD's block data starts on a 4 KiB
  // boundary but not on a 2 MiB one, so its folios are smaller. Ratios use the faster baseline.
  const int raw = open(raw_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (raw < 0) Die("cannot create " + raw_path.string());
  const int raw4k = open(raw4k_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (raw4k < 0) Die("cannot create " + raw4k_path.string());

  std::vector<std::uint8_t> chunk(kSeqSize);
  double fill_vhd = 0;
  double fill_raw = 0;
  for (std::uint64_t offset = 0; offset < o.size; offset += kSeqSize) {
    Fill(o.seed ^ offset, chunk.data(), kSeqSize);
    auto t = Clock::now();
    WriteSync(h, offset, chunk.data(), kSeqSize);
    fill_vhd += Seconds(t);
    t = Clock::now();
    Pwrite(raw, offset, chunk.data(), kSeqSize);
    fill_raw += Seconds(t);
    for (std::uint32_t i = 0; i < kSeqSize; i += kIoSize)
      Pwrite(raw4k, offset + i, chunk.data() + i, kIoSize);
  }
  const auto settle = [&] {
    if (!FlushFileBuffers(h)) Check(GetLastError(), "FlushFileBuffers");
    if (fdatasync(raw) != 0 || fdatasync(raw4k) != 0) Die("fdatasync failed");
  };
  settle();

  // The VHD file itself, for the floor.
  const int vhd_file = open(vhd_path.c_str(), O_RDWR | O_CLOEXEC);
  if (vhd_file < 0) Die("cannot open " + vhd_path.string());
  const VhdMap map = ReadVhdMap(vhd_file, o.size);

  if (!o.fill_cache) {
    for (const int fd : {raw, raw4k, vhd_file}) {
      if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) Die("posix_fadvise failed");
    }
  }

  // --- warm the page cache, checking that both hold the same data ----------------------------------
  {
    std::vector<std::uint8_t> other(kSeqSize);
    for (std::uint64_t offset = 0; offset < o.size; offset += kSeqSize) {
      Overlapped(h, false, offset, chunk.data(), kSeqSize);
      Pread(raw, offset, other.data(), kSeqSize);
      if (chunk != other) Die("the VHD and the raw file differ at offset " + std::to_string(offset));
      Pread(raw4k, offset, other.data(), kSeqSize);
      if (chunk != other) Die("the VHD and the 4K raw file differ at offset " + std::to_string(offset));
      Pread(vhd_file, map.FileOffset(offset), other.data(), kSeqSize);
      if (chunk != other) Die("the VHD map is wrong at offset " + std::to_string(offset));
    }
  }

  // --- sequential reads ----------------------------------------------------------------------------
  const std::uint64_t seq_ops = o.size / kSeqSize;
  std::vector<Variant> sequential;
  auto seq_loop = [&](auto read_one) {
    return [&, read_one]() -> std::uint64_t {
      std::uint64_t sum = 0;
      for (std::uint64_t offset = 0; offset < o.size; offset += kSeqSize) {
        read_one(offset);
        sum += Word(chunk.data(), offset);
      }
      return sum;
    };
  };
  sequential.push_back({"seq 1 MiB pread (raw, 1M-filled)", true, false, false, kSeqSize,
                        seq_loop([&](std::uint64_t off) { Pread(raw, off, chunk.data(), kSeqSize); })});
  sequential.push_back({"seq 1 MiB pread (raw, 4K-filled)", true, false, false, kSeqSize,
                        seq_loop([&](std::uint64_t off) { Pread(raw4k, off, chunk.data(), kSeqSize); })});
  sequential.push_back({"seq 1 MiB pread (VHD file, floor)", false, false, true, kSeqSize,
                        seq_loop([&](std::uint64_t off) {
                          Pread(vhd_file, map.FileOffset(off), chunk.data(), kSeqSize);
                        })});
  sequential.push_back({"seq 1 MiB ReadFile sync", false, false, false, kSeqSize,
                        seq_loop([&](std::uint64_t off) { ReadSync(h, off, chunk.data(), kSeqSize); })});
  sequential.push_back({"seq 1 MiB ReadFile OVERLAPPED", false, false, false, kSeqSize,
                        seq_loop([&](std::uint64_t off) {
                          Overlapped(h, false, off, chunk.data(), kSeqSize);
                        })});
  Measure(sequential, o.reps, o.only);

  // --- random 4 KiB --------------------------------------------------------------------------------
  std::vector<std::uint64_t> offsets(o.ops);
  {
    std::mt19937_64 rng(o.seed);
    std::uniform_int_distribution<std::uint64_t> pick(0, o.size / kIoSize - 1);
    for (auto& offset : offsets) offset = pick(rng) * kIoSize;
  }
  // Reads land in `buffer`; writes store `pattern`, the same bytes on both sides, so after the
  // first write run both files agree at every offset whatever the order of the variants.
  alignas(4096) static std::uint8_t buffer[kIoSize];
  alignas(4096) static std::uint8_t pattern[kIoSize];
  static std::array<std::array<std::uint8_t, kIoSize>, kQueueDepth> slots;
  Fill(o.seed + 1, pattern, kIoSize);
  auto loop = [&](auto one, bool write) {
    return [&, one, write]() -> std::uint64_t {
      std::uint64_t sum = 0;
      for (const std::uint64_t offset : offsets) {
        one(offset, write ? pattern : buffer);
        if (!write) sum += Word(buffer, offset);
      }
      return sum;
    };
  };
  auto queued_reads = [&]() -> std::uint64_t {
    std::array<OVERLAPPED, kQueueDepth> ovs;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < offsets.size() + kQueueDepth; ++i) {
      const std::size_t slot = i % kQueueDepth;
      if (i >= kQueueDepth) {
        Finish(h, ovs[slot], kIoSize);
        sum += Word(slots[slot].data(), offsets[i - kQueueDepth]);
      }
      if (i < offsets.size()) {
        SetOffset(ovs[slot], offsets[i]);
        Start(h, false, ovs[slot], slots[slot].data(), kIoSize);
      }
    }
    return sum;
  };
  std::vector<Variant> random;
  random.push_back({"rand 4 KiB pread (raw, 1M-filled)", true, false, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { Pread(raw, off, b, kIoSize); },
                         false)});
  random.push_back({"rand 4 KiB pread (raw, 4K-filled)", true, false, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { Pread(raw4k, off, b, kIoSize); },
                         false)});
  random.push_back({"rand 4 KiB ReadFile sync", false, false, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { ReadSync(h, off, b, kIoSize); },
                         false)});
  random.push_back({"rand 4 KiB ReadFile OVERLAPPED", false, false, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) {
                      Overlapped(h, false, off, b, kIoSize);
                    }, false)});
  random.push_back({"rand 4 KiB ReadFile OVL x16", false, false, false, kIoSize, queued_reads});
  random.push_back({"rand 4 KiB pread (VHD file, floor)", false, false, true, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) {
                      Pread(vhd_file, map.FileOffset(off), b, kIoSize);
                    }, false)});
  random.push_back({"rand 4 KiB pwrite (VHD file, floor)", false, true, true, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) {
                      Pwrite(vhd_file, map.FileOffset(off), b, kIoSize);
                    }, true)});
  random.push_back({"rand 4 KiB pwrite (raw, 1M-filled)", true, true, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { Pwrite(raw, off, b, kIoSize); },
                         true)});
  random.push_back({"rand 4 KiB pwrite (raw, 4K-filled)", true, true, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { Pwrite(raw4k, off, b, kIoSize); },
                         true)});
  random.push_back({"rand 4 KiB WriteFile sync", false, true, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) { WriteSync(h, off, b, kIoSize); },
                         true)});
  random.push_back({"rand 4 KiB WriteFile OVERLAPPED", false, true, false, kIoSize,
                    loop([&](std::uint64_t off, std::uint8_t* b) {
                      Overlapped(h, true, off, b, kIoSize);
                    }, true)});
  settle();
  Measure(random, o.reps, o.only);

  // --- consistency ---------------------------------------------------------------------------------
  for (const std::uint64_t offset : offsets) {
    std::uint8_t a[kIoSize];
    std::uint8_t b[kIoSize];
    ReadSync(h, offset, a, kIoSize);
    Pread(raw, offset, b, kIoSize);
    if (std::memcmp(a, b, kIoSize) != 0)
      Die("after the writes the VHD and the raw file differ at " + std::to_string(offset));
    Pread(raw4k, offset, b, kIoSize);
    if (std::memcmp(a, b, kIoSize) != 0)
      Die("after the writes the VHD and the 4K raw file differ at " + std::to_string(offset));
  }
  for (const auto* group : {&sequential, &random}) {
    // The read variants of the last round read the same data.
    for (const Variant& v : *group) {
      if (!v.write && v.checksum != group->front().checksum)
        Die(v.name + " read different bytes than " + group->front().name);
    }
  }

  // --- report --------------------------------------------------------------------------------------
  std::printf("rawio_bench: %llu MiB dynamic VHD (2 MiB blocks, all allocated) vs raw files, in %s\n",
              static_cast<unsigned long long>(o.size >> 20), o.dir.c_str());
  std::printf("%s; best of %d interleaved rounds after a warm-up round; random: %llu ops per run, same "
              "seeded offsets for every variant; one request at a time unless \"x16\" (16 in "
              "flight)\n\n",
              o.fill_cache ? "warm page cache as the fill left it"
                           : "warm page cache, refilled by reads after the fill",
              o.reps, static_cast<unsigned long long>(o.ops));
  Print(sequential, seq_ops);
  std::printf("\n");
  Print(random, o.ops);
  std::printf("\nfill (sequential 1 MiB writes allocating every block, once, interleaved): "
              "WriteFile sync %.0f MB/s, pwrite %.0f MB/s\n",
              static_cast<double>(o.size) / fill_vhd / 1e6,
              static_cast<double>(o.size) / fill_raw / 1e6);

  std::printf("\"vs raw\": ops/s relative to the faster raw-file baseline of the same direction; "
              "\"vs floor\": relative to pread/pwrite on the VHD file at the mapped offsets "
              "(the same page cache, without the library)\n");

  CloseHandle(h);
  close(raw);
  close(raw4k);
  close(vhd_file);
  if (!o.keep) {
    std::filesystem::remove(vhd_path);
    std::filesystem::remove(raw_path);
    std::filesystem::remove(raw4k_path);
    if (o.own_dir) std::filesystem::remove(o.dir);
  }
  return 0;
}
