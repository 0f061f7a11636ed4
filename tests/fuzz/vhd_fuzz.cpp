// libFuzzer target for the VHD parser: the input is a whole VHD file (footer, dynamic header,
// BAT, sector bitmaps, parent locators), held in memory (platform::MemoryFile, capped so that a
// hostile BAT cannot exhaust memory) as "<dir>/child.vhd".
//
// Each input is probed, opened read-only and read across (ranges held as data, as zeros, or in
// the parent), then opened read-write and written to (block allocation, bitmap and BAT updates).
// A differencing input whose locators name "parent.vhd" in its directory gets the fixed parent
// of fuzz_support.h (also from memory): the parent check runs and the disk is read through the
// chain, as VirtualDisk reads it. No other candidate path is ever opened.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "core/virtual_disk.h"
#include "formats/vhd/vhd_provider.h"
#include "fuzz_support.h"
#include "platform/memory_file.h"

namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kCapacity = 96ull << 20;
// Not a directory of this machine: only the paths of the MemoryFiles.
const fs::path kDir = "/fuzz-vhd";

const vdisk::Provider& Vhd() {
  static const std::unique_ptr<vdisk::Provider> provider = vdisk::MakeVhdProvider();
  return *provider;
}

// The parent's bytes, made once with our writer in a temporary directory.
const std::vector<std::byte>& ParentBytes() {
  static const std::vector<std::byte> bytes = [] {
    std::string dir = (fs::temp_directory_path() / "vhd_fuzz.XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) std::abort();
    const fs::path path = fs::path(dir) / "parent.vhd";
    if (!vdisk::fuzz::CreateVhdParent(Vhd(), path).ok()) std::abort();
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::remove_all(dir);
    std::vector<std::byte> out(chars.size());
    std::memcpy(out.data(), chars.data(), chars.size());
    return out;
  }();
  return bytes;
}

std::unique_ptr<vdisk::platform::File> FileOf(std::vector<std::byte> bytes, const fs::path& path) {
  auto file = std::make_unique<vdisk::platform::MemoryFile>(std::move(bytes), path);
  vdisk::platform::MemoryFileFaults faults;
  faults.capacity = kCapacity;
  file->set_faults(faults);
  return file;
}

// Reads a few ranges of the chain child -> fixed parent, if the child names that parent.
void ReadThroughParent(std::unique_ptr<vdisk::Image> child) {
  const auto ref = child->parent();
  if (!ref) return;
  const fs::path wanted = kDir / "parent.vhd";
  if (std::find(ref->candidates.begin(), ref->candidates.end(), wanted) == ref->candidates.end())
    return;
  vdisk::OpenOptions options;
  auto parent = Vhd().Open(FileOf(ParentBytes(), wanted), options);
  if (!parent.ok()) std::abort();  // our own parent must open
  if (!child->CheckParent(**parent).ok()) return;
  std::vector<std::unique_ptr<vdisk::Image>> chain;
  chain.push_back(std::move(child));
  chain.push_back(std::move(parent).value());
  vdisk::VirtualDisk disk(std::move(chain));
  const std::uint64_t size = disk.size();
  const std::uint32_t sector = disk.sector_size();
  std::vector<std::byte> buffer(64 * 1024);
  for (const std::uint64_t start : {std::uint64_t{0}, size / 2, size - buffer.size()}) {
    const std::uint64_t offset = start / sector * sector;
    if (offset >= size) continue;
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset));
    (void)disk.Read(offset, std::span(buffer).first(n / sector * sector));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)ParentBytes();
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  vdisk::ProbeData probe;
  probe.head = std::span(bytes).first(std::min<std::size_t>(size, vdisk::kProbeHeadBytes));
  probe.tail = std::span(bytes).last(std::min<std::size_t>(size, vdisk::kProbeTailBytes));
  probe.file_size = size;
  (void)Vhd().Probe(probe);
  for (const bool read_only : {true, false}) {
    vdisk::OpenOptions options;
    options.read_only = read_only;
    auto image = Vhd().Open(FileOf(bytes, kDir / "child.vhd"), options);
    if (!image.ok()) continue;
    vdisk::fuzz::ReadAcross(**image);
    if (read_only) {
      ReadThroughParent(std::move(image).value());
    } else {
      vdisk::fuzz::WriteSome(**image);
    }
  }
  return 0;
}
