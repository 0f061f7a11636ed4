// resize_bench [DIR]
//
// ResizeVirtualDisk through the VirtDisk API, synchronously, on the cases where a resize does
// real work: a VHD whose BAT must move to the end of the file, a VHDX whose BAT region must move
// (with the region tables), a fixed VHDX whose new blocks' BAT entries are journalled, and the
// cases that only switch the size (fixed VHD grow, VHDX shrink). Prints the time of each call.
// qemu-img has no peer to compare with: `qemu-img resize` refuses both vpc and vhdx ("Image
// format driver does not support resize").
#include <virtdisk.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

namespace {

std::wstring Wide(const std::string& s) { return std::wstring(s.begin(), s.end()); }

DWORD Create(const std::string& path, ULONG device, ULONGLONG size, bool fixed, HANDLE* h) {
  VIRTUAL_STORAGE_TYPE type{device, VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT};
  CREATE_VIRTUAL_DISK_PARAMETERS params{};
  params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
  params.Version2.MaximumSize = size;
  const std::wstring wide = Wide(path);
  return CreateVirtualDisk(&type, reinterpret_cast<PCWSTR>(wide.c_str()), VIRTUAL_DISK_ACCESS_NONE,
                           nullptr,
                           fixed ? CREATE_VIRTUAL_DISK_FLAG_FULL_PHYSICAL_ALLOCATION
                                 : CREATE_VIRTUAL_DISK_FLAG_NONE,
                           0, &params, nullptr, h);
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path dir = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "resize_bench";
  fs::create_directories(dir);
  constexpr ULONGLONG kGiB = 1ull << 30;
  struct Case {
    const char* name;
    ULONG device;
    bool fixed;
    ULONGLONG from, to;
  };
  const Case cases[] = {
      {"vhd fixed 1 GiB -> 64 GiB", VIRTUAL_STORAGE_TYPE_DEVICE_VHD, true, kGiB, 64 * kGiB},
      {"vhd dynamic 1 GiB -> 2000 GiB (BAT moves)", VIRTUAL_STORAGE_TYPE_DEVICE_VHD, false, kGiB,
       2000 * kGiB},
      {"vhdx dynamic 1 GiB -> 64 TiB (BAT region moves)", VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, false,
       kGiB, 64 * 1024 * kGiB},
      {"vhdx fixed 1 GiB -> 1 TiB (32768 new blocks)", VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, true, kGiB,
       1024 * kGiB},
      {"vhdx dynamic 100 GiB -> 10 GiB (shrink)", VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, false,
       100 * kGiB, 10 * kGiB},
  };
  int failures = 0;
  for (const Case& c : cases) {
    const fs::path path =
        dir / (std::string("disk") + (c.device == VIRTUAL_STORAGE_TYPE_DEVICE_VHD ? ".vhd" : ".vhdx"));
    fs::remove(path);
    HANDLE h = nullptr;
    DWORD error = Create(path.string(), c.device, c.from, c.fixed, &h);
    if (error != ERROR_SUCCESS) {
      std::printf("%-50s create failed: %lu\n", c.name, static_cast<unsigned long>(error));
      ++failures;
      continue;
    }
    RESIZE_VIRTUAL_DISK_PARAMETERS params{};
    params.Version = RESIZE_VIRTUAL_DISK_VERSION_1;
    params.Version1.NewSize = c.to;
    const auto start = std::chrono::steady_clock::now();
    error = ResizeVirtualDisk(h, RESIZE_VIRTUAL_DISK_FLAG_ALLOW_UNSAFE_VIRTUAL_SIZE, &params,
                              nullptr);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (error != ERROR_SUCCESS) ++failures;
    std::printf("%-50s %9.1f ms%s\n", c.name, ms,
                error == ERROR_SUCCESS ? "" : (" error " + std::to_string(error)).c_str());
    CloseHandle(h);
    fs::remove(path);
  }
  return failures == 0 ? 0 : 1;
}
