// MemoryFile: a File held in memory, with fault injection, for tests and fuzzing.
//
// Faults (all off by default): fail the Nth write or flush (kIoError), refuse to grow past a
// capacity (kDiskFull, as ENOSPC), and "short reads": reads reaching past a limit fail as a read
// past the end of a file does. Thread-safe (one mutex); not meant to be fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <vector>

#include "platform/file.h"

namespace vdisk::platform {

struct MemoryFileFaults {
  // The write (WriteAt, Resize, Allocate) with this 1-based number fails, and every later one
  // too when sticky. 0: never.
  std::uint64_t fail_write_number = 0;
  bool sticky = true;
  // The flush with this 1-based number fails (and later ones when sticky). 0: never.
  std::uint64_t fail_flush_number = 0;
  // The file may not grow beyond this many bytes (kDiskFull). 0: no limit.
  std::uint64_t capacity = 0;
  // Reads that reach past this offset fail as reads past the end of the file. 0: no limit.
  std::uint64_t readable_limit = 0;
};

class MemoryFile final : public File {
 public:
  explicit MemoryFile(std::vector<std::byte> contents = {},
                      std::filesystem::path path = "memory.img", bool writable = true);

  Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override;
  Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override;
  Status Flush() override;
  Result<std::uint64_t> Size() override;
  Status Resize(std::uint64_t size) override;
  Status Allocate(std::uint64_t offset, std::uint64_t length) override;
  Result<std::uint64_t> AllocatedBytes() override;
  Status Lock(bool exclusive) override;
  bool writable() const override { return writable_; }
  const std::filesystem::path& path() const override { return path_; }

  void set_faults(const MemoryFileFaults& faults);
  std::vector<std::byte> contents() const;
  std::uint64_t writes() const;
  std::uint64_t flushes() const;

 private:
  // REQUIRES: mutex_ held. The fault for the next write, or OK.
  Status NextWriteLocked(std::uint64_t new_size);

  mutable std::mutex mutex_;
  std::vector<std::byte> data_;
  const std::filesystem::path path_;
  const bool writable_;
  MemoryFileFaults faults_;
  std::uint64_t writes_ = 0;
  std::uint64_t flushes_ = 0;
};

}  // namespace vdisk::platform
