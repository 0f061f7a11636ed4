// Writes seed corpora into a directory:
//   seed_gen vhd DIRECTORY: small VHDs from our writer (the smallest block it writes is 512 KiB,
//     so each has at most one block allocated): dynamic, fixed, and differencing children of fuzz_support.h's fixed parent, with sectors
//     written (so their bitmaps are partly set) and locators naming "parent.vhd" beside them.
//   seed_gen sd DIRECTORY: security descriptors, binary, as AttachVirtualDisk gets them, each
//     with its SDDL in the file name's comment below; prefixed by sd_fuzz's layout byte.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "formats/vhd/vhd_provider.h"
#include "../support/provider_registry.h"
#include "fuzz_support.h"

namespace fs = std::filesystem;
using namespace vdisk;  // NOLINT(build/namespaces): a small tool

namespace {

const ProviderRegistry& Registry() { return vdisk_testing::RegistryOf<MakeVhdProvider>(); }

using fuzz::Check;

// Creates `path` (removed first) and writes `sectors` sectors of 0xC3 at each of `offsets`.
bool MakeVhd(const fs::path& path, DiskSubtype subtype, std::uint64_t size, std::uint32_t block,
             const fs::path& parent, const std::vector<std::uint64_t>& offsets,
             std::uint32_t sectors) {
  fs::remove(path);
  DiskCreateRequest request;
  request.path = path;
  request.format = DiskFormat::kVhd;
  request.options.subtype = subtype;
  request.options.virtual_size = size;
  request.options.block_size = block;
  request.parent_path = parent;
  auto disk = VirtualDisk::Create(Registry(), request);
  if (!disk.ok()) return Check(disk.status(), path);
  const std::vector<std::byte> data(std::size_t{512} * sectors, std::byte{0xC3});
  for (const std::uint64_t offset : offsets) {
    if (!Check((*disk)->Write(offset, data), path)) return false;
  }
  return Check((*disk)->Flush(), path);
}

int Vhd(const fs::path& dir) {
  const fs::path parent = dir / "parent.vhd";
  fs::remove(parent);
  if (!Check(fuzz::CreateVhdParent(*Registry().Find(DiskFormat::kVhd), parent), parent)) return 1;
  const bool ok =
      MakeVhd(dir / "dynamic.vhd", DiskSubtype::kDynamic, 8 << 20, 512 << 10, {},
              {0, 64 << 10}, 3) &&
      MakeVhd(dir / "fixed.vhd", DiskSubtype::kFixed, 64 << 10, 0, {}, {4096}, 1) &&
      // A few sectors in one block: its bitmap partly set, the rest falls through to the parent.
      MakeVhd(dir / "child.vhd", DiskSubtype::kDifferencing, 0, 512 << 10, parent,
              {512, 4096, 8192 + 512}, 2) &&
      // Nothing written: every read goes to the parent.
      MakeVhd(dir / "child-empty.vhd", DiskSubtype::kDifferencing, 0, 512 << 10, parent, {}, 0);
  fs::remove(parent);  // the fuzzer has its own copy
  return ok ? 0 : 1;
}

// --- security descriptors ----------------------------------------------------------------------

void Put16(std::vector<std::uint8_t>& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void Put32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A SID: S-1-<authority>-<subs...>.
std::vector<std::uint8_t> Sid(std::uint8_t authority, std::vector<std::uint32_t> subs) {
  std::vector<std::uint8_t> b = {1, static_cast<std::uint8_t>(subs.size()), 0, 0, 0, 0, 0,
                                 authority};
  for (const std::uint32_t s : subs) Put32(b, s);
  return b;
}

struct Ace {
  std::uint8_t type;   // 0 allowed, 1 denied
  std::uint8_t flags;  // 0x08 INHERIT_ONLY
  std::uint32_t mask;
  std::vector<std::uint8_t> sid;
};

std::vector<std::uint8_t> Acl(const std::vector<Ace>& aces) {
  std::vector<std::uint8_t> body;
  for (const Ace& a : aces) {
    body.push_back(a.type);
    body.push_back(a.flags);
    Put16(body, static_cast<std::uint16_t>(8 + a.sid.size()));
    Put32(body, a.mask);
    body.insert(body.end(), a.sid.begin(), a.sid.end());
  }
  std::vector<std::uint8_t> acl = {2, 0};
  Put16(acl, static_cast<std::uint16_t>(8 + body.size()));
  Put16(acl, static_cast<std::uint16_t>(aces.size()));
  Put16(acl, 0);
  acl.insert(acl.end(), body.begin(), body.end());
  return acl;
}

// A self-relative descriptor (MS-DTYP 2.4.6): owner, then the DACL if `dacl` is given.
std::vector<std::uint8_t> SelfRelative(std::uint16_t control, const std::vector<std::uint8_t>* dacl) {
  const auto owner = Sid(5, {18});  // SYSTEM
  std::vector<std::uint8_t> b = {1, 0};
  Put16(b, static_cast<std::uint16_t>(control | 0x8000));
  Put32(b, 20);  // owner
  Put32(b, 0);   // group
  Put32(b, 0);   // SACL
  Put32(b, dacl != nullptr ? static_cast<std::uint32_t>(20 + owner.size()) : 0);
  b.insert(b.end(), owner.begin(), owner.end());
  if (dacl != nullptr) b.insert(b.end(), dacl->begin(), dacl->end());
  return b;
}

int Sd(const fs::path& dir) {
  constexpr std::uint16_t kDaclPresent = 0x0004;
  const auto everyone = Sid(1, {0});
  const auto users = Sid(5, {32, 545});
  const auto system = Sid(5, {18});
  const auto authenticated = Sid(5, {11});
  const std::vector<std::uint8_t> owner_only = Acl({{0, 0, 0x10000000, system}});
  const std::vector<std::uint8_t> everyone_read = Acl({{0, 0, 0x80000000, everyone}});
  const std::vector<std::uint8_t> mixed = Acl({{1, 0, 0x10000000, everyone},
                                               {0, 0x08, 0x1, users},
                                               {0, 0, 0x00020000, authenticated},
                                               {0, 0, 0x2, users}});
  struct Seed {
    const char* name;
    std::uint8_t layout;  // sd_fuzz's first byte: 0 self-relative, 1 absolute
    std::vector<std::uint8_t> bytes;
  };
  std::vector<Seed> seeds = {
      {"no-dacl", 0, SelfRelative(0, nullptr)},                      // O:SY
      {"null-dacl", 0, SelfRelative(kDaclPresent, nullptr)},         // O:SYD:NO_ACCESS_CONTROL
      {"owner-only", 0, SelfRelative(kDaclPresent, &owner_only)},    // O:SYD:(A;;GA;;;SY)
      {"everyone-read", 0, SelfRelative(kDaclPresent, &everyone_read)},  // O:SYD:(A;;GR;;;WD)
      // O:SYD:(D;;GA;;;WD)(A;IO;0x1;;;BU)(A;;RC;;;AU)(A;;0x2;;;BU)
      {"mixed", 0, SelfRelative(kDaclPresent, &mixed)},
  };
  // Absolute: control bits, then the DACL the harness points the descriptor at.
  std::vector<std::uint8_t> absolute = {kDaclPresent, 0};
  absolute.insert(absolute.end(), mixed.begin(), mixed.end());
  seeds.push_back({"absolute-mixed", 1, absolute});
  seeds.push_back({"absolute-null-dacl", 1, {kDaclPresent, 0}});
  for (const Seed& s : seeds) {
    std::ofstream out(dir / (std::string(s.name) + ".sd"), std::ios::binary);
    out.put(static_cast<char>(s.layout));
    out.write(reinterpret_cast<const char*>(s.bytes.data()),
              static_cast<std::streamsize>(s.bytes.size()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "vhd") != 0 && std::strcmp(argv[1], "sd") != 0)) {
    std::fprintf(stderr, "usage: %s vhd|sd DIRECTORY\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[2];
  fs::create_directories(dir);
  const int rc = std::strcmp(argv[1], "vhd") == 0 ? Vhd(dir) : Sd(dir);
  if (rc == 0) std::printf("%s seeds written to %s\n", argv[1], dir.c_str());
  return rc;
}
