// VHDX against independent implementations: files that qemu-img/qemu-io create and write read
// identically here; files created and written here pass `qemu-img check`, compare equal to our
// raw reading with `qemu-img compare`, and read identically through libvhdi (loaded with dlopen,
// so the unit tests need no link-time dependency). Tests whose tool is missing skip themselves.
// Under Wine the qemu tools run on the host (host_shell.h); libvhdi, a Linux library, does not.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifndef _WIN32
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "host_shell.h"
#include "test_support.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhdx/vhdx_image.h"
#include "formats/vhdx/vhdx_provider.h"

namespace vdisk {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1024 * 1024;

using vdisk_unit::TempDir;

const ProviderRegistry& Registry() {
  static const ProviderRegistry registry = [] {
    ProviderRegistry r;
    r.Register(MakeVhdxProvider());
    return r;
  }();
  return registry;
}

bool HaveTool(const char* name) { return !vdisk_unit::HostTool(name).empty(); }

// Runs a shell command; returns its exit status and its output in `output` if given.
int Sh(const std::string& command, std::string* output = nullptr) {
  return vdisk_unit::HostShell(command, output);
}

std::string Q(const fs::path& path) { return vdisk_unit::ShellQuote(path); }

std::vector<std::byte> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

std::vector<std::byte> OurRead(const fs::path& path) {
  DiskOpenRequest request;
  request.path = path;
  auto disk = VirtualDisk::Open(Registry(), request);
  EXPECT_TRUE(disk.ok()) << path << ": " << disk.status().message();
  if (!disk.ok()) return {};
  std::vector<std::byte> out((*disk)->size());
  const Status status = (*disk)->Read(0, out);
  EXPECT_TRUE(status.ok()) << status.message();
  return out;
}

void WriteRaw(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Our file must pass qemu-img check and read in qemu exactly as it reads here.
void QemuAgrees(const fs::path& image, TempDir& dir) {
  std::string output;
  EXPECT_EQ(Sh("qemu-img check -f vhdx " + Q(image), &output), 0) << output;
  const auto ours = OurRead(image);
  WriteRaw(dir / "ours.raw", ours);
  EXPECT_EQ(Sh("qemu-img compare -f vhdx -F raw " + Q(image) + " " + Q(dir / "ours.raw"), &output),
            0)
      << output;
}

std::vector<std::byte> Pattern(std::uint64_t seed, std::size_t size) {
  std::vector<std::byte> out(size);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, size - i));
  }
  return out;
}

// --- libvhdi through dlopen ------------------------------------------------------------------

#ifndef _WIN32

class Libvhdi {
 public:
  static Libvhdi* Get() {
    static Libvhdi* instance = [] {
      auto* lib = new Libvhdi;  // NOLINT: lives for the process, like the library it wraps
      if (!lib->Load()) {
        delete lib;  // NOLINT
        return static_cast<Libvhdi*>(nullptr);
      }
      return lib;
    }();
    return instance;
  }

