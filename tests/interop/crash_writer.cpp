// crash_writer IMAGE JOURNAL SEED DEPTH [COUNT]
//
// Opens IMAGE through the VirtDisk API as Microsoft's RawIO sample does (type UNKNOWN/UNKNOWN,
// V2 parameters, attach NO_LOCAL_HOST) and writes the CrashPlan of SEED with overlapped
// WriteFile, up to DEPTH writes in flight, COUNT writes or until it is killed (crash_test.cpp
// kills it with SIGKILL).
//
// Writes are issued in plan order and retired oldest first: when the oldest has completed
// (GetOverlappedResult) the writer appends "index offset length seed\n" to JOURNAL (O_APPEND, no
// fsync: a process kill loses nothing the kernel already has), so a record exists only for an
// acknowledged write, and the journal is always a prefix of the plan. A write that overlaps one
// in flight waits until that one is retired, so writes in flight together commute and the
// journal order is the order in which overlapping writes took effect. At a kill, the writes
// after the journal's last record, at most DEPTH of them, may have taken effect or not.
//
// If the environment names a descriptor in VIRTDISK_CRASH_READY_FD, the writer writes one byte to
// it once the disk is attached, so that the test can time its kill from the first write.
//
// Exit codes: 0 after COUNT writes, 2 bad arguments, 3 open/attach failed, 4 a write failed.
#include <fcntl.h>
#include <unistd.h>

#include <virtdisk.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
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
  if (argc < 5 || argc > 6) {
    std::fprintf(stderr, "usage: %s IMAGE JOURNAL SEED DEPTH [COUNT]\n", argv[0]);
    return 2;
  }
  const std::uint64_t seed = std::strtoull(argv[3], nullptr, 0);
  const std::size_t depth = std::strtoull(argv[4], nullptr, 0);
  const std::uint64_t count = argc == 6 ? std::strtoull(argv[5], nullptr, 0) : UINT64_MAX;
  if (depth < 1 || depth > 64) {
    std::fprintf(stderr, "DEPTH must be 1..64\n");
    return 2;
  }
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
  if (const char* ready = std::getenv("VIRTDISK_CRASH_READY_FD"); ready != nullptr) {
    const int fd = std::atoi(ready);
    const char byte = 'R';
    if (write(fd, &byte, 1) != 1) std::perror("ready");
    close(fd);
  }
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG info_size = sizeof info;
  e = GetVirtualDiskInformation(disk, &info_size, &info, nullptr);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "GetVirtualDiskInformation failed with %u\n", e);
    return 3;
  }

  struct InFlight {
    std::uint64_t index = 0;
    vdisk_interop::CrashWrite write;
    OVERLAPPED ov{};
    std::vector<std::uint8_t> buffer;
  };
  std::vector<InFlight> slots(depth);
  for (auto& slot : slots) slot.buffer.resize(vdisk_interop::CrashPlan::kMaxLength);
  std::deque<InFlight*> fifo;
  std::vector<InFlight*> free_slots;
  for (auto& slot : slots) free_slots.push_back(&slot);

  // Waits for the oldest write, then journals it.
  auto retire_oldest = [&]() -> bool {
    InFlight* slot = fifo.front();
    DWORD n = 0;
    if (!GetOverlappedResult(disk, &slot->ov, &n, TRUE) || n != slot->write.length) {
      std::fprintf(stderr, "WriteFile(%llu, %u) failed with %u (%u bytes)\n",
                   static_cast<unsigned long long>(slot->write.offset), slot->write.length,
                   GetLastError(), n);
      return false;
    }
    char record[96];
    const int len = std::snprintf(record, sizeof record, "%llu %llu %u %llu\n",
                                  static_cast<unsigned long long>(slot->index),
                                  static_cast<unsigned long long>(slot->write.offset),
                                  slot->write.length,
                                  static_cast<unsigned long long>(slot->write.seed));
    if (write(journal, record, static_cast<std::size_t>(len)) != len) {
      std::perror("journal");
      return false;
    }
    fifo.pop_front();
    free_slots.push_back(slot);
    return true;
  };
  auto overlaps_in_flight = [&](const vdisk_interop::CrashWrite& w) {
    for (const InFlight* f : fifo) {
      if (w.offset < f->write.offset + f->write.length && f->write.offset < w.offset + w.length)
        return true;
    }
    return false;
  };

  vdisk_interop::CrashPlan plan(seed, info.Size.VirtualSize);
  for (std::uint64_t i = 0; i < count; ++i) {
    const vdisk_interop::CrashWrite w = plan.Next();
    while (!fifo.empty() && (free_slots.empty() || overlaps_in_flight(w))) {
      if (!retire_oldest()) return 4;
    }
    InFlight* slot = free_slots.back();
    free_slots.pop_back();
    slot->index = i;
    slot->write = w;
    vdisk_interop::FillPattern(w.seed, std::span(slot->buffer.data(), w.length));
    slot->ov = OVERLAPPED{};
    slot->ov.Offset = static_cast<DWORD>(w.offset);
    slot->ov.OffsetHigh = static_cast<DWORD>(w.offset >> 32);
    DWORD n = 0;
    // Completing at once (TRUE) is allowed; GetOverlappedResult then returns at once too.
    if (!WriteFile(disk, slot->buffer.data(), w.length, &n, &slot->ov) &&
        GetLastError() != ERROR_IO_PENDING) {
      std::fprintf(stderr, "WriteFile(%llu, %u) failed with %u\n",
                   static_cast<unsigned long long>(w.offset), w.length, GetLastError());
      return 4;
    }
    fifo.push_back(slot);
  }
  while (!fifo.empty()) {
    if (!retire_oldest()) return 4;
  }
  CloseHandle(disk);
  close(journal);
  return 0;
}
