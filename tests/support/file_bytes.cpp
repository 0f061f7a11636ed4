#include "support/file_bytes.h"

#include <gtest/gtest.h>

#include <fstream>

namespace vdisk_testing {

std::vector<std::byte> ReadFileBytes(const std::filesystem::path& path, std::uint64_t offset,
                                     std::size_t size) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<std::byte> out(size);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(size));
  if (!in) {
    ADD_FAILURE() << path << ": cannot read " << size << " bytes at " << offset;
    out.resize(in.gcount() > 0 ? static_cast<std::size_t>(in.gcount()) : 0);
  }
  return out;
}

void WriteFileBytes(const std::filesystem::path& path, std::uint64_t offset,
                    std::span<const std::byte> bytes) {
  std::fstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.seekp(static_cast<std::streamoff>(offset));
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) ADD_FAILURE() << path << ": cannot write " << bytes.size() << " bytes at " << offset;
}

void ReplaceFileBytes(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) ADD_FAILURE() << path << ": cannot write " << bytes.size() << " bytes";
}

std::vector<std::byte> ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  std::vector<std::byte> out(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!in) return {};
  return out;
}

}  // namespace vdisk_testing
