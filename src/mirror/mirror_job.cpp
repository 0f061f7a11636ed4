#include "mirror/mirror_job.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>

#include <gsl/gsl>

#include "base/bytes.h"

namespace vdisk {
namespace {

constexpr std::uint64_t kMinChunk = 1 << 20;
constexpr std::uint64_t kFixedChunk = 2 << 20;

// Zero runs are looked for in units of a filesystem block, a multiple of every logical sector
// size, so that runs start and end on sectors of the target.
constexpr std::size_t kZeroGranule = 4096;

// Calls fn(from, n) for each maximal run of kZeroGranule units of `data` that are not all zero
// (the last unit may be shorter).
template <typename Fn>
void ForEachNonZeroRun(std::span<const std::byte> data, Fn fn) {
  std::size_t run_start = 0;
  bool in_run = false;
  for (std::size_t at = 0; at < data.size(); at += kZeroGranule) {
    const bool zero = AllZero(data.subspan(at, std::min(kZeroGranule, data.size() - at)));
    if (!zero && !in_run) {
      run_start = at;
      in_run = true;
    } else if (zero && in_run) {
      fn(run_start, at - run_start);
      in_run = false;
    }
  }
  if (in_run) fn(run_start, data.size() - run_start);
}

const std::array<std::byte, 1 << 20>& Zeros() {
  static const std::array<std::byte, 1 << 20> zeros{};
  return zeros;
}

Result<std::unique_ptr<VirtualDisk>> OpenOrCreateTarget(const ProviderRegistry& registry,
                                                        const VirtualDisk& source,
                                                        const MirrorOptions& options) {
  const Image& top = source.top();
  if (options.existing_file) {
    DiskOpenRequest request;
    request.path = options.target_path;
    request.format = top.format();
    request.options.read_only = false;
    request.options.no_write_hardening = true;  // flushed at the switch
    VDISK_ASSIGN_OR_RETURN(auto target, VirtualDisk::Open(registry, request));
    if (target->size() != source.size() ||
        target->sector_size() != source.sector_size()) {
      return Status(Code::kInvalidParameter,
                    options.target_path.string() + ": the existing mirror target has size " +
                        std::to_string(target->size()) + " and sector size " +
                        std::to_string(target->sector_size()) + "; the source has " +
                        std::to_string(source.size()) + " and " +
                        std::to_string(source.sector_size()));
    }
    return target;
  }
  DiskCreateRequest request;
  request.path = options.target_path;
  request.format = top.format();
  request.options.subtype = top.subtype();
  request.options.virtual_size = top.subtype() == DiskSubtype::kDifferencing ? 0 : source.size();
  request.options.block_size = top.block_size();
  request.options.logical_sector_size = top.logical_sector_size();
  request.options.physical_sector_size = top.physical_sector_size();
  request.options.unique_id = top.virtual_disk_id();
  request.options.no_write_hardening = true;  // the target is flushed at the switch
  if (top.subtype() == DiskSubtype::kDifferencing && source.chain().size() > 1) {
    request.parent_path = source.chain()[1]->file().path();
  }
  return VirtualDisk::Create(registry, request);
}

bool KernelCopyAllowedByEnvironment() {
  const char* value = std::getenv("VIRTDISK_COPY_FILE_RANGE");
  return value == nullptr || std::string_view(value) != "0";
}

}  // namespace

// One worker's source reads, oldest first. The queue's callbacks mark them done.
struct MirrorJob::ReadWindow {
  struct Read {
    Piece piece;
    std::size_t buffer = 0;
    bool done = false;  // GUARDED_BY(mutex)
    Status status;      // GUARDED_BY(mutex)
  };
  std::mutex mutex;
  std::condition_variable completed;
  std::deque<Read> reads;     // GUARDED_BY(mutex): references stay valid while in the deque
  std::vector<Piece> pieces;  // the data of the chunk being copied, in pieces of kBufferBytes
};

MirrorJob::MirrorJob(Private, std::shared_ptr<OpenDisk> disk, std::shared_ptr<VirtualDisk> source,
                     std::shared_ptr<VirtualDisk> target, MirrorOptions options,
                     bool created_target)
    : disk_(std::move(disk)),
      source_(std::move(source)),
      target_(std::move(target)),
      options_(std::move(options)),
      created_target_(created_target) {
  const std::uint32_t block = target_->top().block_size();
  chunk_size_ = block == 0 ? kFixedChunk : std::max<std::uint64_t>(block, kMinChunk);
  // Allocated once, touched only by the buffered path: untouched pages cost no memory.
  pool_storage_ =
      std::make_unique_for_overwrite<std::byte[]>(kPoolBuffers * kBufferBytes + kBufferAlignment);
  const auto address = reinterpret_cast<std::uintptr_t>(pool_storage_.get());
  pool_ = pool_storage_.get() + (kBufferAlignment - address % kBufferAlignment) % kBufferAlignment;
  for (std::size_t i = kPoolBuffers; i > 0; --i) free_buffers_.push_back(i - 1);
  Image& source_top = source_->top();
  kernel_copy_ = options_.kernel_copy && KernelCopyAllowedByEnvironment() &&
                 source_top.data_in_file() &&
                 target_->top().file().CanCopyInKernelFrom(source_top.file());
}

MirrorJob::~MirrorJob() {
  if (supervisor_.joinable()) {
    if (supervisor_.get_id() == std::this_thread::get_id()) {
      supervisor_.detach();  // the last reference died in the job's own thread
    } else {
      Cancel();
      supervisor_.join();
    }
  }
}

Result<std::shared_ptr<MirrorJob>> MirrorJob::Start(const ProviderRegistry& registry,
                                                    std::shared_ptr<OpenDisk> disk,
                                                    MirrorOptions options) {
  auto source = disk->disk();
  if (source->top().format() == DiskFormat::kIso) {
    return Status(Code::kNotSupported, "ISO images cannot be mirrored");
  }
  if (source->read_only()) {
    return Status(Code::kAccessDenied, "the disk is open read-only; a mirror needs write access");
  }
  VDISK_ASSIGN_OR_RETURN(auto io, platform::OpenIoQueue(kPoolBuffers));
  const bool created = !options.existing_file;
  // Before the target: a target this call created goes again, after it is closed, if the job
  // does not start.
  platform::NewFileGuard created_target(options.target_path);
  VDISK_ASSIGN_OR_RETURN(auto made, OpenOrCreateTarget(registry, *source, options));
  if (created) created_target.Arm();
  std::shared_ptr<VirtualDisk> target(std::move(made));
  // Until the job runs, a failure (an error or an exception) takes back the fan-out, closes the
  // target and removes a target this call created: nothing is left behind.
  bool started = false;
  std::shared_ptr<MirrorJob> job;
  auto abandon = gsl::finally([&] {
    if (started) return;
    disk->ClearWriteFanout();
    if (job) job->target_.reset();
    target.reset();
  });
  job = std::make_shared<MirrorJob>(Private{}, disk, source, std::move(target),
                                    std::move(options), created);
  job->io_ = std::move(io);
  // The fan-out goes in before the dirty set is seeded, so that no write falls between them.
  VDISK_RETURN_IF_ERROR(disk->SetWriteFanout(job));
  VDISK_RETURN_IF_ERROR(job->SeedDirtySet());
  {
    std::lock_guard lock(job->mutex_);
    job->MaybeReadyLocked();
  }
  const std::size_t workers = std::max<std::size_t>(1, job->options_.workers);
  job->workers_.reserve(workers);
  try {
    for (std::size_t i = 0; i < workers; ++i)
      job->workers_.emplace_back([j = job.get()] { j->RunWorker(); });
    job->supervisor_ = std::thread([j = job.get()] { j->Supervise(); });
  } catch (...) {
    // No thread for the rest: the workers that run are stopped before the job goes.
    {
      std::lock_guard lock(job->mutex_);
      job->stop_ = true;
    }
    job->work_.notify_all();
    for (auto& worker : job->workers_) worker.join();
    job->workers_.clear();
    throw;
  }
  started = true;
  created_target.Keep();
  return job;
}

std::uint64_t MirrorJob::ChunkBytes(Chunk chunk) const {
  const std::uint64_t start = chunk * chunk_size_;
  return std::min(chunk_size_, source_->size() - start);
}

Status MirrorJob::SeedDirtySet() {
  Image& top = source_->top();
  Image& target_top = target_->top();
  const bool differencing = top.subtype() == DiskSubtype::kDifferencing;
  const std::uint64_t size = source_->size();
  std::set<Chunk> seeds;
  auto mark = [&](std::uint64_t offset, std::uint64_t length) {
    for (Chunk c = offset / chunk_size_; c * chunk_size_ < offset + length; ++c) seeds.insert(c);
  };
  for (std::uint64_t offset = 0; offset < size;) {
    VDISK_ASSIGN_OR_RETURN(const Extent e, top.Map(offset, size - offset));
    // Data is copied; an explicit zero range of a differencing disk must not fall through to
    // the parent in the target either.
    if (e.kind == Extent::Kind::kData || (differencing && e.kind == Extent::Kind::kZero)) {
      mark(offset, e.length);
    }
    offset += e.length;
  }
  if (options_.existing_file) {
    // Whatever the existing target holds must be overwritten or zeroed.
    for (std::uint64_t offset = 0; offset < size;) {
      VDISK_ASSIGN_OR_RETURN(const Extent e, target_top.Map(offset, size - offset));
      if (e.kind == Extent::Kind::kData) mark(offset, e.length);
      offset += e.length;
    }
  }
  std::lock_guard lock(mutex_);
  for (Chunk c : seeds) {
    if (dirty_.insert(c).second) scheduled_bytes_ += ChunkBytes(c);
  }
  return Status::Ok();
}

void MirrorJob::RunWorker() {
  ReadWindow window;
  const bool differencing_target = target_->top().subtype() == DiskSubtype::kDifferencing;
  for (;;) {
    Chunk chunk = 0;
    bool fresh = false;
    {
      std::unique_lock lock(mutex_);
      auto next = [&] {
        return std::find_if(dirty_.begin(), dirty_.end(), [&](Chunk c) {
          return in_flight_.count(c) == 0 && guest_chunks_.count(c) == 0;
        });
      };
      work_.wait(lock, [&] { return stop_ || next() != dirty_.end(); });
      if (stop_) return;
      auto it = next();
      chunk = *it;
      dirty_.erase(it);
      in_flight_.insert(chunk);
      // The first copy into a target we created writes into zeros; a repeat copy does not.
      fresh = created_target_ && copied_once_.insert(chunk).second;
    }
    // A differencing target reads its parent, not zeros, where it was not written.
    const Status status =
        CatchAsStatus([&] { return CopyChunk(chunk, fresh && !differencing_target, window); });
    {
      std::lock_guard lock(mutex_);
      in_flight_.erase(chunk);
      if (!status.ok()) {
        FailLocked(status);
      } else {
        copied_bytes_ += ChunkBytes(chunk);
        MaybeReadyLocked();
      }
    }
    work_.notify_all();
  }
}

Status MirrorJob::CopyChunk(Chunk chunk, bool zero_skip, ReadWindow& window) {
  Image& top = source_->top();
  Image& target_top = target_->top();
  const bool differencing = top.subtype() == DiskSubtype::kDifferencing;
  const std::uint64_t start = chunk * chunk_size_;
  const std::uint64_t end = start + ChunkBytes(chunk);
  window.pieces.clear();
  for (std::uint64_t offset = start; offset < end;) {
    if (Stopping()) return Status::Ok();
    VDISK_ASSIGN_OR_RETURN(const Extent e, top.Map(offset, end - offset));
    const std::uint64_t extent_end = offset + e.length;
    if (e.kind == Extent::Kind::kData) {
      if (kernel_copy_.load()) {
        VDISK_RETURN_IF_ERROR(CopyInKernel(Piece{offset, e.file_offset, e.length}, zero_skip));
      } else {
        for (std::uint64_t at = offset; at < extent_end; at += kBufferBytes) {
          window.pieces.push_back(Piece{at, e.file_offset + (at - offset),
                                        std::min<std::uint64_t>(kBufferBytes, extent_end - at)});
        }
      }
    } else {
      bool write_zeros = false;
      if (e.kind == Extent::Kind::kZero) {
        if (differencing) {
          // An explicit zero range must not fall through to the parent in the target either.
          write_zeros = true;
        } else if (options_.existing_file) {
          VDISK_ASSIGN_OR_RETURN(const Extent t, target_top.Map(offset, e.length));
          write_zeros = t.kind == Extent::Kind::kData;
        }
      }
      for (std::uint64_t at = offset; write_zeros && at < extent_end;) {
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(Zeros().size(), extent_end - at));
        VDISK_RETURN_IF_ERROR(target_top.Write(at, std::span(Zeros()).first(n)));
        at += n;
      }
    }
    offset = extent_end;
  }
  return CopyThroughMemory(zero_skip, window);
}

