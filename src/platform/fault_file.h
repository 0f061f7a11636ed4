// FaultInjectingFile: a File that passes through to another one until a planned fault, for
// tests of failure paths (a full disk at the Nth write, an I/O error on reads, a device that
// stops accepting writes).
#pragma once

#include <atomic>
#include <chrono>
#include <thread>
#include <memory>

#include "platform/file.h"

namespace vdisk::platform {

struct FaultPlan {
  // Writes numbered from 1; the write with this number and every later one fail (0: never).
  std::uint64_t fail_write_from = 0;
  Code write_error = Code::kDiskFull;
  int write_os_error = 28;  // ENOSPC
  // Reads numbered from 1; the read with this number fails (0: never).
  std::uint64_t fail_read_at = 0;
  // Every read of at least this many bytes fails (0: never) - a bad data region, while the
  // small metadata reads of an open still work.
  std::size_t fail_reads_of_at_least = 0;
  Code read_error = Code::kIoError;
  // Every write first sleeps this long (a slow device).
  std::chrono::microseconds write_delay{0};
  int read_os_error = 5;  // EIO
};

class FaultInjectingFile final : public File {
 public:
  FaultInjectingFile(std::unique_ptr<File> inner, FaultPlan plan)
      : inner_(std::move(inner)), plan_(plan) {}

  Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override {
    const std::uint64_t n = ++reads_;
    if ((plan_.fail_read_at != 0 && n == plan_.fail_read_at) ||
        (plan_.fail_reads_of_at_least != 0 && out.size() >= plan_.fail_reads_of_at_least)) {
      return Status(plan_.read_error, path().string() + ": injected read fault",
                    plan_.read_os_error);
    }
    return inner_->ReadAt(offset, out);
  }
  Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override {
    const std::uint64_t n = ++writes_;
    if (plan_.write_delay.count() > 0) std::this_thread::sleep_for(plan_.write_delay);
    if (plan_.fail_write_from != 0 && n >= plan_.fail_write_from) {
      return Status(plan_.write_error, path().string() + ": injected write fault",
                    plan_.write_os_error);
    }
    return inner_->WriteAt(offset, data);
  }
  Status Flush() override { return inner_->Flush(); }
  Result<std::uint64_t> Size() override { return inner_->Size(); }
  Status Resize(std::uint64_t size) override { return inner_->Resize(size); }
  Status Allocate(std::uint64_t offset, std::uint64_t length) override {
    return inner_->Allocate(offset, length);
  }
  Result<std::uint64_t> AllocatedBytes() override { return inner_->AllocatedBytes(); }
  Status Lock(bool exclusive) override { return inner_->Lock(exclusive); }
  bool writable() const override { return inner_->writable(); }
  const std::filesystem::path& path() const override { return inner_->path(); }

  std::uint64_t writes() const { return writes_.load(); }

 private:
  std::unique_ptr<File> inner_;
  const FaultPlan plan_;
  std::atomic<std::uint64_t> reads_{0};
  std::atomic<std::uint64_t> writes_{0};
};

// Installs an opener that wraps files whose name is `file_name` in a FaultInjectingFile with
// `plan`, and restores the previous opener when destroyed.
class ScopedFaultInjection {
 public:
  ScopedFaultInjection(std::filesystem::path file_name, FaultPlan plan) {
    previous_ = SetFileOpenerForTesting(
        [name = std::move(file_name), plan](const std::filesystem::path& path, FileAccess access,
                                            FileDisposition disposition)
            -> Result<std::unique_ptr<File>> {
          VDISK_ASSIGN_OR_RETURN(auto file, OpenOsFile(path, access, disposition));
          if (path.filename() != name) return file;
          return std::unique_ptr<File>(std::make_unique<FaultInjectingFile>(std::move(file), plan));
        });
  }
  ~ScopedFaultInjection() { SetFileOpenerForTesting(std::move(previous_)); }
  ScopedFaultInjection(const ScopedFaultInjection&) = delete;
  ScopedFaultInjection& operator=(const ScopedFaultInjection&) = delete;

 private:
  FileOpener previous_;
};

}  // namespace vdisk::platform
