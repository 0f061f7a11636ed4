// Bytes of image files, read and written behind the library's back: the pokes of the corruption
// tests (a field of a VHD footer, a VHDX header, a log entry) and the reads that check what the
// library wrote. A failure is a test failure (GoogleTest's ADD_FAILURE), naming the file.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <vector>

namespace vdisk_testing {

// `size` bytes at `offset` of `path` (fewer if the file ends first, which fails the test).
std::vector<std::byte> ReadFileBytes(const std::filesystem::path& path, std::uint64_t offset,
                                     std::size_t size);
// Writes `bytes` at `offset` of the existing file `path`.
void WriteFileBytes(const std::filesystem::path& path, std::uint64_t offset,
                    std::span<const std::byte> bytes);
// Replaces the whole content of `path` (created if missing) with `bytes`.
void ReplaceFileBytes(const std::filesystem::path& path, std::span<const std::byte> bytes);
// The whole content of `path` (empty if it cannot be read).
std::vector<std::byte> ReadWholeFile(const std::filesystem::path& path);

// A trivially copyable structure (an on-disk header, footer or entry) at `offset` of `path`,
// and its write back.
template <typename T>
T ReadFileStruct(const std::filesystem::path& path, std::uint64_t offset) {
  T value{};
  const auto bytes = ReadFileBytes(path, offset, sizeof value);
  std::memcpy(&value, bytes.data(), std::min(bytes.size(), sizeof value));
  return value;
}
template <typename T>
void WriteFileStruct(const std::filesystem::path& path, std::uint64_t offset, const T& value) {
  WriteFileBytes(path, offset, std::as_bytes(std::span<const T, 1>(&value, 1)));
}

}  // namespace vdisk_testing