  // Reads the whole disk at the top of `chain` (top first), or fails with a message.
  std::vector<std::byte> ReadChain(const std::vector<fs::path>& chain, std::string& error) {
    std::vector<void*> files;
    std::vector<std::byte> out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      void* file = nullptr;
      void* e = nullptr;
      if (initialize_(&file, &e) != 1 || open_(file, it->c_str(), 1, &e) != 1) {
        error = "libvhdi cannot open " + it->string();
        if (e) error_free_(&e);
        if (file) free_(&file, nullptr);
        break;
      }
      if (!files.empty() && set_parent_(file, files.back(), &e) != 1) {
        error = "libvhdi_file_set_parent_file " + it->string();
        if (e) error_free_(&e);
      }
      files.push_back(file);
    }
    if (files.size() == chain.size()) {
      std::uint64_t size = 0;
      void* e = nullptr;
      if (media_size_(files.back(), &size, &e) == 1) {
        out.resize(size);
        for (std::uint64_t at = 0; at < size && error.empty(); at += 4 * kMiB) {
          const std::size_t n =
              static_cast<std::size_t>(std::min<std::uint64_t>(4 * kMiB, size - at));
          if (read_(files.back(), out.data() + at, n, static_cast<std::int64_t>(at), &e) !=
              static_cast<long>(n)) {
            error = "libvhdi read at " + std::to_string(at);
          }
        }
      } else {
        error = "libvhdi_file_get_media_size";
      }
      if (e) error_free_(&e);
    }
    for (void* f : files) {
      close_(f, nullptr);
      free_(&f, nullptr);
    }
    return out;
  }

  // libvhdi's idea of the file's identifier, or of its parent's (raw GUID bytes).
  bool Identifier(const fs::path& path, bool of_parent, Guid& out) {
    void* file = nullptr;
    void* e = nullptr;
    if (initialize_(&file, &e) != 1 || open_(file, path.c_str(), 1, &e) != 1) return false;
    const bool ok =
        (of_parent ? get_parent_identifier_ : get_identifier_)(file, out.bytes.data(), 16, &e) == 1;
    if (e) error_free_(&e);
    close_(file, nullptr);
    free_(&file, nullptr);
    return ok;
  }

 private:
  template <typename F>
  bool Sym(F& f, const char* name) {
    f = reinterpret_cast<F>(::dlsym(handle_, name));
    return f != nullptr;
  }
  bool Load() {
    handle_ = ::dlopen("libvhdi.so.1", RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) return false;
    return Sym(initialize_, "libvhdi_file_initialize") && Sym(free_, "libvhdi_file_free") &&
           Sym(open_, "libvhdi_file_open") && Sym(close_, "libvhdi_file_close") &&
           Sym(read_, "libvhdi_file_read_buffer_at_offset") &&
           Sym(media_size_, "libvhdi_file_get_media_size") &&
           Sym(set_parent_, "libvhdi_file_set_parent_file") &&
           Sym(get_identifier_, "libvhdi_file_get_identifier") &&
           Sym(get_parent_identifier_, "libvhdi_file_get_parent_identifier") &&
           Sym(error_free_, "libvhdi_error_free");
  }

  void* handle_ = nullptr;
  int (*initialize_)(void**, void**) = nullptr;
  int (*free_)(void**, void**) = nullptr;
  int (*open_)(void*, const char*, int, void**) = nullptr;
  int (*close_)(void*, void**) = nullptr;
  long (*read_)(void*, void*, std::size_t, std::int64_t, void**) = nullptr;
  int (*media_size_)(void*, std::uint64_t*, void**) = nullptr;
  int (*set_parent_)(void*, void*, void**) = nullptr;
  int (*get_identifier_)(void*, std::uint8_t*, std::size_t, void**) = nullptr;
  int (*get_parent_identifier_)(void*, std::uint8_t*, std::size_t, void**) = nullptr;
  void (*error_free_)(void**) = nullptr;
};

#endif  // _WIN32

#define REQUIRE_TOOL(name) \
  if (!HaveTool(name)) GTEST_SKIP() << name << " is not installed"

// --- qemu writes, we read ----------------------------------------------------------------------

TEST(VhdxInterop, ReadsFilesThatQemuCreatedAndWrote) {
  REQUIRE_TOOL("qemu-img");
  REQUIRE_TOOL("qemu-io");
  TempDir dir;
  for (const char* subformat : {"dynamic", "fixed"}) {
    for (const char* block : {"1M", "8M", "32M", "256M"}) {
      for (const char* zero : {"off", "on"}) {
        SCOPED_TRACE(std::string(subformat) + ", block_size=" + block +
                     ", block_state_zero=" + zero);
        const fs::path image = dir / "qemu.vhdx";
        fs::remove(image);
        std::string output;
        ASSERT_EQ(
            Sh("qemu-img create -q -f vhdx -o subformat=" + std::string(subformat) +
                   ",block_size=" + block + ",block_state_zero=" + zero + " " + Q(image) + " 80M",
               &output),
            0)
            << output;
        ASSERT_EQ(Sh("qemu-io -f vhdx -c 'write -P 0x5a 1M 1536k' -c 'write -P 0xa5 7340544 9216' "
                     "-c 'write -P 0x33 40M 8M' -c 'write -P 0x11 80740352 4096' " +
                         Q(image),
                     &output),
                  0)
            << output;
        ASSERT_EQ(
            Sh("qemu-img convert -f vhdx -O raw " + Q(image) + " " + Q(dir / "qemu.raw"), &output),
            0)
            << output;
        const auto ours = OurRead(image);
        ASSERT_TRUE(ours == ReadFile(dir / "qemu.raw")) << "our reading differs from qemu's";
        // And our writes into qemu's file keep it valid for qemu.
        {
          DiskOpenRequest request;
          request.path = image;
          request.options.read_only = false;
          auto disk = VirtualDisk::Open(Registry(), request);
          ASSERT_TRUE(disk.ok()) << disk.status().message();
          ASSERT_TRUE((*disk)->Write(20 * kMiB - 4096, Pattern(1, 3 * kMiB)).ok());
          ASSERT_TRUE((*disk)->Write(kMiB, Pattern(2, 8192)).ok());
          ASSERT_TRUE((*disk)->top().SetUserMetadata(Guid::Random(), Pattern(3, 300)).ok());
        }
        ASSERT_NO_FATAL_FAILURE(QemuAgrees(image, dir));
      }
    }
  }
}

// --- we write, qemu and libvhdi read -----------------------------------------------------------

struct OurDisk {
  DiskSubtype subtype;
  std::uint32_t block_size;
  std::uint32_t logical;
};

