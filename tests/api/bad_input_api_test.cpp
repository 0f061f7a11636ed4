// Bad input through the public API: every case gets a specific, documented error, and nothing
// crashes. Corrupt images are made from good ones by patching the structures the VHD
// specification describes (footer: last 512 bytes, copy at 0 for dynamic disks; dynamic header
// at the footer's data offset, 512 for our files; BAT at the header's table offset).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

std::uint32_t Be32(const std::vector<unsigned char>& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
         (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}
std::uint64_t Be64(const std::vector<unsigned char>& b, std::size_t at) {
  return (std::uint64_t{Be32(b, at)} << 32) | Be32(b, at + 4);
}
std::vector<unsigned char> Be32Bytes(std::uint32_t v) {
  return {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
          static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
}
std::vector<unsigned char> Be64Bytes(std::uint64_t v) {
  auto hi = Be32Bytes(static_cast<std::uint32_t>(v >> 32));
  auto lo = Be32Bytes(static_cast<std::uint32_t>(v));
  hi.insert(hi.end(), lo.begin(), lo.end());
  return hi;
}

// Recomputes the one's-complement checksum of the structure at `offset` (footer: 512 bytes,
// checksum at 64; dynamic header: 1024 bytes, checksum at 36).
void FixChecksum(const std::filesystem::path& file, std::uint64_t offset, std::size_t length,
                 std::size_t checksum_at) {
  auto bytes = ReadBytes(file, offset, length);
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i)
    if (i < checksum_at || i >= checksum_at + 4) sum += bytes[i];
  Patch(file, offset + checksum_at, Be32Bytes(~sum));
}

void PatchFooters(const std::filesystem::path& file, std::size_t field,
                  const std::vector<unsigned char>& value, bool fix_checksum = true) {
  const std::uint64_t end = FileSize(file) - 512;
  const bool dynamic = ReadBytes(file, 0, 8) == std::vector<unsigned char>{'c', 'o', 'n', 'e',
                                                                           'c', 't', 'i', 'x'};
  for (std::uint64_t at : dynamic ? std::vector<std::uint64_t>{0, end}
                                  : std::vector<std::uint64_t>{end}) {
    Patch(file, at + field, value);
    if (fix_checksum) FixChecksum(file, at, 512, 64);
  }
}

void PatchHeader(const std::filesystem::path& file, std::size_t field,
                 const std::vector<unsigned char>& value, bool fix_checksum = true) {
  Patch(file, 512 + field, value);
  if (fix_checksum) FixChecksum(file, 512, 1024, 36);
}

std::uint64_t BatOffset(const std::filesystem::path& file) {
  return Be64(ReadBytes(file, 512, 1024), 16);
}

class BadInput : public ::testing::Test {
 public:  // the case table's builders use these
  // A dynamic VHD with two allocated blocks (0 and 3), closed.
  std::filesystem::path Dynamic(const std::string& name) {
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVhd(dir_.Wide(name), 16 << 20, false, &h), ERROR_SUCCESS);
    EXPECT_EQ(AttachRaw(h), ERROR_SUCCESS);
    const auto data = Pattern(4096, 1);
    EXPECT_EQ(WriteAt(h, 0, data.data(), 4096), ERROR_SUCCESS);
    EXPECT_EQ(WriteAt(h, 6 << 20, data.data(), 4096), ERROR_SUCCESS);
    EXPECT_TRUE(CloseHandle(h));
    return dir_ / name;
  }
  std::filesystem::path Fixed(const std::string& name) {
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVhd(dir_.Wide(name), 4 << 20, true, &h), ERROR_SUCCESS);
    EXPECT_TRUE(CloseHandle(h));
    return dir_ / name;
  }
  std::filesystem::path Child(const std::string& name, const std::string& parent,
                              const GUID* unique_id = nullptr) {
    VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
    CREATE_VIRTUAL_DISK_PARAMETERS p{};
    p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
    const WString parent_path = dir_.Wide(parent);
    p.Version2.ParentPath = parent_path.c_str();
    if (unique_id != nullptr) p.Version2.UniqueId = *unique_id;
    HANDLE h = nullptr;
    EXPECT_EQ(CreateVirtualDisk(&type, dir_.Wide(name).c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr,
                                CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, &h),
              ERROR_SUCCESS);
    EXPECT_TRUE(CloseHandle(h));
    return dir_ / name;
  }
  GUID IdOf(const std::string& name) {
    HANDLE h = nullptr;
    EXPECT_EQ(OpenV2(dir_.Wide(name), true, &h), ERROR_SUCCESS);
    GET_VIRTUAL_DISK_INFO info{};
    info.Version = GET_VIRTUAL_DISK_INFO_IDENTIFIER;
    ULONG size = sizeof info;
    EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS);
    CloseHandle(h);
    return info.Identifier;
  }
  DWORD Open(const std::filesystem::path& file, bool read_only = true) {
    HANDLE h = nullptr;
    const DWORD e = OpenV2(ToWide(file), read_only, &h);
    if (e == ERROR_SUCCESS) CloseHandle(h);
    return e;
  }
  void WriteFileBytes(const std::filesystem::path& file, const std::vector<unsigned char>& bytes) {
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }
  TempDir dir_;
};

