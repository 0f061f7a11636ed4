// libvhdi_dump OUT TOP [PARENT ...]
//
// libvhdi as a command: reads the disk of a VHD/VHDX chain (top first, each file's parent after
// it) through libvhdi and writes its bytes to OUT, then prints a line per file of the chain:
// "<identifier> <parent identifier>", the GUID bytes libvhdi reports (in text order), in hex (the
// parent's is all zeros for a file without one). The unit suite's VhdxInterop case runs it through the host
// shell under Wine, where libvhdi, a Linux library, cannot be loaded, and directly on Linux, so
// both runs ask the same oracle the same way.
//
// Exit status: 0 done, 1 libvhdi or the output file failed (message on standard error), 2 usage.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "libvhdi_reader.h"

namespace {

std::string Hex(const std::array<std::uint8_t, 16>& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT TOP [PARENT ...]\n", argv[0]);
    return 2;
  }
  if (!vdisk_interop::HaveLibvhdi()) {
    std::fprintf(stderr, "libvhdi_dump: built without libvhdi\n");
    return 1;
  }
  const std::filesystem::path out_path = argv[1];
  const std::vector<std::filesystem::path> chain(argv + 2, argv + argc);
  std::string error;
  const auto data = vdisk_interop::LibvhdiReadAll(chain, nullptr, &error);
  if (!data) {
    std::fprintf(stderr, "libvhdi_dump: %s\n", error.c_str());
    return 1;
  }
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data->data()), static_cast<std::streamsize>(data->size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "libvhdi_dump: cannot write %s\n", out_path.c_str());
    return 1;
  }
  for (const auto& file : chain) {
    const auto ids = vdisk_interop::LibvhdiReadIdentifiers(file, &error);
    if (!ids) {
      std::fprintf(stderr, "libvhdi_dump: %s\n", error.c_str());
      return 1;
    }
    std::printf("%s %s\n", Hex(ids->identifier).c_str(), Hex(ids->parent).c_str());
  }
  return 0;
}
