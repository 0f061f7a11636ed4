// MirrorJob: the engine behind MirrorVirtualDisk / GetVirtualDiskOperationProgress /
// BreakMirrorVirtualDisk.
//
// States: copying -> ready (everything copied; every write now goes to source and target and
// completes only when both have it) -> broken (the target is the active disk) or cancelled
// (the source stays active; a target the job created is removed) or failed (the same, with the
// error). Design after QEMU's mirror job:
//  - Only the top image of the source is copied; ranges it does not hold stay unallocated in
//    the target, so a differencing target falls through to the same parent.
//  - The unit of work is a chunk of the target's block size (at least 1 MiB). The dirty set is
//    seeded with every chunk the source holds data in; a guest write during the copy re-marks
//    its chunks after it reaches the source, so a chunk copied too early is copied again.
//  - A chunk being copied is "in flight"; no second copy of it starts until the first ends, so
//    target writes of one chunk never reorder. A chunk a guest write is changing is marked
//    dirty before the write and is not copied until the write has reached the source.
//  - The copy reads the source's file directly, without the disk's range lock (range_lock.h), so
//    it may read a sector a guest write is changing part old and part new; that chunk is
//    copied again after the write, before the job can be ready. Its writes into the target
//    (Image::Write, bypassing the target's VirtualDisk) need no lock either: nothing reads or
//    writes the target before ready, and nothing copies after.
//  - Workers copy chunks in ascending order. A chunk's data moves one of two ways:
//     * in the kernel, where source and target files are on one filesystem: the target
//       allocates as for a write and copies the source file's bytes with copy_file_range
//       (Image::WriteFromFile; a reflink on XFS/btrfs). Into zeros (a fresh target chunk),
//       only the ranges SEEK_DATA finds in the source file are copied;
//     * through memory otherwise (other filesystems, wrapped files, or when the kernel refuses):
//       1 MiB reads of the source on an IoQueue (io_uring, or its thread-pool fallback), several
//       in flight per worker from a fixed pool of aligned buffers allocated once per job, each
//       written to the target through Image::Write as it completes; all-zero pieces are not
//       written into a fresh target chunk.
//    Either way the engine's memory does not grow with the disk.
//  - Zeros are left out only where the target reads zeros without them: a fresh chunk of a
//    target that is not differencing (a differencing target would read its parent there).
//  - Ready is declared under the job's lock when nothing is dirty, in flight, or being written
//    by a guest in the copying state; from then on guest writes go to both sides under a
//    striped range lock that keeps their order the same on both.
// Progress: CompletionValue is the bytes scheduled so far (it grows when a write dirties a clean
// chunk), CurrentValue the bytes copied; they are equal exactly when the job is ready.
// Thread safety: all public members may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include "core/disk_operation.h"
#include "core/open_disk.h"
#include "core/virtual_disk.h"
#include "formats/registry/registry.h"
#include "platform/io_queue.h"