Status MirrorJob::CopyInKernel(const Piece& piece, bool zero_skip) {
  Image& target_top = target_->top();
  platform::File& source_file = source_->top().file();
  const std::uint64_t sector = target_top.logical_sector_size();
  const std::uint64_t begin = piece.file_offset;
  const std::uint64_t end = begin + piece.length;
  for (std::uint64_t at = begin; at < end;) {
    if (Stopping()) return Status::Ok();
    platform::FileRange run{at, end};
    if (zero_skip) {
      // Into zeros, the source file's holes need no copying. Runs are widened to whole sectors:
      // file and virtual offsets of an extent differ by a multiple of the sector size.
      VDISK_ASSIGN_OR_RETURN(run, source_file.FindData(at, end));
      run.begin = begin + (run.begin - begin) / sector * sector;
      run.end = std::min(end, begin + (run.end - begin + sector - 1) / sector * sector);
      if (run.begin < at) run.begin = at;
      skipped_zero_bytes_ += run.begin - at;
      if (run.empty()) break;
    }
    VDISK_ASSIGN_OR_RETURN(const platform::CopyMethod method,
                           target_top.WriteFromFile(piece.offset + (run.begin - begin),
                                                    run.end - run.begin, source_file, run.begin));
    if (method == platform::CopyMethod::kKernel) {
      kernel_bytes_ += run.end - run.begin;
    } else {
      // The kernel refused (another filesystem type, an old kernel): the pool from now on.
      buffered_bytes_ += run.end - run.begin;
      kernel_copy_ = false;
    }
    at = run.end;
  }
  return Status::Ok();
}