void CreateAndWrite(const fs::path& path, const OurDisk& spec, std::uint64_t size,
                    const fs::path& parent, std::uint64_t seed) {
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhdx;
  request.options.subtype = spec.subtype;
  request.options.virtual_size = size;
  request.options.block_size = spec.block_size;
  request.options.logical_sector_size = spec.logical;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  ASSERT_TRUE(disk.ok()) << disk.status().message();
  std::mt19937_64 rng(seed);
  const std::uint64_t sector = (*disk)->sector_size();
  for (int i = 0; i < 25; ++i) {
    const std::uint64_t len = (rng() % 96 + 1) * sector * (i % 5 == 0 ? 64 : 1);
    const std::uint64_t offset = (rng() % (((*disk)->size() - len) / sector)) * sector;
    ASSERT_TRUE((*disk)->Write(offset, Pattern(rng(), len)).ok());
  }
}

TEST(VhdxInterop, QemuChecksAndReadsOurFiles) {
  REQUIRE_TOOL("qemu-img");
  TempDir dir;
  // qemu 7.2 refuses VHDX files with 4096-byte logical sectors ("Operation not supported"), so
  // those are checked with libvhdi only.
  const OurDisk disks[] = {
      {DiskSubtype::kDynamic, 1 * kMiB, 512},   {DiskSubtype::kDynamic, 32 * kMiB, 512},
      {DiskSubtype::kDynamic, 256 * kMiB, 512}, {DiskSubtype::kFixed, 8 * kMiB, 512},
      {DiskSubtype::kFixed, 1 * kMiB, 512},
  };
  for (const OurDisk& spec : disks) {
    SCOPED_TRACE("subtype " + std::to_string(static_cast<int>(spec.subtype)) + ", block " +
                 std::to_string(spec.block_size) + ", sector " + std::to_string(spec.logical));
    const fs::path image = dir / "ours.vhdx";
    fs::remove(image);
    ASSERT_NO_FATAL_FAILURE(CreateAndWrite(image, spec, 96 * kMiB + 8192, {}, spec.block_size));
    ASSERT_NO_FATAL_FAILURE(QemuAgrees(image, dir));
    std::string info;
    ASSERT_EQ(Sh("qemu-img info --output=json " + Q(image), &info), 0) << info;
    EXPECT_NE(info.find("\"virtual-size\": " + std::to_string(96 * kMiB + 8192)), std::string::npos)
        << info;
  }
}

TEST(VhdxInterop, LibvhdiReadsOurFilesAndChains) {
#ifdef _WIN32
  GTEST_SKIP() << "libvhdi is a Linux library; the Linux run reads these files through it";
#else
  Libvhdi* libvhdi = Libvhdi::Get();
  if (libvhdi == nullptr) GTEST_SKIP() << "libvhdi.so.1 is not installed";
  TempDir dir;
  for (std::uint32_t logical : {512u, 4096u}) {
    SCOPED_TRACE("logical sector " + std::to_string(logical));
    const std::uint64_t size = 48 * kMiB;
    const fs::path fixed = dir / "fixed.vhdx";
    const fs::path base = dir / "base.vhdx";
    const fs::path mid = dir / "mid.avhdx";
    const fs::path top = dir / "top.avhdx";
    for (const auto& p : {fixed, base, mid, top}) fs::remove(p);
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(fixed, {DiskSubtype::kFixed, kMiB, logical}, size, {}, 1));
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(base, {DiskSubtype::kDynamic, 2 * kMiB, logical}, size, {}, 2));
    ASSERT_NO_FATAL_FAILURE(CreateAndWrite(mid, {DiskSubtype::kDifferencing, kMiB, 0}, 0, base, 3));
    ASSERT_NO_FATAL_FAILURE(
        CreateAndWrite(top, {DiskSubtype::kDifferencing, 4 * kMiB, 0}, 0, mid, 4));
    for (const auto& chain :
         std::vector<std::vector<fs::path>>{{fixed}, {base}, {mid, base}, {top, mid, base}}) {
      SCOPED_TRACE(chain.front().filename().string());
      std::string error;
      const auto theirs = libvhdi->ReadChain(chain, error);
      ASSERT_TRUE(error.empty()) << error;
      EXPECT_TRUE(theirs == OurRead(chain.front())) << "libvhdi reads differently";
    }
    // libvhdi finds the child's parent by the DataWriteGuid we recorded.
    Guid mid_parent, base_id;
    ASSERT_TRUE(libvhdi->Identifier(mid, /*of_parent=*/true, mid_parent));
    ASSERT_TRUE(libvhdi->Identifier(base, /*of_parent=*/false, base_id));
    EXPECT_EQ(mid_parent, base_id);
  }
#endif
}

}  // namespace
}  // namespace vdisk