namespace vdisk {

struct MirrorOptions {
  std::filesystem::path target_path;
  // MIRROR_VIRTUAL_DISK_FLAG_EXISTING_FILE: use an existing image of the same format and size.
  bool existing_file = false;
  std::size_t workers = 4;
  // MIRROR_VIRTUAL_DISK_FLAG_SKIP_MIRROR_ACTIVATION: at the break the target is made durable and
  // left as a consistent copy, and the source stays the active disk.
  bool skip_activation = false;
  // Copy in the kernel (copy_file_range) where the files allow it; false: always through
  // memory. VIRTDISK_COPY_FILE_RANGE=0 in the environment also turns it off.
  bool kernel_copy = true;
  // Called exactly once, from a job thread, when the job ends (broken: ok; cancelled:
  // kOperationAborted; failed: the error).
  std::function<void(const Status&)> on_finished;
};

struct MirrorProgress {
  enum class State { kCopying, kReady, kBroken, kCancelled, kFailed };
  State state = State::kCopying;
  std::uint64_t current = 0;
  std::uint64_t completion = 0;
  Status final_status;  // meaningful once finished
  bool finished() const { return state != State::kCopying && state != State::kReady; }
};

// How the copy has moved data so far (for tests and tracing).
struct MirrorCopyStats {
  platform::IoBackend io_backend = platform::IoBackend::kThreads;
  bool kernel_copy = false;              // the kernel path is in use
  std::uint64_t kernel_bytes = 0;        // copied by copy_file_range
  std::uint64_t buffered_bytes = 0;      // read into the buffer pool and written
  std::uint64_t skipped_zero_bytes = 0;  // data extents left out as zeros (holes, zero pieces)
};

class MirrorJob final : public WriteFanout,
                        public DiskOperation,
                        public std::enable_shared_from_this<MirrorJob> {
 public:
  // Creates (or opens) the target, seeds the dirty set, installs the job as the disk's write
  // fan-out and starts copying. On failure nothing is left behind.
  static Result<std::shared_ptr<MirrorJob>> Start(const ProviderRegistry& registry,
                                                  std::shared_ptr<OpenDisk> disk,
                                                  MirrorOptions options);
  ~MirrorJob() override;
  MirrorJob(const MirrorJob&) = delete;
  MirrorJob& operator=(const MirrorJob&) = delete;

  MirrorProgress Progress() const;
  // Progress() as any operation reports it.
  OperationProgress Report() const override;
  MirrorCopyStats CopyStats() const;
  // Makes the target the active disk. kVhdInvalidState unless ready; then nothing changes.
  Status Break();
  // Ends the job with kOperationAborted unless it already ended; returns when it has.
  void Cancel() override;
  // Blocks until the job has ended.
  void WaitFinished() override;

  Status Write(VirtualDisk& active, std::uint64_t offset,
               std::span<const std::byte> data) override;

 private:
  struct Private {};

 public:
  MirrorJob(Private, std::shared_ptr<OpenDisk> disk, std::shared_ptr<VirtualDisk> source,
            std::shared_ptr<VirtualDisk> target, MirrorOptions options, bool created_target);

 private:
  using Chunk = std::uint64_t;
  static constexpr std::size_t kStripes = 64;
  // The buffer pool: source reads in flight at most, and their size.
  static constexpr std::size_t kPoolBuffers = 16;
  static constexpr std::size_t kBufferBytes = 1 << 20;
  static constexpr std::size_t kBufferAlignment = 4096;

  // A run of source data to copy: virtual offset, where it is in the source file, length.
  struct Piece {
    std::uint64_t offset = 0;
    std::uint64_t file_offset = 0;
    std::uint64_t length = 0;
  };
  struct ReadWindow;  // one worker's source reads in flight

  std::uint64_t ChunkBytes(Chunk chunk) const;
  Status SeedDirtySet();
  void RunWorker();
  // `zero_skip`: the target range of this chunk reads as zeros without being written.
  Status CopyChunk(Chunk chunk, bool zero_skip, ReadWindow& window);
  Status CopyInKernel(const Piece& piece, bool zero_skip);
  Status CopyThroughMemory(bool zero_skip, ReadWindow& window);
  // A free pool buffer; with `wait`, waits for one (nullopt only once the job stops).
  std::optional<std::size_t> TakeBuffer(bool wait);
  void ReleaseBuffer(std::size_t buffer);
  std::span<std::byte> Buffer(std::size_t buffer, std::uint64_t length) const;
  bool Stopping() const;
  void MaybeReadyLocked();
  void FailLocked(const Status& status);
  void Finish(MirrorProgress::State state, Status status);
  void Supervise();

  const std::shared_ptr<OpenDisk> disk_;
  std::shared_ptr<VirtualDisk> source_;
  std::shared_ptr<VirtualDisk> target_;
  const MirrorOptions options_;
  const bool created_target_;
  std::uint64_t chunk_size_ = 0;
  std::unique_ptr<std::byte[]> pool_storage_;  // kPoolBuffers buffers, aligned from pool_
  std::byte* pool_ = nullptr;
  std::unique_ptr<platform::IoQueue> io_;  // after the pool: destroyed (drained) before it
  std::atomic<bool> kernel_copy_{false};   // off for good once the kernel refuses a copy
  std::atomic<std::uint64_t> kernel_bytes_{0};
  std::atomic<std::uint64_t> buffered_bytes_{0};
  std::atomic<std::uint64_t> skipped_zero_bytes_{0};

  mutable std::mutex mutex_;
  std::condition_variable work_;      // workers wait for dirty chunks or stop
  std::condition_variable changed_;   // state changes (ready, finished, stop)
  MirrorProgress::State state_ = MirrorProgress::State::kCopying;
  std::set<Chunk> dirty_;
  std::set<Chunk> in_flight_;
  std::set<Chunk> copied_once_;  // chunks the copy has written into the target
  std::vector<std::size_t> free_buffers_;  // indexes into the pool
  std::size_t guest_writes_ = 0;  // guest writes under way in the copying state
  // Chunks those writes touch (one entry per write and chunk): dirty, and not copied until the
  // write is done, so that CurrentValue stays below CompletionValue while a write is under way.
  std::multiset<Chunk> guest_chunks_;
  std::uint64_t scheduled_bytes_ = 0;
  std::uint64_t copied_bytes_ = 0;
  bool stop_ = false;
  Status failure_;
  bool ended_ = false;     // final state known (set before on_finished runs)
  bool finished_ = false;  // on_finished has returned
  Status final_status_;
  MirrorProgress::State final_state_ = MirrorProgress::State::kCopying;

  std::mutex stripes_[kStripes];
  std::vector<std::thread> workers_;
  std::thread supervisor_;
};

}  // namespace vdisk