Status MirrorJob::CopyThroughMemory(bool zero_skip, ReadWindow& window) {
  Image& top = source_->top();
  Image& target_top = target_->top();
  platform::File& source_file = top.file();
  const bool queued = top.data_in_file();
  // A worker's share of the pool, so that every worker keeps reads in flight.
  const std::size_t window_limit =
      std::max<std::size_t>(1, kPoolBuffers / std::max<std::size_t>(1, options_.workers));
  std::size_t next = 0;
  Status failure;
  for (;;) {
    // Keep the window full. The first buffer is waited for; more are taken only if free, so
    // a worker never waits for a buffer while holding one.
    while (failure.ok() && next < window.pieces.size() && window.reads.size() < window_limit) {
      std::optional<std::size_t> buffer = TakeBuffer(/*wait=*/window.reads.empty());
      if (!buffer) break;
      const Piece piece = window.pieces[next++];
      ReadWindow::Read* read = nullptr;
      {
        std::lock_guard lock(window.mutex);
        read = &window.reads.emplace_back(ReadWindow::Read{piece, *buffer});
      }
      const std::span<std::byte> out = Buffer(*buffer, piece.length);
      if (queued) {
        io_->Read(source_file, piece.file_offset, out, [&window, read](const Status& status) {
          // Notified under the lock: once the worker sees the last read done it may return
          // and take the window with it.
          std::lock_guard lock(window.mutex);
          read->status = status;
          read->done = true;
          window.completed.notify_all();
        });
      } else {
        // The bytes are not (only) in the file (a replayed log held in memory): the image reads.
        const Status status = top.ReadData(piece.file_offset, out);
        std::lock_guard lock(window.mutex);
        read->status = status;
        read->done = true;
      }
    }
    ReadWindow::Read read;
    {
      std::unique_lock lock(window.mutex);
      if (window.reads.empty()) break;
      window.completed.wait(lock, [&] { return window.reads.front().done; });
      read = std::move(window.reads.front());
      window.reads.pop_front();
    }
    if (failure.ok() && !read.status.ok()) failure = read.status;
    if (failure.ok() && !Stopping()) {
      const std::span<std::byte> data = Buffer(read.buffer, read.piece.length);
      if (zero_skip) {
        // A fresh target reads as zeros where this chunk was never written, so all-zero runs
        // (never-written parts of allocated blocks) stay unwritten, as cp --sparse=always
        // leaves holes: the target takes no more space than the source.
        std::size_t written = 0;
        ForEachNonZeroRun(data, [&](std::size_t from, std::size_t n) {
          if (failure.ok())
            failure = target_top.Write(read.piece.offset + from, data.subspan(from, n));
          if (failure.ok()) written += n;
        });
        buffered_bytes_ += written;
        skipped_zero_bytes_ += data.size() - written;
      } else {
        failure = target_top.Write(read.piece.offset, data);
        if (failure.ok()) buffered_bytes_ += data.size();
      }
    }
    ReleaseBuffer(read.buffer);
    // After a failure or a stop, only the reads in flight are waited for.
    if (!failure.ok() || Stopping()) next = window.pieces.size();
  }
  return failure;
}

