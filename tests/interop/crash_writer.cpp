// crash_writer IMAGE JOURNAL SEED [COUNT]
//
// Opens IMAGE through the VirtDisk API as Microsoft's RawIO sample does (type UNKNOWN/UNKNOWN,
// V2 parameters, attach NO_LOCAL_HOST) and writes the CrashPlan of SEED with WriteFile, one
// write at a time, COUNT writes or until it is killed (crash_test.cpp kills it with SIGKILL).
// After each WriteFile has reported success it appends "index offset length seed\n" to JOURNAL
// (O_APPEND, no fsync: a process kill loses nothing the kernel already has), so a record exists
// only for an acknowledged write.
//
// Exit codes: 0 after COUNT writes, 2 bad arguments, 3 open/attach failed, 4 a write failed.
#include <fcntl.h>
#include <unistd.h>

#include <virtdisk.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "crash_plan.h"

namespace {

std::basic_string<WCHAR> Wide(const char* path) {
  // Paths are ASCII in the tests; widen byte by byte.
  std::basic_string<WCHAR> wide;
  for (const char* p = path; *p != 0; ++p) wide.push_back(static_cast<WCHAR>(*p));
  return wide;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: %s IMAGE JOURNAL SEED [COUNT]\n", argv[0]);
    return 2;
  }
  const std::uint64_t seed = std::strtoull(argv[3], nullptr, 0);
  const std::uint64_t count = argc == 5 ? std::strtoull(argv[4], nullptr, 0) : UINT64_MAX;
  const int journal = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (journal < 0) {
    std::perror(argv[2]);
    return 2;
  }

  VIRTUAL_STORAGE_TYPE type{};
  type.DeviceId = VIRTUAL_STORAGE_TYPE_DEVICE_UNKNOWN;
  type.VendorId = VIRTUAL_STORAGE_TYPE_VENDOR_UNKNOWN;
  OPEN_VIRTUAL_DISK_PARAMETERS open_params{};
  open_params.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  HANDLE disk = nullptr;
  const auto path = Wide(argv[1]);
  DWORD e = OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open_params, &disk);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "OpenVirtualDisk(%s) failed with %u\n", argv[1], e);
    return 3;
  }
  ATTACH_VIRTUAL_DISK_PARAMETERS attach_params{};
  attach_params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  e = AttachVirtualDisk(disk, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &attach_params,
                        nullptr);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "AttachVirtualDisk failed with %u\n", e);
    return 3;
  }
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG info_size = sizeof info;
  e = GetVirtualDiskInformation(disk, &info_size, &info, nullptr);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "GetVirtualDiskInformation failed with %u\n", e);
    return 3;
  }

  vdisk_interop::CrashPlan plan(seed, info.Size.VirtualSize);
  std::vector<std::uint8_t> buffer(vdisk_interop::CrashPlan::kMaxLength);
  for (std::uint64_t i = 0; i < count; ++i) {
    const vdisk_interop::CrashWrite w = plan.Next();
    const std::span data(buffer.data(), w.length);
    vdisk_interop::FillPattern(w.seed, data);
    OVERLAPPED ov{};
    ov.Offset = static_cast<DWORD>(w.offset);
    ov.OffsetHigh = static_cast<DWORD>(w.offset >> 32);
    DWORD n = 0;
    if (!WriteFile(disk, data.data(), w.length, &n, &ov)) {
      e = GetLastError();
      if (e != ERROR_IO_PENDING || !GetOverlappedResult(disk, &ov, &n, TRUE)) {
        std::fprintf(stderr, "WriteFile(%llu, %u) failed with %u\n",
                     static_cast<unsigned long long>(w.offset), w.length, GetLastError());
        return 4;
      }
    }
    if (n != w.length) {
      std::fprintf(stderr, "WriteFile(%llu, %u) wrote %u bytes\n",
                   static_cast<unsigned long long>(w.offset), w.length, n);
      return 4;
    }
    char record[96];
    const int len = std::snprintf(record, sizeof record, "%llu %llu %u %llu\n",
                                  static_cast<unsigned long long>(i),
                                  static_cast<unsigned long long>(w.offset), w.length,
                                  static_cast<unsigned long long>(w.seed));
    if (write(journal, record, static_cast<std::size_t>(len)) != len) {
      std::perror("journal");
      return 4;
    }
  }
  CloseHandle(disk);
  close(journal);
  return 0;
}
