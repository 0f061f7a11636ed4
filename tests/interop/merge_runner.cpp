// The process merge_interop_test.cpp kills in the middle of a merge: opens a chain's top with V2
// parameters, writes one byte to descriptor 3 (VIRTDISK_MERGE_READY_FD) when it is about to
// merge, then runs MergeVirtualDisk V2 synchronously.
//   merge_runner TOP SOURCE_DEPTH TARGET_DEPTH
// Exit codes: 0 merged; 2 usage; 3 open failed; 4 merge failed.
#include <virtdisk.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: merge_runner TOP SOURCE_DEPTH TARGET_DEPTH\n");
    return 2;
  }
  std::basic_string<WCHAR> path;
  for (const char* c = argv[1]; *c != 0; ++c) path.push_back(static_cast<WCHAR>(*c));
  VIRTUAL_STORAGE_TYPE type{};
  OPEN_VIRTUAL_DISK_PARAMETERS open{};
  open.Version = OPEN_VIRTUAL_DISK_VERSION_2;
  HANDLE h = nullptr;
  DWORD e = OpenVirtualDisk(&type, path.c_str(), VIRTUAL_DISK_ACCESS_NONE,
                            OPEN_VIRTUAL_DISK_FLAG_NONE, &open, &h);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "open: %lu\n", static_cast<unsigned long>(e));
    return 3;
  }
  if (const char* fd = std::getenv("VIRTDISK_MERGE_READY_FD")) {
    const char byte = 'r';
    (void)!write(std::atoi(fd), &byte, 1);
  }
  MERGE_VIRTUAL_DISK_PARAMETERS p{};
  p.Version = MERGE_VIRTUAL_DISK_VERSION_2;
  p.Version2.MergeSourceDepth = static_cast<ULONG>(std::strtoul(argv[2], nullptr, 10));
  p.Version2.MergeTargetDepth = static_cast<ULONG>(std::strtoul(argv[3], nullptr, 10));
  e = MergeVirtualDisk(h, MERGE_VIRTUAL_DISK_FLAG_NONE, &p, nullptr);
  CloseHandle(h);
  if (e != ERROR_SUCCESS) {
    std::fprintf(stderr, "merge: %lu\n", static_cast<unsigned long>(e));
    return 4;
  }
  return 0;
}