std::optional<std::size_t> MirrorJob::TakeBuffer(bool wait) {
  std::unique_lock lock(mutex_);
  if (wait) work_.wait(lock, [this] { return stop_ || !free_buffers_.empty(); });
  if (stop_ || free_buffers_.empty()) return std::nullopt;
  const std::size_t buffer = free_buffers_.back();
  free_buffers_.pop_back();
  return buffer;
}

void MirrorJob::ReleaseBuffer(std::size_t buffer) {
  {
    std::lock_guard lock(mutex_);
    free_buffers_.push_back(buffer);
  }
  work_.notify_all();
}

std::span<std::byte> MirrorJob::Buffer(std::size_t buffer, std::uint64_t length) const {
  return std::span(pool_ + buffer * kBufferBytes, static_cast<std::size_t>(length));
}

bool MirrorJob::Stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

void MirrorJob::MaybeReadyLocked() {
  if (state_ == MirrorProgress::State::kCopying && !stop_ && dirty_.empty() &&
      in_flight_.empty() && guest_writes_ == 0) {
    state_ = MirrorProgress::State::kReady;
    changed_.notify_all();
  }
}

void MirrorJob::FailLocked(const Status& status) {
  if (stop_) return;
  failure_ = status.WithContext("mirror to " + options_.target_path.string());
  stop_ = true;
  work_.notify_all();
  changed_.notify_all();
}

