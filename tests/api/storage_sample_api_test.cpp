// The call sequences of Microsoft's storage sample (Windows-classic-samples,
// Samples/Hyper-V/Storage/cpp), one test per command, VHD and VHDX where the sample allows both:
// create (every kind), set information (with the sample's identifier check), merge, compact,
// resize, add parent, raw I/O on a disk whose size is no multiple of 1 MiB, enumerate metadata
// with a small buffer. The sequences are written anew here after the sample's steps; each test
// states what the sample needs from the call to go on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "api_test_support.h"

namespace vdisk_test {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

constexpr ULONGLONG kMiB = 1 << 20;

VIRTUAL_STORAGE_TYPE Unknown() { return StorageType(VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN, false); }

// CreateVirtualDisk.cpp: V2 parameters, a fresh UniqueId, type UNKNOWN (the extension decides),
// ACCESS_NONE, the caller's flags, sizes and parent.
DWORD SampleCreate(const WString& path, const WString& parent, CREATE_VIRTUAL_DISK_FLAG flags,
                   ULONGLONG size, ULONG block, ULONG logical, ULONG physical) {
  VIRTUAL_STORAGE_TYPE type = Unknown();
  CREATE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  static std::uint32_t next_id = 0x1234abcd;  // the sample takes a fresh UuidCreate each time
  p.Version2.UniqueId = GUID{next_id++, 0x1111, 0x2222, {1, 2, 3, 4, 5, 6, 7, 8}};
  p.Version2.MaximumSize = size;
  p.Version2.BlockSizeInBytes = block;
  p.Version2.SectorSizeInBytes = logical;
  p.Version2.PhysicalSectorSizeInBytes = physical;
  p.Version2.ParentPath = parent.empty() ? nullptr : parent.c_str();
  HANDLE h = INVALID_HANDLE_VALUE;
  const DWORD e = CreateVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, nullptr, flags,
                                    0, &p, nullptr, &h);
  if (e == ERROR_SUCCESS) CloseHandle(h);
  return e;
}

DWORD OpenSample(const WString& path, OPEN_VIRTUAL_DISK_FLAG flags, bool get_info_only,
                 bool read_only, HANDLE* h) {
  VIRTUAL_STORAGE_TYPE type = Unknown();
  OPEN_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  p.Version2.GetInfoOnly = get_info_only ? TRUE : FALSE;
  p.Version2.ReadOnly = read_only ? TRUE : FALSE;
  return OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE, flags, &p, h);
}

GET_VIRTUAL_DISK_INFO Info(HANDLE h, GET_VIRTUAL_DISK_INFO_VERSION version) {
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = version;
  ULONG size = sizeof info;
  EXPECT_EQ(GetVirtualDiskInformation(h, &size, &info, nullptr), ERROR_SUCCESS) << version;
  return info;
}

Bytes ReadAll(const WString& path, ULONGLONG size) {
  HANDLE h = nullptr;
  EXPECT_EQ(OpenV2(path, true, &h), ERROR_SUCCESS);
  if (h == nullptr) return {};
  EXPECT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  Bytes data(size);
  EXPECT_EQ(ReadAt(h, 0, data.data(), static_cast<DWORD>(size)), ERROR_SUCCESS);
  CloseHandle(h);
  return data;
}

void WriteSome(const WString& path, std::uint32_t seed) {
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  const auto data = Pattern(256 << 10, seed);
  ASSERT_EQ(WriteAt(h, (1 << 20) + 4096 * seed, data.data(), 256 << 10), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
}

struct Kind {
  const char* ext;
};

class StorageSample : public ::testing::TestWithParam<Kind> {
 protected:
  WString Path(const std::string& stem) const { return dir_.Wide(stem + GetParam().ext); }
  bool vhdx() const { return std::string(GetParam().ext) == ".vhdx"; }
  TempDir dir_;
};

TEST_P(StorageSample, CreateEveryKind) {
  EXPECT_EQ(SampleCreate(Path("fixed"), {}, CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION,
                         8 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  EXPECT_EQ(SampleCreate(Path("dynamic"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 64 * kMiB,
                         vhdx() ? 8 * kMiB : 512 << 10, 512, vhdx() ? 4096 : 512),
            ERROR_SUCCESS);
  EXPECT_EQ(SampleCreate(Path("diff"), Path("dynamic"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  EXPECT_EQ(
      SampleCreate(Path("diff-fixed"), Path("fixed"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
      ERROR_SUCCESS);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("diff"), OPEN_VIRTUAL_DISK_FLAG_NONE, true, false, &h), ERROR_SUCCESS);
  // The sample's table of defaults: a differencing VHD takes a dynamic parent's block size; a
  // differencing VHDX gets 2 MB.
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE).Size.BlockSize, vhdx() ? 2 * kMiB : 512u << 10);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE).ProviderSubtype, 4u);
  CloseHandle(h);
  ASSERT_EQ(OpenSample(Path("diff-fixed"), OPEN_VIRTUAL_DISK_FLAG_NONE, true, false, &h),
            ERROR_SUCCESS);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE).Size.BlockSize, 2 * kMiB)
      << "under a fixed parent the default is 2 MB";
  CloseHandle(h);
  ASSERT_EQ(OpenSample(Path("fixed"), OPEN_VIRTUAL_DISK_FLAG_NONE, true, false, &h), ERROR_SUCCESS);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE).ProviderSubtype, 2u);
  CloseHandle(h);
}

