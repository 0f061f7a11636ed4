// A process that mirrors a disk while writing to it, until it is killed: the victim of
// MirrorInterop.KilledMirrorLeavesASourceThatChecksClean.
//   mirror_writer SOURCE TARGET SEED
// Prints "mirroring" once MirrorVirtualDisk has returned ERROR_IO_PENDING, then "wrote N" after
// its Nth write has completed (the test kills it after a number of them).
#include <virtdisk.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const std::wstring source = std::filesystem::path(argv[1]).wstring();
  const std::wstring target = std::filesystem::path(argv[2]).wstring();
  std::mt19937_64 rng(std::strtoull(argv[3], nullptr, 10));
  VIRTUAL_STORAGE_TYPE type{};
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  HANDLE h = nullptr;
  if (OpenVirtualDisk(&type, source.c_str(), VIRTUAL_DISK_ACCESS_NONE, OPEN_VIRTUAL_DISK_FLAG_NONE,
                      &open, &h) != ERROR_SUCCESS)
    return 3;
  ATTACH_VIRTUAL_DISK_PARAMETERS attach{};
  attach.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
  if (AttachVirtualDisk(h, nullptr, ATTACH_VIRTUAL_DISK_FLAG_NO_LOCAL_HOST, 0, &attach, nullptr) !=
      ERROR_SUCCESS)
    return 4;
  MIRROR_VIRTUAL_DISK_PARAMETERS mirror{};
  mirror.Version = MIRROR_VIRTUAL_DISK_VERSION_1;
  mirror.Version1.MirrorVirtualDiskPath = target.c_str();
  OVERLAPPED ov{};
  if (MirrorVirtualDisk(h, MIRROR_VIRTUAL_DISK_FLAG_NONE, &mirror, &ov) != ERROR_IO_PENDING) return 5;
  std::printf("mirroring\n");
  std::fflush(stdout);
  GET_VIRTUAL_DISK_INFO info{};
  info.Version = GET_VIRTUAL_DISK_INFO_SIZE;
  ULONG size = sizeof info;
  if (GetVirtualDiskInformation(h, &size, &info, nullptr) != ERROR_SUCCESS) return 6;
  std::vector<unsigned char> data(256 << 10);
  for (unsigned long written = 1;; ++written) {
    const std::uint64_t length = (1 + rng() % 64) * 4096;
    const std::uint64_t offset = (rng() % ((info.Size.VirtualSize - length) / 4096)) * 4096;
    for (std::size_t i = 0; i < length; ++i) data[i] = static_cast<unsigned char>(rng());
    OVERLAPPED w{};
    w.Offset = static_cast<DWORD>(offset);
    w.OffsetHigh = static_cast<DWORD>(offset >> 32);
    DWORD n = 0;
    if (!WriteFile(h, data.data(), static_cast<DWORD>(length), &n, &w) &&
        !(GetLastError() == ERROR_IO_PENDING && GetOverlappedResult(h, &w, &n, TRUE)))
      return 7;
    std::printf("wrote %lu\n", written);
    std::fflush(stdout);
  }
}