Status MirrorJob::Write(VirtualDisk& active, std::uint64_t offset,
                        std::span<const std::byte> data) {
  enum class Mode { kSourceOnly, kMarkDirty, kBoth } mode = Mode::kSourceOnly;
  const Chunk first = offset / chunk_size_;
  const Chunk last = data.empty() ? first : (offset + data.size() - 1) / chunk_size_;
  {
    std::lock_guard lock(mutex_);
    if (!stop_ && state_ == MirrorProgress::State::kCopying) {
      ++guest_writes_;
      mode = Mode::kMarkDirty;
      // Dirty (and held back from the workers) before the source changes: a copy under way
      // now is repeated, and progress cannot reach completion while the write is under way.
      for (Chunk c = first; c <= last; ++c) {
        if (dirty_.insert(c).second) scheduled_bytes_ += ChunkBytes(c);
        guest_chunks_.insert(c);
      }
    } else if (!stop_ && state_ == MirrorProgress::State::kReady) {
      mode = Mode::kBoth;
    }
  }
  switch (mode) {
    case Mode::kSourceOnly:
      return active.Write(offset, data);
    case Mode::kMarkDirty: {
      const Status status = active.Write(offset, data);
      {
        std::lock_guard lock(mutex_);
        for (Chunk c = first; c <= last; ++c) {
          guest_chunks_.erase(guest_chunks_.find(c));
          // Still dirty, unless the job stopped meanwhile; marked again all the same.
          if (dirty_.insert(c).second) scheduled_bytes_ += ChunkBytes(c);
        }
        --guest_writes_;
        MaybeReadyLocked();
      }
      work_.notify_all();
      return status;
    }
    case Mode::kBoth: {
      // Writes to the same chunks are serialised so that both sides see them in one order.
      std::vector<std::size_t> stripes;
      for (Chunk c = first; c <= last && stripes.size() < kStripes; ++c) stripes.push_back(c % kStripes);
      std::sort(stripes.begin(), stripes.end());
      stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
      for (std::size_t s : stripes) stripes_[s].lock();
      Status status = active.Write(offset, data);
      if (status.ok()) {
        const Status mirrored = target_->Write(offset, data);
        if (!mirrored.ok()) {
          // The guest's write is safe in the source; the mirror can no longer be exact.
          std::lock_guard lock(mutex_);
          FailLocked(mirrored);
        }
      }
      for (auto it = stripes.rbegin(); it != stripes.rend(); ++it) stripes_[*it].unlock();
      return status;
    }
  }
  return Status(Code::kInternal, "unreachable");
}

