#include "mirror/mirror_job.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

namespace vdisk {
namespace {

constexpr std::uint64_t kMinChunk = 1 << 20;
constexpr std::uint64_t kFixedChunk = 2 << 20;

bool AllZero(std::span<const std::byte> data) {
  // Word-wise: this runs over every byte the mirror copies.
  const std::byte* p = data.data();
  std::size_t n = data.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    if (word != 0) return false;
  }
  for (; n > 0; ++p, --n)
    if (*p != std::byte{0}) return false;
  return true;
}

const std::array<std::byte, 1 << 20>& Zeros() {
  static const std::array<std::byte, 1 << 20> zeros{};
  return zeros;
}

Result<std::shared_ptr<VirtualDisk>> OpenOrCreateTarget(const ProviderRegistry& registry,
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
    return std::shared_ptr<VirtualDisk>(std::move(target));
  }
  DiskCreateRequest request;
  request.path = options.target_path;
  request.format = top.format();
  request.options.subtype = top.subtype();
  request.options.virtual_size = top.subtype() == DiskSubtype::kDifferencing ? 0 : source.size();
  request.options.block_size = top.block_size();
  request.options.logical_sector_size = top.logical_sector_size();
  request.options.physical_sector_size = top.physical_sector_size();
  request.options.unique_id = top.unique_id();
  request.options.no_write_hardening = true;  // the target is flushed at the switch
  if (top.subtype() == DiskSubtype::kDifferencing && source.chain().size() > 1) {
    request.parent_path = source.chain()[1]->file().path();
  }
  VDISK_ASSIGN_OR_RETURN(auto target, VirtualDisk::Create(registry, request));
  return std::shared_ptr<VirtualDisk>(std::move(target));
}

}  // namespace

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
  VDISK_ASSIGN_OR_RETURN(auto target, OpenOrCreateTarget(registry, *source, options));
  const bool created = !options.existing_file;
  const auto target_path = options.target_path;
  auto job = std::make_shared<MirrorJob>(Private{}, disk, source, std::move(target),
                                         std::move(options), created);
  auto abandon = [&](const Status& status) -> Status {
    disk->ClearWriteFanout();
    job->target_.reset();
    if (created) (void)platform::RemoveFile(target_path);
    return status;
  };
  // The fan-out goes in before the dirty set is seeded, so that no write falls between them.
  if (Status s = disk->SetWriteFanout(job); !s.ok()) return abandon(s);
  if (Status s = job->SeedDirtySet(); !s.ok()) return abandon(s);
  {
    std::lock_guard lock(job->mutex_);
    job->MaybeReadyLocked();
  }
  const std::size_t workers = std::max<std::size_t>(1, job->options_.workers);
  for (std::size_t i = 0; i < workers; ++i) job->workers_.emplace_back([j = job.get()] { j->RunWorker(); });
  job->supervisor_ = std::thread([j = job.get()] { j->Supervise(); });
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
  std::vector<std::byte> buffer(kBufferBytes);
  for (;;) {
    Chunk chunk = 0;
    bool fresh = false;
    {
      std::unique_lock lock(mutex_);
      auto next = [&] {
        return std::find_if(dirty_.begin(), dirty_.end(),
                            [&](Chunk c) { return in_flight_.count(c) == 0; });
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
    const Status status = CopyChunk(chunk, fresh, buffer);
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

Status MirrorJob::CopyChunk(Chunk chunk, bool fresh, std::vector<std::byte>& buffer) {
  Image& top = source_->top();
  Image& target_top = target_->top();
  const bool differencing = top.subtype() == DiskSubtype::kDifferencing;
  const std::uint64_t start = chunk * chunk_size_;
  const std::uint64_t end = start + ChunkBytes(chunk);
  for (std::uint64_t offset = start; offset < end;) {
    {
      std::lock_guard lock(mutex_);
      if (stop_) return Status::Ok();
    }
    VDISK_ASSIGN_OR_RETURN(const Extent e, top.Map(offset, end - offset));
    const std::uint64_t extent_end = offset + e.length;
    bool write_zeros = false;
    if (e.kind == Extent::Kind::kZero) {
      if (differencing) {
        write_zeros = true;
      } else if (options_.existing_file) {
        VDISK_ASSIGN_OR_RETURN(const Extent t, target_top.Map(offset, e.length));
        write_zeros = t.kind == Extent::Kind::kData;
      }
    }
    for (std::uint64_t at = offset; at < extent_end;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kBufferBytes, extent_end - at));
      if (e.kind == Extent::Kind::kData) {
        auto piece = std::span(buffer).first(n);
        VDISK_RETURN_IF_ERROR(top.ReadData(e.file_offset + (at - offset), piece));
        // A target the job created reads as zeros where this chunk was never written, so
        // all-zero payload (never-written parts of allocated blocks) stays unwritten, as cp
        // --sparse leaves holes: the target takes no more space than the source.
        if (!fresh || !AllZero(piece)) {
          VDISK_RETURN_IF_ERROR(target_top.Write(at, piece));
        }
      } else if (write_zeros) {
        VDISK_RETURN_IF_ERROR(target_top.Write(at, std::span(Zeros()).first(n)));
      }
      at += n;
    }
    offset = extent_end;
  }
  return Status::Ok();
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
  {
    std::lock_guard lock(mutex_);
    if (!stop_ && state_ == MirrorProgress::State::kCopying) {
      ++guest_writes_;
      mode = Mode::kMarkDirty;
    } else if (!stop_ && state_ == MirrorProgress::State::kReady) {
      mode = Mode::kBoth;
    }
  }
  const Chunk first = offset / chunk_size_;
  const Chunk last = data.empty() ? first : (offset + data.size() - 1) / chunk_size_;
  switch (mode) {
    case Mode::kSourceOnly:
      return active.Write(offset, data);
    case Mode::kMarkDirty: {
      // The source first, then the mark: a copy that read the old bytes is repeated.
      const Status status = active.Write(offset, data);
      {
        std::lock_guard lock(mutex_);
        for (Chunk c = first; c <= last; ++c) {
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