// SetVirtualDiskInformation.cpp with the documented example (child, parent, 4096): IDENTIFIER of
// the parent (GetInfoOnly, NO_PARENTS) must equal PARENT_IDENTIFIER of the child, or the sample
// stops with ERROR_INVALID_PARAMETER; then PARENT_PATH_WITH_DEPTH (ChildDepth 1) re-points the
// child, and PHYSICAL_SECTOR_SIZE, which "will only succeed on VHDX".
TEST_P(StorageSample, SetVirtualDiskInformationAsTheSampleDoes) {
  ASSERT_EQ(SampleCreate(Path("parent"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 32 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("parent"), 1);
  ASSERT_EQ(SampleCreate(Path("child"), Path("parent"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("child"), 2);
  const Bytes before = ReadAll(Path("child"), 32 * kMiB);
  // The parent moves; the child's locators now name a file that is gone.
  fs::rename(dir_ / (std::string("parent") + GetParam().ext),
             dir_ / (std::string("moved") + GetParam().ext));

  HANDLE parent = nullptr;
  ASSERT_EQ(OpenSample(Path("moved"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &parent),
            ERROR_SUCCESS);
  const GUID parent_id = Info(parent, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  HANDLE child = nullptr;
  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &child),
            ERROR_SUCCESS);
  const GUID expected = Info(child, GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER).ParentIdentifier;
  ASSERT_EQ(std::memcmp(&parent_id, &expected, sizeof(GUID)), 0)
      << "the sample refuses to re-point the child when these differ";
  ASSERT_TRUE(CloseHandle(child));

  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, false, false, &child),
            ERROR_SUCCESS);
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH;
  const WString moved = Path("moved");
  set.ParentPathWithDepthInfo.ChildDepth = 1;
  set.ParentPathWithDepthInfo.ParentFilePath = moved.c_str();
  EXPECT_EQ(SetVirtualDiskInformation(child, &set), ERROR_SUCCESS);
  set = SET_VIRTUAL_DISK_INFO{};
  set.Version = SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE;
  set.VhdPhysicalSectorSize = 4096;
  EXPECT_EQ(SetVirtualDiskInformation(child, &set),
            vhdx() ? static_cast<DWORD>(ERROR_SUCCESS) : static_cast<DWORD>(ERROR_NOT_SUPPORTED));
  ASSERT_TRUE(CloseHandle(child));
  ASSERT_TRUE(CloseHandle(parent));

  EXPECT_EQ(ReadAll(Path("child"), 32 * kMiB), before) << "the chain opens through the new path";
  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NONE, true, false, &child),
            ERROR_SUCCESS);
  EXPECT_EQ(Info(child, GET_VIRTUAL_DISK_INFO_VHD_PHYSICAL_SECTOR_SIZE).VhdPhysicalSectorSize,
            vhdx() ? 4096u : 512u);
  CloseHandle(child);
}

