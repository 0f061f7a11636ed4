// A file that "dies" after a budget of writes, as a killed process would: the write that
// exhausts the budget lands half-way, nothing after it lands at all. For the crash sweeps of the
// image formats, which stop a writer after every possible number of writes and check what a
// later open finds. (platform::FaultInjectingFile, src/platform/fault_file.h, fails writes
// cleanly instead, as a full disk does.) Header-only: for tests linked with the core.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <span>

#include "platform/file.h"

namespace vdisk_testing {

// Which calls spend the budget besides WriteAt.
enum class CrashPoints {
  kWrites,            // WriteAt only; a Resize after the crash fails
  kWritesAndResizes,  // Resize is a crash point too (a log replay that extends the file)
};

class CrashingFile final : public vdisk::platform::File {
 public:
  CrashingFile(std::unique_ptr<vdisk::platform::File> inner,
               std::shared_ptr<std::atomic<int>> budget, CrashPoints points)
      : inner_(std::move(inner)), budget_(std::move(budget)), points_(points) {}

  vdisk::Status ReadAt(std::uint64_t offset, std::span<std::byte> out) override {
    return inner_->ReadAt(offset, out);
  }
  vdisk::Status WriteAt(std::uint64_t offset, std::span<const std::byte> data) override {
    const int left = (*budget_)--;
    if (left > 0) return inner_->WriteAt(offset, data);
    if (left == 0) (void)inner_->WriteAt(offset, data.first(data.size() / 2));
    return Crashed();
  }
  vdisk::Status Flush() override { return Dead() ? Crashed() : inner_->Flush(); }
  vdisk::Result<std::uint64_t> Size() override { return inner_->Size(); }
  vdisk::Status Resize(std::uint64_t size) override {
    if (points_ == CrashPoints::kWritesAndResizes) {
      return (*budget_)-- > 0 ? inner_->Resize(size) : Crashed();
    }
    return Dead() ? Crashed() : inner_->Resize(size);
  }
  vdisk::Status Allocate(std::uint64_t offset, std::uint64_t length) override {
    return Dead() ? Crashed() : inner_->Allocate(offset, length);
  }
  vdisk::Result<std::uint64_t> AllocatedBytes() override { return inner_->AllocatedBytes(); }
  vdisk::Status Lock(bool exclusive) override { return inner_->Lock(exclusive); }
  bool writable() const override { return inner_->writable(); }
  const std::filesystem::path& path() const override { return inner_->path(); }

 private:
  bool Dead() const { return *budget_ < 0; }
  static vdisk::Status Crashed() { return vdisk::Status(vdisk::Code::kIoError, "simulated crash"); }
  std::unique_ptr<vdisk::platform::File> inner_;
  std::shared_ptr<std::atomic<int>> budget_;
  const CrashPoints points_;
};

// Opens every file as a CrashingFile with one shared budget of `budget` writes, for its
// lifetime, and restores the previous opener when destroyed.
class CrashingOpener {
 public:
  explicit CrashingOpener(int budget, CrashPoints points = CrashPoints::kWrites)
      : budget_(std::make_shared<std::atomic<int>>(budget)) {
    previous_ = vdisk::platform::SetFileOpenerForTesting(
        [shared = budget_, points](const std::filesystem::path& path,
                                   vdisk::platform::FileAccess access,
                                   vdisk::platform::FileDisposition disposition)
            -> vdisk::Result<std::unique_ptr<vdisk::platform::File>> {
          VDISK_ASSIGN_OR_RETURN(auto file,
                                 vdisk::platform::OpenOsFile(path, access, disposition));
          return std::unique_ptr<vdisk::platform::File>(
              std::make_unique<CrashingFile>(std::move(file), shared, points));
        });
  }
  ~CrashingOpener() { vdisk::platform::SetFileOpenerForTesting(std::move(previous_)); }
  CrashingOpener(const CrashingOpener&) = delete;
  CrashingOpener& operator=(const CrashingOpener&) = delete;
  // Whether the budget ran out (the "process" died).
  bool crashed() const { return *budget_ < 0; }

 private:
  std::shared_ptr<std::atomic<int>> budget_;
  vdisk::platform::FileOpener previous_;
};

}  // namespace vdisk_testing