MirrorCopyStats MirrorJob::CopyStats() const {
  MirrorCopyStats stats;
  stats.io_backend = io_->backend();
  stats.kernel_copy = kernel_copy_.load();
  stats.kernel_bytes = kernel_bytes_.load();
  stats.buffered_bytes = buffered_bytes_.load();
  stats.skipped_zero_bytes = skipped_zero_bytes_.load();
  return stats;
}

MirrorProgress MirrorJob::Progress() const {
  std::lock_guard lock(mutex_);
  MirrorProgress progress;
  // Between the switch and the end of the job the operation is still under way.
  progress.state = ended_ ? final_state_
                   : state_ == MirrorProgress::State::kBroken ? MirrorProgress::State::kReady
                                                              : state_;
  progress.current = copied_bytes_;
  progress.completion = scheduled_bytes_;
  progress.final_status = final_status_;
  return progress;
}

OperationProgress MirrorJob::Report() const {
  const MirrorProgress p = Progress();
  OperationProgress report;
  report.current = p.current;
  report.completion = p.completion;
  report.finished = p.finished();
  report.final_status = p.final_status;
  return report;
}

Status MirrorJob::Break() {
  {
    std::lock_guard lock(mutex_);
    if (stop_ || state_ != MirrorProgress::State::kReady) {
      return Status(Code::kVhdInvalidState,
                    stop_ ? "the mirror has ended"
                          : "the mirror is not ready: the copy is not complete");
    }
  }
  // With the I/O path drained, make the target durable and switch.
  auto finish_copy = [this]() -> Status {
    std::lock_guard lock(mutex_);
    if (stop_) return Status(Code::kVhdInvalidState, "the mirror has ended");
    VDISK_RETURN_IF_ERROR(target_->Flush());
    VDISK_RETURN_IF_ERROR(source_->Flush());
    // The target was written without flush barriers (nothing of it mattered before the
    // switch); as the active disk it keeps its writes as safely as the source did.
    target_->top().SetWriteHardening(source_->top().write_hardening());
    state_ = MirrorProgress::State::kBroken;
    stop_ = true;
    return Status::Ok();
  };
  const Status status = options_.skip_activation ? disk_->Drained(finish_copy)
                                                 : disk_->Activate(target_, finish_copy);
  if (!status.ok()) return status;
  work_.notify_all();
  changed_.notify_all();
  return Status::Ok();
}

void MirrorJob::Cancel() {
  {
    std::lock_guard lock(mutex_);
    if (!stop_) stop_ = true;
  }
  work_.notify_all();
  changed_.notify_all();
  WaitFinished();
}

void MirrorJob::WaitFinished() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return finished_; });
}

void MirrorJob::Supervise() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return stop_; });
  }
  for (auto& worker : workers_) worker.join();
  MirrorProgress::State state;
  Status status;
  {
    std::lock_guard lock(mutex_);
    state = state_;
    status = failure_;
  }
  if (state == MirrorProgress::State::kBroken) {
    if (options_.skip_activation) {
      disk_->ClearWriteFanout();
      target_.reset();
    }
    source_.reset();  // the old file closes once no request holds it
    Finish(MirrorProgress::State::kBroken, Status::Ok());
    return;
  }
  disk_->ClearWriteFanout();
  target_.reset();
  if (created_target_) (void)platform::RemoveFile(options_.target_path);
  if (status.ok()) {
    Finish(MirrorProgress::State::kCancelled,
           Status(Code::kOperationAborted, "mirror cancelled; the source stays active"));
  } else {
    Finish(MirrorProgress::State::kFailed, status);
  }
}

void MirrorJob::Finish(MirrorProgress::State state, Status status) {
  {
    std::lock_guard lock(mutex_);
    final_state_ = state;
    final_status_ = status;
    ended_ = true;
  }
  if (options_.on_finished) options_.on_finished(status);
  {
    std::lock_guard lock(mutex_);
    finished_ = true;
  }
  changed_.notify_all();
}

}  // namespace vdisk