struct Case {
  const char* name;
  std::function<std::filesystem::path(BadInput&)> make;
  DWORD expected;
};

TEST_F(BadInput, EachCorruptImageGetsItsOwnError) {
  const Case cases[] = {
      {"fixed VHD with its footer cut short",
       [](BadInput& t) {
         auto f = t.Fixed("a.vhd");
         Truncate(f, FileSize(f) - 100);
         return f;
       },
       ERROR_VHD_DRIVE_FOOTER_MISSING},
      {"fixed VHD with a bad footer checksum",
       [](BadInput& t) {
         auto f = t.Fixed("b.vhd");
         PatchFooters(f, 64, {0, 0, 0, 1}, false);
         return f;
       },
       ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH},
      {"dynamic VHD with both footer copies' checksums bad",
       [](BadInput& t) {
         auto f = t.Dynamic("c.vhd");
         PatchFooters(f, 64, {0, 0, 0, 1}, false);
         return f;
       },
       ERROR_VHD_DRIVE_FOOTER_CHECKSUM_MISMATCH},
      {"footer format version 2.0",
       [](BadInput& t) {
         auto f = t.Dynamic("d.vhd");
         PatchFooters(f, 12, Be32Bytes(0x00020000));
         return f;
       },
       ERROR_VHD_FORMAT_UNSUPPORTED_VERSION},
      {"footer disk type 7",
       [](BadInput& t) {
         auto f = t.Fixed("e.vhd");
         PatchFooters(f, 60, Be32Bytes(7));
         return f;
       },
       ERROR_VHD_INVALID_TYPE},
      {"size not a multiple of 512",
       [](BadInput& t) {
         auto f = t.Dynamic("f.vhd");
         PatchFooters(f, 48, Be64Bytes((16 << 20) + 100));
         PatchFooters(f, 40, Be64Bytes((16 << 20) + 100));
         return f;
       },
       ERROR_VHD_INVALID_SIZE},
      {"fixed VHD shorter than its size",
       [](BadInput& t) {
         auto f = t.Fixed("g.vhd");
         auto footer = ReadBytes(f, FileSize(f) - 512, 512);
         Truncate(f, 1 << 20);
         Patch(f, 1 << 20, footer);
         return f;
       },
       ERROR_VHD_INVALID_FILE_SIZE},
      {"dynamic header with a bad checksum",
       [](BadInput& t) {
         auto f = t.Dynamic("h.vhd");
         PatchHeader(f, 36, {1, 2, 3, 4}, false);
         return f;
       },
       ERROR_VHD_SPARSE_HEADER_CHECKSUM_MISMATCH},
      {"dynamic header without its cookie",
       [](BadInput& t) {
         auto f = t.Dynamic("i.vhd");
         PatchHeader(f, 0, {'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'});
         return f;
       },
       ERROR_VHD_SPARSE_HEADER_CORRUPT},
      {"dynamic header version 2.0",
       [](BadInput& t) {
         auto f = t.Dynamic("j.vhd");
         PatchHeader(f, 24, Be32Bytes(0x00020000));
         return f;
       },
       ERROR_VHD_SPARSE_HEADER_UNSUPPORTED_VERSION},
      {"block size of 3 MiB",
       [](BadInput& t) {
         auto f = t.Dynamic("k.vhd");
         PatchHeader(f, 32, Be32Bytes(3 << 20));
         return f;
       },
       ERROR_VHD_INVALID_BLOCK_SIZE},
      {"BAT past the end of the file",
       [](BadInput& t) {
         auto f = t.Dynamic("l.vhd");
         PatchHeader(f, 16, Be64Bytes(1ull << 40));
         return f;
       },
       ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT},
      {"BAT entry pointing past the end of the file",
       [](BadInput& t) {
         auto f = t.Dynamic("m.vhd");
         Patch(f, BatOffset(f) + 4, Be32Bytes(0x00F00000));
         return f;
       },
       ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT},
      {"two BAT entries sharing one block",
       [](BadInput& t) {
         auto f = t.Dynamic("n.vhd");
         const auto bat = ReadBytes(f, BatOffset(f), 16);
         Patch(f, BatOffset(f) + 4, Be32Bytes(Be32(bat, 0)));
         return f;
       },
       ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT},
      {"BAT entry pointing into the headers",
       [](BadInput& t) {
         auto f = t.Dynamic("o.vhd");
         Patch(f, BatOffset(f) + 4, Be32Bytes(1));
         return f;
       },
       ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT},
      {"huge max table entries",
       [](BadInput& t) {
         auto f = t.Dynamic("p.vhd");
         PatchHeader(f, 28, Be32Bytes(0xFFFFFFF0u));
         return f;
       },
       ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT},
      {"empty .vhd file",
       [](BadInput& t) {
         auto f = t.dir_ / "q.vhd";
         t.WriteFileBytes(f, {});
         return f;
       },
       ERROR_VHD_DRIVE_FOOTER_MISSING},
      {"garbage .vhd file",
       [](BadInput& t) {
         auto f = t.dir_ / "r.vhd";
         t.WriteFileBytes(f, Pattern(1 << 20, 9));
         return f;
       },
       ERROR_VHD_DRIVE_FOOTER_MISSING},
      {"garbage file with an unknown extension",
       [](BadInput& t) {
         auto f = t.dir_ / "s.img";
         t.WriteFileBytes(f, Pattern(1 << 20, 10));
         return f;
       },
       ERROR_VIRTDISK_NOT_VIRTUAL_DISK},
      {"missing parent",
       [](BadInput& t) {
         t.Dynamic("t-base.vhd");
         auto f = t.Child("t.vhd", "t-base.vhd");
         std::filesystem::remove(t.dir_ / "t-base.vhd");
         return f;
       },
       ERROR_VHD_PARENT_VHD_NOT_FOUND},
      {"parent that is a directory",
       [](BadInput& t) {
         t.Dynamic("u-base.vhd");
         auto f = t.Child("u.vhd", "u-base.vhd");
         std::filesystem::remove(t.dir_ / "u-base.vhd");
         std::filesystem::create_directory(t.dir_ / "u-base.vhd");
         return f;
       },
       // Found, but no file: an error in the parent, not a missing one (special_file_api_test).
       ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT},
      {"parent replaced by another disk",
       [](BadInput& t) {
         t.Dynamic("v-base.vhd");
         auto f = t.Child("v.vhd", "v-base.vhd");
         std::filesystem::remove(t.dir_ / "v-base.vhd");
         t.Dynamic("v-base.vhd");
         return f;
       },
       ERROR_VHD_CHILD_PARENT_ID_MISMATCH},
      {"parent with the right id but another size",
       [](BadInput& t) {
         t.Dynamic("w-base.vhd");
         const GUID id = t.IdOf("w-base.vhd");
         auto f = t.Child("w.vhd", "w-base.vhd");
         std::filesystem::remove(t.dir_ / "w-base.vhd");
         VIRTUAL_STORAGE_TYPE type = StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_VHD);
         CREATE_VIRTUAL_DISK_PARAMETERS p{};
         p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
         p.Version2.MaximumSize = 32 << 20;
         p.Version2.UniqueId = id;
         HANDLE h = nullptr;
         EXPECT_EQ(CreateVirtualDisk(&type, t.dir_.Wide("w-base.vhd").c_str(),
                                     VIRTUAL_DISK_ACCESS_NONE, nullptr,
                                     CREATE_VIRTUAL_DISK_FLAG_NONE, 0, &p, nullptr, &h),
                   ERROR_SUCCESS);
         CloseHandle(h);
         return f;
       },
       ERROR_VHD_CHILD_PARENT_SIZE_MISMATCH},
      {"differencing disk that is its own parent",
       [](BadInput& t) {
         t.Dynamic("x.vhd");
         auto f = t.Child("x-child.vhd", "x.vhd");
         std::filesystem::rename(f, t.dir_ / "x.vhd");
         return t.dir_ / "x.vhd";
       },
       ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED},
      {"two differencing disks that are each other's parent",
       [](BadInput& t) {
         t.Dynamic("y-a.vhd");
         const GUID a_id = t.IdOf("y-a.vhd");
         auto b = t.Child("y-b.vhd", "y-a.vhd");
         t.Child("y-a2.vhd", "y-b.vhd", &a_id);
         std::filesystem::rename(t.dir_ / "y-a2.vhd", t.dir_ / "y-a.vhd");
         return b;
       },
       ERROR_VHD_DIFFERENCING_CHAIN_CYCLE_DETECTED},
      {"parent that is corrupt",
       [](BadInput& t) {
         t.Dynamic("z-base.vhd");
         auto f = t.Child("z.vhd", "z-base.vhd");
         PatchHeader(t.dir_ / "z-base.vhd", 36, {9, 9, 9, 9}, false);
         return f;
       },
       ERROR_VHD_DIFFERENCING_CHAIN_ERROR_IN_PARENT},
      {"garbage .iso file",
       [](BadInput& t) {
         auto f = t.dir_ / "garbage.iso";
         t.WriteFileBytes(f, Pattern(256 << 10, 11));
         return f;
       },
       ERROR_FILE_CORRUPT},
      {"empty .iso file",
       [](BadInput& t) {
         auto f = t.dir_ / "empty.iso";
         t.WriteFileBytes(f, {});
         return f;
       },
       ERROR_FILE_CORRUPT},
  };
  int checked = 0;
  for (const Case& c : cases) {
    const auto file = c.make(*this);
    const DWORD got = Open(file);
    EXPECT_EQ(got, c.expected) << c.name << ": expected " << std::hex << c.expected << ", got "
                               << got;
    ++checked;
  }
  EXPECT_GE(checked, 25);
}

TEST_F(BadInput, CorruptImageIsLeftUntouched) {
  auto f = Dynamic("keep.vhd");
  Patch(f, BatOffset(f) + 4, Be32Bytes(0x00F00000));
  const auto before = ReadBytes(f, 0, static_cast<std::size_t>(FileSize(f)));
  EXPECT_EQ(Open(f, false), ERROR_VHD_BLOCK_ALLOCATION_TABLE_CORRUPT);
  EXPECT_EQ(ReadBytes(f, 0, static_cast<std::size_t>(FileSize(f))), before);
}

}  // namespace
}  // namespace vdisk_test