// The identifier and the V1 parent path on their own.
TEST_P(StorageSample, SetIdentifierAndV1ParentPath) {
  ASSERT_EQ(SampleCreate(Path("parent"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 16 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  ASSERT_EQ(SampleCreate(Path("child"), Path("parent"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  fs::copy_file(dir_ / (std::string("parent") + GetParam().ext),
                dir_ / (std::string("copy") + GetParam().ext));
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, false, false, &h),
            ERROR_SUCCESS);
  const WString copy = Path("copy");
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH;
  set.ParentFilePath = copy.c_str();
  EXPECT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  set = SET_VIRTUAL_DISK_INFO{};
  set.Version = SET_VIRTUAL_DISK_INFO_IDENTIFIER;
  set.UniqueIdentifier = GUID{0x0badf00d, 0x1, 0x2, {9, 8, 7, 6, 5, 4, 3, 2}};
  EXPECT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  const GUID id = Info(h, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  EXPECT_EQ(std::memcmp(&id, &set.UniqueIdentifier, sizeof(GUID)), 0);
  ASSERT_TRUE(CloseHandle(h));
  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h),
            ERROR_SUCCESS);
  const GUID reopened = Info(h, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  EXPECT_EQ(std::memcmp(&reopened, &set.UniqueIdentifier, sizeof(GUID)), 0) << "persisted";
  std::vector<unsigned char> buffer(2048);
  auto* info = reinterpret_cast<GET_VIRTUAL_DISK_INFO*>(buffer.data());
  info->Version = GET_VIRTUAL_DISK_INFO_PARENT_LOCATION;
  ULONG size = static_cast<ULONG>(buffer.size());
  ASSERT_EQ(GetVirtualDiskInformation(h, &size, info, nullptr), ERROR_SUCCESS);
  EXPECT_NE(
      Narrow(info->ParentLocation.ParentLocationBuffer).find(std::string("copy") + GetParam().ext),
      std::string::npos);
  CloseHandle(h);
}

// PARENT_PATH_WITH_DEPTH below the top ("ChildDepth: the depth to the child from the leaf"):
// through a handle on the top, the middle image is re-pointed to a copy of the base.
TEST_P(StorageSample, SetParentPathWithDepthBelowTheTop) {
  ASSERT_EQ(SampleCreate(Path("base"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 16 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("base"), 11);
  ASSERT_EQ(SampleCreate(Path("mid"), Path("base"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("mid"), 12);
  ASSERT_EQ(SampleCreate(Path("top"), Path("mid"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("top"), 13);
  const Bytes before = ReadAll(Path("top"), 16 * kMiB);
  fs::copy_file(dir_ / (std::string("base") + GetParam().ext),
                dir_ / (std::string("copy") + GetParam().ext));
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("top"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h), ERROR_SUCCESS);
  const WString copy = Path("copy");
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH;
  set.ParentPathWithDepthInfo.ChildDepth = 4;
  set.ParentPathWithDepthInfo.ParentFilePath = copy.c_str();
  EXPECT_EQ(SetVirtualDiskInformation(h, &set), static_cast<DWORD>(ERROR_INVALID_PARAMETER))
      << "the chain has three files";
  set.ParentPathWithDepthInfo.ChildDepth = 2;
  ASSERT_EQ(SetVirtualDiskInformation(h, &set), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
  fs::remove(dir_ / (std::string("base") + GetParam().ext));
  EXPECT_EQ(ReadAll(Path("top"), 16 * kMiB), before) << "the chain goes through the copy";
}

// MergeVirtualDisk.cpp: V2 open of the leaf, MergeSourceDepth 1, MergeTargetDepth 2.
TEST_P(StorageSample, MergeAsTheSampleDoes) {
  ASSERT_EQ(SampleCreate(Path("parent"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 16 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("parent"), 3);
  ASSERT_EQ(SampleCreate(Path("child"), Path("parent"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("child"), 4);
  const Bytes before = ReadAll(Path("child"), 16 * kMiB);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("child"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h),
            ERROR_SUCCESS);
  MERGE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MERGE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MergeSourceDepth = 1;
  p.Version2.MergeTargetDepth = 2;
  EXPECT_EQ(MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr), ERROR_SUCCESS);
  CloseHandle(h);
  EXPECT_EQ(ReadAll(Path("parent"), 16 * kMiB), before);
}

// AddVirtualDiskParent.cpp: V2 read-only open with CUSTOM_DIFF_CHAIN, then the parent.
TEST_P(StorageSample, AddVirtualDiskParentAsTheSampleDoes) {
  ASSERT_EQ(SampleCreate(Path("base"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 16 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("base"), 5);
  ASSERT_EQ(SampleCreate(Path("mid"), Path("base"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("mid"), 6);
  ASSERT_EQ(SampleCreate(Path("top"), Path("mid"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("top"), 7);
  const Bytes expected = ReadAll(Path("top"), 16 * kMiB);

  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("top"), OPEN_VIRTUAL_DISK_FLAG_CUSTOM_DIFF_CHAIN, false, true, &h),
            ERROR_SUCCESS);
  EXPECT_EQ(AttachRaw(h, true), static_cast<DWORD>(ERROR_VHD_INVALID_STATE))
      << "the chain is not complete yet";
  EXPECT_EQ(AddVirtualDiskParent(h, nullptr), static_cast<DWORD>(ERROR_INVALID_PARAMETER));
  EXPECT_EQ(AddVirtualDiskParent(h, Path("base").c_str()),
            static_cast<DWORD>(ERROR_VHD_CHILD_PARENT_ID_MISMATCH))
      << "the base is not the parent the top was created against";
  ASSERT_EQ(AddVirtualDiskParent(h, Path("mid").c_str()), ERROR_SUCCESS);
  ASSERT_EQ(AddVirtualDiskParent(h, Path("base").c_str()), ERROR_SUCCESS);
  EXPECT_EQ(AddVirtualDiskParent(h, Path("base").c_str()),
            static_cast<DWORD>(ERROR_VHD_INVALID_TYPE))
      << "the base has no parent";
  ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
  Bytes data(16 * kMiB);
  ASSERT_EQ(ReadAt(h, 0, data.data(), static_cast<DWORD>(data.size())), ERROR_SUCCESS);
  EXPECT_EQ(data, expected);
  CloseHandle(h);

  HANDLE plain = nullptr;
  ASSERT_EQ(OpenSample(Path("top"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, true, &plain),
            ERROR_SUCCESS);
  EXPECT_EQ(AddVirtualDiskParent(plain, Path("mid").c_str()),
            static_cast<DWORD>(ERROR_VHD_INVALID_STATE))
      << "only a CUSTOM_DIFF_CHAIN handle takes parents";
  CloseHandle(plain);
}

// RawIO.cpp copies 1 MiB at a time with an OVERLAPPED until the offset reaches the size, adding
// the bytes written each time. On a disk whose size is no multiple of 1 MiB (as qemu sizes VHDs
// by CHS geometry) the last read crosses the end: it must return the bytes up to the end, or the
// sample never finishes.
TEST_P(StorageSample, RawIoCopiesADiskWhoseSizeIsNoMultipleOfOneMiB) {
  constexpr ULONGLONG kOdd = 5 * kMiB + 63 * 512;  // CHS-like: 5 MiB and one 63-sector track
  ASSERT_EQ(SampleCreate(Path("src"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, kOdd, 0, 0, 0),
            ERROR_SUCCESS);
  ASSERT_EQ(SampleCreate(Path("dst"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, kOdd, 0, 0, 0),
            ERROR_SUCCESS);
  {
    HANDLE h = nullptr;
    ASSERT_EQ(OpenV2(Path("src"), false, &h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
    const auto tail = Pattern(63 * 512, 9);
    ASSERT_EQ(WriteAt(h, 5 * kMiB, tail.data(), 63 * 512), ERROR_SUCCESS);
    const auto head = Pattern(4096, 10);
    ASSERT_EQ(WriteAt(h, 0, head.data(), 4096), ERROR_SUCCESS);
    CloseHandle(h);
  }
  HANDLE source = nullptr;
  HANDLE destination = nullptr;
  ASSERT_EQ(OpenSample(Path("src"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &source),
            ERROR_SUCCESS);
  const ULONGLONG size = Info(source, GET_VIRTUAL_DISK_INFO_SIZE).Size.VirtualSize;
  ASSERT_EQ(size, kOdd);
  ASSERT_EQ(AttachRaw(source, true), ERROR_SUCCESS);
  ASSERT_EQ(OpenSample(Path("dst"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &destination),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(destination), ERROR_SUCCESS);
  std::vector<unsigned char> buffer(kMiB);
  OVERLAPPED ov{};
  ULONGLONG offset = 0;
  int rounds = 0;
  while (offset < size && rounds++ < 100) {  // the bound turns a hang into a failure
    ov.Offset = static_cast<DWORD>(offset);
    ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
    DWORD read = 0;
    if (!ReadFile(source, buffer.data(), static_cast<DWORD>(kMiB), &read, &ov)) {
      ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
      ASSERT_TRUE(GetOverlappedResult(source, &ov, &read, TRUE)) << GetLastError();
    }
    DWORD written = 0;
    if (!WriteFile(destination, buffer.data(), read, &written, &ov)) {
      ASSERT_EQ(GetLastError(), static_cast<DWORD>(ERROR_IO_PENDING));
      ASSERT_TRUE(GetOverlappedResult(destination, &ov, &written, TRUE)) << GetLastError();
    }
    ASSERT_EQ(written, read);
    offset += written;
  }
  EXPECT_EQ(offset, size) << "the sample reports the bytes transferred: the whole disk";
  CloseHandle(source);
  CloseHandle(destination);
  EXPECT_EQ(ReadAll(Path("dst"), kOdd), ReadAll(Path("src"), kOdd));
}

// GetVirtualDiskInformation.cpp opens a GetInfoOnly handle with NO_PARENTS: on a disk that is in
// use, attached read-write by another handle and being written, the open succeeds (a
// get-info-only handle takes no lock), the answers are the disk's, and the writer goes on.
TEST_P(StorageSample, GetInformationOfADiskInUse) {
  ASSERT_EQ(SampleCreate(Path("busy"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 24 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  HANDLE writer = nullptr;
  ASSERT_EQ(OpenSample(Path("busy"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &writer),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(writer), ERROR_SUCCESS);
  const Bytes data = Pattern(kMiB, 25);
  ASSERT_EQ(WriteAt(writer, 0, data.data(), static_cast<DWORD>(kMiB)), ERROR_SUCCESS);
  HANDLE info = nullptr;
  ASSERT_EQ(OpenSample(Path("busy"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &info),
            ERROR_SUCCESS);
  EXPECT_EQ(Info(info, GET_VIRTUAL_DISK_INFO_SIZE).Size.VirtualSize, 24 * kMiB);
  EXPECT_EQ(Info(info, GET_VIRTUAL_DISK_INFO_PROVIDER_SUBTYPE).ProviderSubtype, 3u);
  const GUID seen = Info(info, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  const GUID writers = Info(writer, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  EXPECT_EQ(std::memcmp(&seen, &writers, sizeof(GUID)), 0);
  ASSERT_EQ(WriteAt(writer, 4 * kMiB, data.data(), static_cast<DWORD>(kMiB)), ERROR_SUCCESS)
      << "the information handle does not keep the writer out";
  ASSERT_TRUE(CloseHandle(info));
  ASSERT_TRUE(CloseHandle(writer));
  const Bytes after = ReadAll(Path("busy"), 5 * kMiB);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), after.begin()));
  EXPECT_TRUE(std::equal(data.begin(), data.end(), after.begin() + 4 * kMiB));
}

// ResizeVirtualDisk.cpp: V2 open (ACCESS_NONE, FLAG_NONE, neither GetInfoOnly nor ReadOnly),
// RESIZE_VIRTUAL_DISK_VERSION_1 with NewSize, RESIZE_VIRTUAL_DISK_FLAG_NONE, no OVERLAPPED. The
// sample's documented example grows a 1 GiB dynamic disk to 2147483648 bytes.
DWORD SampleResize(const WString& path, ULONGLONG new_size) {
  HANDLE h = nullptr;
  DWORD e = OpenSample(path, OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h);
  if (e != ERROR_SUCCESS) return e;
  RESIZE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  p.Version1.NewSize = new_size;
  e = ResizeVirtualDisk(h, RESIZE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
  CloseHandle(h);
  return e;
}

// GetVirtualDiskInformation.cpp's questions about sizes, on its GetInfoOnly NO_PARENTS handle:
// SIZE, then SMALLEST_SAFE_VIRTUAL_SIZE (the sample prints it as minInternalSize when the call
// succeeds and carries on when it does not).
struct SampleSizes {
  ULONGLONG virtual_size = 0;
  DWORD smallest_safe_error = ERROR_SUCCESS;
  ULONGLONG smallest_safe = 0;
};
SampleSizes SampleQuerySizes(const WString& path) {
  SampleSizes out;
  HANDLE h = nullptr;
  EXPECT_EQ(OpenSample(path, OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &h), ERROR_SUCCESS);
  if (h == nullptr) return out;
  out.virtual_size = Info(h, GET_VIRTUAL_DISK_INFO_SIZE).Size.VirtualSize;
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SMALLEST_SAFE_VIRTUAL_SIZE;
  ULONG size = sizeof info;
  out.smallest_safe_error = GetVirtualDiskInformation(h, &size, &info, nullptr);
  out.smallest_safe = info.SmallestSafeVirtualSize;
  CloseHandle(h);
  return out;
}

// One MBR partition (type 0x07) from LBA 2048 up to `end` bytes.
void WritePartitionTable(const WString& path, ULONGLONG end) {
  std::vector<unsigned char> mbr(512);
  mbr[446 + 4] = 0x07;
  const std::uint32_t first = 2048;
  const auto count = static_cast<std::uint32_t>(end / 512 - first);
  std::memcpy(&mbr[446 + 8], &first, 4);
  std::memcpy(&mbr[446 + 12], &count, 4);
  mbr[510] = 0x55;
  mbr[511] = 0xAA;
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  ASSERT_EQ(WriteAt(h, 0, mbr.data(), 512), ERROR_SUCCESS);
  ASSERT_TRUE(CloseHandle(h));
}

// The sample's example, for a dynamic disk of each format (and a fixed one): grown to 2 GiB, the
// data it held reads back and the new space reads zeros.
TEST_P(StorageSample, ResizeGrowsAsTheSampleDoes) {
  constexpr ULONGLONG kGiB = 1ull << 30;
  ASSERT_EQ(SampleCreate(Path("dynamic"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, kGiB, 0, 0, 0),
            ERROR_SUCCESS);
  ASSERT_EQ(SampleCreate(Path("fixed"), {}, CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION,
                         8 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  for (const char* stem : {"dynamic", "fixed"}) {
    SCOPED_TRACE(stem);
    const WString path = Path(stem);
    const ULONGLONG old_size = SampleQuerySizes(path).virtual_size;
    WriteSome(path, 21);  // 256 KiB at 1 MiB + 84 KiB
    const Bytes before = ReadAll(path, 2 * kMiB);
    const ULONGLONG new_size = std::string(stem) == "dynamic" ? 2 * kGiB : 16 * kMiB;
    ASSERT_EQ(SampleResize(path, new_size), ERROR_SUCCESS);
    EXPECT_EQ(SampleQuerySizes(path).virtual_size, new_size);
    HANDLE h = nullptr;
    ASSERT_EQ(OpenV2(path, true, &h), ERROR_SUCCESS);
    ASSERT_EQ(AttachRaw(h, true), ERROR_SUCCESS);
    Bytes got(2 * kMiB);
    ASSERT_EQ(ReadAt(h, 0, got.data(), static_cast<DWORD>(got.size())), ERROR_SUCCESS);
    EXPECT_EQ(got, before) << "the data before the old end";
    ASSERT_EQ(ReadAt(h, old_size, got.data(), static_cast<DWORD>(kMiB)), ERROR_SUCCESS);
    ASSERT_EQ(ReadAt(h, new_size - kMiB, got.data() + kMiB, static_cast<DWORD>(kMiB)),
              ERROR_SUCCESS);
    EXPECT_EQ(got, Bytes(2 * kMiB, 0)) << "the new space";
    CloseHandle(h);
  }
}

// The sample resizes with RESIZE_VIRTUAL_DISK_FLAG_NONE, which "prevents unsafe shrink where the
// new virtual disk size cannot be less than the SmallestSafeVirtualSize reported through the
// GetVirtualDiskInformation API": below the end of the last partition the shrink is refused and
// the disk keeps its size; down to that size it succeeds, and the smallest safe size then is
// the disk's size. The same bound as RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE reaches. (Windows
// shrinks only VHDX; this library shrinks VHD too, docs/lifecycle.md.)
TEST_P(StorageSample, ResizeShrinksNoFurtherThanTheSmallestSafeSize) {
  ASSERT_EQ(SampleCreate(Path("disk"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 64 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  ASSERT_NO_FATAL_FAILURE(WritePartitionTable(Path("disk"), 40 * kMiB));
  WriteSome(Path("disk"), 22);
  const Bytes before = ReadAll(Path("disk"), 40 * kMiB);

  SampleSizes sizes = SampleQuerySizes(Path("disk"));
  ASSERT_EQ(sizes.smallest_safe_error, ERROR_SUCCESS);
  EXPECT_EQ(sizes.smallest_safe, 40 * kMiB);
  EXPECT_EQ(SampleResize(Path("disk"), 40 * kMiB - 512),
            static_cast<DWORD>(ERROR_VHD_RESIZE_WOULD_TRUNCATE_DATA));
  EXPECT_EQ(SampleQuerySizes(Path("disk")).virtual_size, 64 * kMiB) << "a refused shrink";
  ASSERT_EQ(SampleResize(Path("disk"), sizes.smallest_safe), ERROR_SUCCESS);
  sizes = SampleQuerySizes(Path("disk"));
  EXPECT_EQ(sizes.virtual_size, 40 * kMiB);
  EXPECT_EQ(sizes.smallest_safe, 40 * kMiB);
  EXPECT_EQ(ReadAll(Path("disk"), 40 * kMiB), before) << "every partition's byte";

  // A copy of the original, shrunk by the flag instead, ends at the same size.
  ASSERT_EQ(SampleCreate(Path("copy"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 64 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  ASSERT_NO_FATAL_FAILURE(WritePartitionTable(Path("copy"), 40 * kMiB));
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(Path("copy"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h),
            ERROR_SUCCESS);
  RESIZE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
  EXPECT_EQ(ResizeVirtualDisk(h, RESIZE_VIRTUAL_DISK_FLAG_RESIZE_TO_SMALLEST_SAFE_VIRTUAL_SIZE, &p,
                              nullptr),
            ERROR_SUCCESS);
  EXPECT_EQ(Info(h, GET_VIRTUAL_DISK_INFO_SIZE).Size.VirtualSize, 40 * kMiB);
  CloseHandle(h);
}

// compactVirtualDisk.cpp: V2 open (FLAG_NONE), COMPACT_VIRTUAL_DISK_VERSION_1, FLAG_NONE (the
// full compaction), no OVERLAPPED.
DWORD SampleCompact(const WString& path) {
  HANDLE h = nullptr;
  DWORD e = OpenSample(path, OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h);
  if (e != ERROR_SUCCESS) return e;
  COMPACT_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = COMPACT_VIRTUAL_DISK_VERSION_1;
  e = CompactVirtualDisk(h, COMPACT_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
  CloseHandle(h);
  return e;
}

// A dynamic disk of 2 MiB blocks whose first four blocks are allocated: data, zeros, data, zeros.
void MakeHalfZeroDisk(const WString& path) {
  ASSERT_EQ(SampleCreate(path, {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 32 * kMiB, 2 * kMiB, 512, 512),
            ERROR_SUCCESS);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenV2(path, false, &h), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(h), ERROR_SUCCESS);
  for (std::uint32_t block = 0; block < 4; ++block) {
    const Bytes data = block % 2 == 0 ? Pattern(2 * kMiB, 30 + block) : Bytes(2 * kMiB, 0);
    ASSERT_EQ(WriteAt(h, block * 2 * kMiB, data.data(), static_cast<DWORD>(data.size())),
              ERROR_SUCCESS);
  }
  ASSERT_TRUE(CloseHandle(h));
}

// The sample's example compacts a dynamic disk: the blocks that hold only zeros are given back
// (the file shrinks by at least them) and the disk reads the same.
TEST_P(StorageSample, CompactAsTheSampleDoes) {
  ASSERT_NO_FATAL_FAILURE(MakeHalfZeroDisk(Path("dynamic")));
  const Bytes before = ReadAll(Path("dynamic"), 32 * kMiB);
  const std::uint64_t size_before = FileSize(dir_ / (std::string("dynamic") + GetParam().ext));
  ASSERT_EQ(SampleCompact(Path("dynamic")), ERROR_SUCCESS);
  EXPECT_LE(FileSize(dir_ / (std::string("dynamic") + GetParam().ext)) + 4 * kMiB, size_before)
      << "the two zero blocks are given back";
  EXPECT_EQ(ReadAll(Path("dynamic"), 32 * kMiB), before);
  ASSERT_EQ(SampleCompact(Path("dynamic")), ERROR_SUCCESS) << "again: nothing left to do";
  EXPECT_EQ(ReadAll(Path("dynamic"), 32 * kMiB), before);
}

// "To obtain the full benefit of compaction, the VHD should be mounted prior to and throughout
// the compaction ... The VHD can only be mounted read-only during a compaction." The mount is
// another handle's read-only attachment here (the sample's own AttachVirtualDisk asks for
// PERMANENT_LIFETIME, which this library serves from another process: see docs/lifecycle.md);
// the sample's compaction runs on its own handle, and the mount keeps reading the same disk.
// Mounted read-write, the compaction is refused and nothing changes.
TEST_P(StorageSample, CompactWhileMountedReadOnly) {
  ASSERT_NO_FATAL_FAILURE(MakeHalfZeroDisk(Path("dynamic")));
  const Bytes before = ReadAll(Path("dynamic"), 32 * kMiB);
  const auto file = dir_ / (std::string("dynamic") + GetParam().ext);
  const std::uint64_t size_before = FileSize(file);
  HANDLE mount = nullptr;
  ASSERT_EQ(OpenSample(Path("dynamic"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &mount),
            ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(mount, false), ERROR_SUCCESS);
  EXPECT_EQ(SampleCompact(Path("dynamic")), static_cast<DWORD>(ERROR_VHD_INVALID_STATE))
      << "mounted read-write";
  EXPECT_EQ(FileSize(file), size_before);
  ASSERT_EQ(DetachVirtualDisk(mount, DETACH_VIRTUAL_DISK_FLAG_NONE, 0), ERROR_SUCCESS);
  ASSERT_EQ(AttachRaw(mount, true), ERROR_SUCCESS);
  ASSERT_EQ(SampleCompact(Path("dynamic")), ERROR_SUCCESS);
  EXPECT_LE(FileSize(file) + 4 * kMiB, size_before);
  Bytes got(32 * kMiB);
  ASSERT_EQ(ReadAt(mount, 0, got.data(), static_cast<DWORD>(got.size())), ERROR_SUCCESS);
  EXPECT_EQ(got, before) << "the mount reads the same disk after the compaction";
  CloseHandle(mount);
}

// The sample's documented example, "SetVirtualDiskInformation c:\diff.vhd c:\fixed.vhd 4096",
// with the parent where the child's locators already point: the identifier check passes for a
// fixed parent too, the parent path is written again, and the physical sector size succeeds only
// on VHDX ("This operation will only succeed on VHDX"; for a VHD the sample reports the error).
TEST_P(StorageSample, SetInformationWithTheDocumentedExample) {
  ASSERT_EQ(SampleCreate(Path("fixed"), {}, CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION,
                         8 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("fixed"), 23);
  ASSERT_EQ(SampleCreate(Path("diff"), Path("fixed"), CREATE_VIRTUAL_DISK_FLAG_NONE, 0, 0, 0, 0),
            ERROR_SUCCESS);
  WriteSome(Path("diff"), 24);
  const Bytes before = ReadAll(Path("diff"), 8 * kMiB);

  HANDLE parent = nullptr;
  ASSERT_EQ(OpenSample(Path("fixed"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &parent),
            ERROR_SUCCESS);
  const GUID parent_id = Info(parent, GET_VIRTUAL_DISK_INFO_IDENTIFIER).Identifier;
  HANDLE child = nullptr;
  ASSERT_EQ(OpenSample(Path("diff"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &child),
            ERROR_SUCCESS);
  const GUID expected = Info(child, GET_VIRTUAL_DISK_INFO_PARENT_IDENTIFIER).ParentIdentifier;
  ASSERT_EQ(std::memcmp(&parent_id, &expected, sizeof(GUID)), 0)
      << "the sample stops here with ERROR_INVALID_PARAMETER";
  ASSERT_TRUE(CloseHandle(child));
  ASSERT_EQ(OpenSample(Path("diff"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, false, false, &child),
            ERROR_SUCCESS);
  const WString fixed = Path("fixed");
  SET_VIRTUAL_DISK_INFO set{};
  set.Version = SET_VIRTUAL_DISK_INFO_PARENT_PATH_WITH_DEPTH;
  set.ParentPathWithDepthInfo.ChildDepth = 1;
  set.ParentPathWithDepthInfo.ParentFilePath = fixed.c_str();
  EXPECT_EQ(SetVirtualDiskInformation(child, &set), ERROR_SUCCESS);
  set.Version = SET_VIRTUAL_DISK_INFO_PHYSICAL_SECTOR_SIZE;  // the same struct, as the sample
  set.VhdPhysicalSectorSize = 4096;
  EXPECT_EQ(SetVirtualDiskInformation(child, &set),
            vhdx() ? static_cast<DWORD>(ERROR_SUCCESS) : static_cast<DWORD>(ERROR_NOT_SUPPORTED));
  ASSERT_TRUE(CloseHandle(child));
  ASSERT_TRUE(CloseHandle(parent));
  EXPECT_EQ(ReadAll(Path("diff"), 8 * kMiB), before);
}

// EnumerateUserMetaData.cpp (VHDX only: "User metadata is not applicable to VHD files"): a
// count of 0 and no buffer gives ERROR_MORE_DATA and the count, then the items.
TEST(StorageSampleMetadata, EnumerateWithASmallBufferGivesMoreData) {
  TempDir dir;
  ASSERT_EQ(SampleCreate(dir.Wide("m.vhdx"), {}, CREATE_VIRTUAL_DISK_FLAG_NONE, 8 * kMiB, 0, 0, 0),
            ERROR_SUCCESS);
  HANDLE h = nullptr;
  ASSERT_EQ(OpenSample(dir.Wide("m.vhdx"), OPEN_VIRTUAL_DISK_FLAG_NONE, false, false, &h),
            ERROR_SUCCESS);
  const GUID items[2] = {GUID{1, 2, 3, {4}}, GUID{5, 6, 7, {8}}};
  const char value[] = "sample";
  for (const GUID& item : items)
    ASSERT_EQ(SetVirtualDiskMetadata(h, &item, sizeof value, value), ERROR_SUCCESS);
  CloseHandle(h);

  ASSERT_EQ(OpenSample(dir.Wide("m.vhdx"), OPEN_VIRTUAL_DISK_FLAG_NO_PARENTS, true, false, &h),
            ERROR_SUCCESS);
  ULONG count = 0;
  EXPECT_EQ(EnumerateVirtualDiskMetadata(h, &count, nullptr), static_cast<DWORD>(ERROR_MORE_DATA));
  ASSERT_EQ(count, 2u);
  std::vector<GUID> got(count);
  EXPECT_EQ(EnumerateVirtualDiskMetadata(h, &count, got.data()), ERROR_SUCCESS);
  EXPECT_EQ(count, 2u);
  count = 1;
  EXPECT_EQ(EnumerateVirtualDiskMetadata(h, &count, got.data()),
            static_cast<DWORD>(ERROR_MORE_DATA));
  EXPECT_EQ(count, 2u);
  CloseHandle(h);
}

INSTANTIATE_TEST_SUITE_P(Formats, StorageSample, ::testing::Values(Kind{".vhd"}, Kind{".vhdx"}),
                         [](const auto& info) {
                           return std::string(info.param.ext) == ".vhd" ? std::string("Vhd")
                                                                        : std::string("Vhdx");
                         });

}  // namespace
}  // namespace vdisk_test
