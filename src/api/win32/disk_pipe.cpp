#include "api/win32/disk_pipe.h"

#include <atomic>
#include <cwchar>
#include <string>
#include <string_view>
#include <unordered_map>

#include "api/trace.h"
#include "api/win32/kernel32_hooks.h"

namespace vdisk::api::win32 {
namespace {

constexpr ULONG_PTR kStatusPending = 0x103;
constexpr int kCreateAttempts = 8;
// Bound on how long a close waits for raw-I/O echoes to be read off the pipe (the watch thread
// takes each within microseconds; this only keeps a wedged process from hanging in CloseHandle).
constexpr int kEchoDrainMilliseconds = 5000;

// OVERLAPPED.hEvent with the low bit set: the kernel sets the event but queues no packet to a
// completion port bound to the handle.
HANDLE WithoutPacket(HANDLE event) {
  return reinterpret_cast<HANDLE>(reinterpret_cast<ULONG_PTR>(event) | 1);
}

constexpr wchar_t kPipePrefix[] = L"\\\\.\\pipe";

// "\\virtdisk-<pid>-<counter>-<time>": unique in the process, hard to guess for squatters.
std::wstring NewPipeName() {
  static std::atomic<unsigned> counter{0};
  LARGE_INTEGER now{};
  QueryPerformanceCounter(&now);
  wchar_t name[128];
  std::swprintf(name, 128, L"\\virtdisk-%lu-%u-%llx", GetCurrentProcessId(), counter.fetch_add(1),
                static_cast<unsigned long long>(now.QuadPart));
  return name;
}

DWORD WINAPI RunWork(void* parameter) {
  std::unique_ptr<std::function<void()>> work(static_cast<std::function<void()>*>(parameter));
  try {
    (*work)();
  } catch (...) {
    TraceLine("a helper thread of the handle layer ended with an exception");
  }
  return 0;
}

}  // namespace

void RunDetached(std::function<void()> work) {
  auto owned = std::make_unique<std::function<void()>>(std::move(work));
  HANDLE thread = CreateThread(nullptr, 0, &RunWork, owned.get(), 0, nullptr);
  if (thread == nullptr) {
    (*owned)();  // no thread to be had: do it here rather than not at all
    return;
  }
  owned.release();  // RunWork owns it now
  Original().CloseHandle(thread);
}

// One thread for all pipes: an overlapped read pends on every server end, completions arrive on
// a private I/O completion port whose key is the DiskPipe.
class PipeWatcher {
 public:
  static PipeWatcher& Instance() {
    static auto* watcher = new PipeWatcher;  // never destroyed: its thread runs until exit
    return *watcher;
  }

  DWORD Watch(const std::shared_ptr<DiskPipe>& pipe) {
    std::lock_guard lock(mutex_);
    if (port_ == nullptr) {
      port_ = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
      if (port_ == nullptr) return GetLastError();
      RunDetached([this] { Run(); });
    }
    const auto key = reinterpret_cast<ULONG_PTR>(pipe.get());
    if (CreateIoCompletionPort(pipe->server_, port_, key, 0) == nullptr) return GetLastError();
    pipes_[pipe.get()] = pipe;
    // The first read is issued by the watch thread itself: a thread's pending I/O is cancelled
    // when it exits, and the opening thread may exit any time.
    if (!PostQueuedCompletionStatus(port_, 0, key, nullptr)) {
      pipes_.erase(pipe.get());
      return GetLastError();
    }
    return ERROR_SUCCESS;
  }

 private:
  // Echoes are read into this and dropped; all pending reads may share it.
  static constexpr DWORD kDiscardBytes = 1 << 20;

  bool IssueRead(DiskPipe& pipe) {
    pipe.watch_read_ = OVERLAPPED{};
    if (Original().ReadFile(pipe.server_, discard_.get(), kDiscardBytes, nullptr,
                            &pipe.watch_read_))
      return true;  // the packet follows
    const DWORD error = GetLastError();
    // A synchronous failure queues no packet; ERROR_MORE_DATA is a warning and queues one.
    return error == ERROR_IO_PENDING || error == ERROR_MORE_DATA;
  }

  void Lost(DiskPipe* pipe) {
    pipe->OnBroken();
    std::shared_ptr<DiskPipe> last;
    {
      std::lock_guard lock(mutex_);
      auto it = pipes_.find(pipe);
      if (it == pipes_.end()) return;
      last = std::move(it->second);
      pipes_.erase(it);
    }
    // `last` may be the final reference: the server end closes here.
  }

  void Run() {
    for (;;) {
      DWORD bytes = 0;
      ULONG_PTR key = 0;
      OVERLAPPED* overlapped = nullptr;
      const BOOL ok = GetQueuedCompletionStatus(port_, &bytes, &key, &overlapped, INFINITE);
      const DWORD error = ok ? ERROR_SUCCESS : GetLastError();
      if (overlapped == nullptr && !ok) continue;
      auto* pipe = reinterpret_cast<DiskPipe*>(key);
      if (overlapped != nullptr && overlapped != &pipe->watch_read_) continue;
      // Data (an echo, or part of one), or a read cancelled by something else: read on.
      if (overlapped == nullptr || ok || error == ERROR_MORE_DATA ||
          error == ERROR_OPERATION_ABORTED) {
        if (IssueRead(*pipe)) continue;
      }
      // ERROR_BROKEN_PIPE: the last handle to the client end is closed.
      Lost(pipe);
    }
  }

  std::mutex mutex_;
  HANDLE port_ = nullptr;  // GUARDED_BY(mutex_) until the thread starts
  std::unordered_map<DiskPipe*, std::shared_ptr<DiskPipe>> pipes_;  // GUARDED_BY(mutex_)
  std::unique_ptr<char[]> discard_ = std::make_unique<char[]>(kDiscardBytes);
};

std::shared_ptr<DiskPipe> DiskPipe::Create(DWORD* error) {
  EnsureKernel32Hooks();
  HANDLE server = INVALID_HANDLE_VALUE;
  HANDLE client = INVALID_HANDLE_VALUE;
  *error = ERROR_SUCCESS;
  std::wstring name;
  for (int attempt = 0; attempt < kCreateAttempts && client == INVALID_HANDLE_VALUE; ++attempt) {
    name = NewPipeName();
    const std::wstring path = kPipePrefix + name;
    // One instance, first instance only, local clients only, no buffer: a squatter that took
    // the name makes this attempt fail, never receives our handle.
    server = CreateNamedPipeW(
        path.c_str(), PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
        PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_REJECT_REMOTE_CLIENTS, 1, 0, 0, 0,
        nullptr);
    if (server == INVALID_HANDLE_VALUE) {
      *error = GetLastError();
      continue;
    }
    client = CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                         FILE_FLAG_OVERLAPPED, nullptr);
    if (client == INVALID_HANDLE_VALUE) {
      *error = GetLastError();
      Original().CloseHandle(server);
      server = INVALID_HANDLE_VALUE;
    }
  }
  if (client == INVALID_HANDLE_VALUE) return nullptr;
  HANDLE write_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  HANDLE probe_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (write_event == nullptr || probe_event == nullptr) {
    *error = GetLastError();
    if (write_event) Original().CloseHandle(write_event);
    if (probe_event) Original().CloseHandle(probe_event);
    Original().CloseHandle(client);
    Original().CloseHandle(server);
    return nullptr;
  }
  std::shared_ptr<DiskPipe> pipe(
      new DiskPipe(std::move(name), server, client, write_event, probe_event));
  *error = PipeWatcher::Instance().Watch(pipe);
  if (*error != ERROR_SUCCESS) {
    Original().CloseHandle(client);
    return nullptr;
  }
  return pipe;
}

DiskPipe::DiskPipe(std::wstring name, HANDLE server, HANDLE client, HANDLE write_event,
                   HANDLE probe_event)
    : name_(std::move(name)),
      server_(server),
      client_(client),
      write_event_(write_event),
      probe_event_(probe_event),
      clients_{client} {}

void DiskPipe::AddClientHandle(HANDLE handle) {
  std::unique_lock lock(clients_mutex_);
  clients_.push_back(handle);
}

void DiskPipe::RemoveClientHandle(HANDLE handle) {
  std::unique_lock lock(clients_mutex_);
  std::erase(clients_, handle);
}

bool DiskPipe::IsClientEnd(HANDLE handle) const {
  ULONG flags = 0;
  if (!GetNamedPipeInfo(handle, &flags, nullptr, nullptr, nullptr) || (flags & PIPE_SERVER_END))
    return false;
  alignas(FILE_NAME_INFO) char buffer[sizeof(FILE_NAME_INFO) + 128 * sizeof(wchar_t)];
  auto* info = reinterpret_cast<FILE_NAME_INFO*>(buffer);
  if (!GetFileInformationByHandleEx(handle, FileNameInfo, info, sizeof buffer)) return false;
  return std::wstring_view(info->FileName, info->FileNameLength / sizeof(wchar_t)) == name_;
}

DiskPipe::~DiskPipe() {
  Original().CloseHandle(server_);
  Original().CloseHandle(write_event_);
  Original().CloseHandle(probe_event_);
}

DiskPipe::Operation* DiskPipe::FindLocked(const OVERLAPPED* overlapped, bool ended) {
  for (auto it = operations_.rbegin(); it != operations_.rend(); ++it) {
    if (it->overlapped == overlapped && it->ended == ended) return &*it;
  }
  return nullptr;
}

void DiskPipe::PrepareOperation(OVERLAPPED* overlapped) {
  std::lock_guard lock(mutex_);
  // Ended operations are kept for FailedOperationError until their OVERLAPPED is used again.
  std::erase_if(operations_, [&](const Operation& op) {
    return op.ended && (op.overlapped == overlapped || operations_.size() > 16);
  });
  Operation op;
  op.overlapped = overlapped;
  op.thread = GetCurrentThreadId();
  operations_.push_back(op);
}

void DiskPipe::AbandonOperation(OVERLAPPED* overlapped) {
  std::lock_guard lock(mutex_);
  for (auto it = operations_.begin(); it != operations_.end(); ++it) {
    if (it->overlapped == overlapped && !it->issued) {
      operations_.erase(it);
      return;
    }
  }
}

void DiskPipe::DrainStaleMessagesLocked(HANDLE client) {
  // A completion message whose read was cancelled behind the hooks' back (NtCancelIoFile, the
  // issuing thread's exit) is still queued and would complete the next read at once. Take such
  // messages off with a probe read that queues no packet, and withdraw the probe when nothing is
  // there.
  for (;;) {
    char scratch = 0;
    OVERLAPPED probe{};
    ResetEvent(probe_event_);
    probe.hEvent = WithoutPacket(probe_event_);
    if (Original().ReadFile(client, &scratch, 1, nullptr, &probe)) continue;
    const DWORD error = GetLastError();
    if (error == ERROR_MORE_DATA) continue;
    if (error != ERROR_IO_PENDING) return;
    Original().CancelIoEx(client, &probe);
    WaitForSingleObject(probe_event_, INFINITE);
    if (probe.Internal != 0) return;  // cancelled: the pipe is empty
  }
}

DWORD DiskPipe::LaunchOperation(OVERLAPPED* overlapped) {
  std::lock_guard lock(mutex_);
  Operation* op = nullptr;
  for (auto& candidate : operations_) {
    if (candidate.overlapped == overlapped && !candidate.issued) op = &candidate;
  }
  if (op == nullptr) return ERROR_INVALID_PARAMETER;
  const DWORD error = WithClient([&](HANDLE client) {
    DrainStaleMessagesLocked(client);
    return Original().ReadFile(client, sink_, sizeof sink_, nullptr, overlapped)
               ? DWORD{ERROR_SUCCESS}
               : GetLastError();
  });
  if (error == ERROR_SUCCESS) {
    // Only a message nobody should have sent completes it at once; it stays complete.
    TraceLine("MirrorVirtualDisk: the operation's read completed at once (stray message)");
  } else if (error != ERROR_IO_PENDING) {
    std::erase_if(operations_, [&](const Operation& o) { return &o == op; });
    return error;
  }
  op->issued = true;
  op->thread = GetCurrentThreadId();
  // The work may have ended before the read existed (a quick failure, or a cancel that came in
  // between): complete it now.
  if (op->ended && !op->kernel_done) FinishInKernelLocked(*op);
  return ERROR_IO_PENDING;
}

void DiskPipe::SendCompletionLocked() {
  if (write_.Internal == kStatusPending) {
    // A message nobody read yet: withdraw it, so that it cannot complete a later read.
    Original().CancelIoEx(server_, &write_);
    WaitForSingleObject(write_event_, INFINITE);
  }
  ResetEvent(write_event_);
  write_ = OVERLAPPED{};
  write_.hEvent = WithoutPacket(write_event_);
  static const char kNothing = 0;
  if (!Original().WriteFile(server_, &kNothing, 0, nullptr, &write_) &&
      GetLastError() != ERROR_IO_PENDING) {
    TraceLine("MirrorVirtualDisk: completion message not sent, error " +
              std::to_string(GetLastError()));
  }
}

void DiskPipe::FinishInKernelLocked(Operation& op) {
  op.kernel_done = true;
  if (op.error == ERROR_SUCCESS) {
    SendCompletionLocked();
  } else {
    // The only other ending a pipe read has: cancellation. FailedOperationError keeps the
    // exact error for the hooked GetOverlappedResult.
    WithClient([&](HANDLE client) { return Original().CancelIoEx(client, op.overlapped); });
  }
}

void DiskPipe::CompleteOperation(OVERLAPPED* overlapped, DWORD error) {
  std::lock_guard lock(mutex_);
  Operation* op = FindLocked(overlapped, false);
  if (op == nullptr) return;
  op->ended = true;
  op->error = error;
  if (!op->issued || op->kernel_done) return;
  if (broken_) {
    // The handle is gone: the kernel already ended the read (STATUS_PIPE_BROKEN), and its
    // value may name another object by now.
    op->kernel_done = true;
    return;
  }
  FinishInKernelLocked(*op);
}

std::vector<OVERLAPPED*> DiskPipe::TakeForCancel(const OVERLAPPED* overlapped,
                                                 bool this_thread_only) {
  std::vector<OVERLAPPED*> hit;
  std::lock_guard lock(mutex_);
  const DWORD thread = GetCurrentThreadId();
  for (auto& op : operations_) {
    if (op.ended || op.kernel_done) continue;
    if (overlapped != nullptr && op.overlapped != overlapped) continue;
    if (this_thread_only && op.thread != thread) continue;
    // An operation whose read is not issued yet is completed by LaunchOperation once the
    // cancelled work has ended.
    if (op.issued) op.kernel_done = true;
    hit.push_back(op.overlapped);
  }
  return hit;
}

void DiskPipe::CancelOperationRead(OVERLAPPED* overlapped) {
  std::lock_guard lock(mutex_);
  if (broken_) return;
  WithClient([&](HANDLE client) { return Original().CancelIoEx(client, overlapped); });
}

DWORD DiskPipe::FailedOperationError(const OVERLAPPED* overlapped) const {
  std::lock_guard lock(mutex_);
  for (auto it = operations_.rbegin(); it != operations_.rend(); ++it) {
    if (it->overlapped != overlapped) continue;
    if (!it->ended || it->error == ERROR_SUCCESS || it->error == ERROR_OPERATION_ABORTED) return 0;
    return it->error;
  }
  return 0;
}

DWORD DiskPipe::EchoCompletion(const void* buffer, DWORD length, DWORD* done,
                               OVERLAPPED* overlapped) {
  static const char kEmpty = 0;
  DWORD echoed = 0;
  return WithClient([&](HANDLE client) {
    if (Original().WriteFile(client, buffer != nullptr ? buffer : &kEmpty, length, &echoed,
                             overlapped)) {
      *done = echoed;
      return DWORD{ERROR_SUCCESS};
    }
    return GetLastError();
  });
}

void DiskPipe::MarkLost() {
  std::lock_guard lock(mutex_);
  broken_ = true;
  closing_ = true;
  lost_ = nullptr;
}

void DiskPipe::PrepareForClose() {
  {
    std::lock_guard lock(mutex_);
    if (broken_) return;
  }
  // Raw-I/O completions under way are messages the watch thread has not read yet; closing now
  // would fail them with ERROR_BROKEN_PIPE although their I/O was done.
  for (int waited = 0; waited < kEchoDrainMilliseconds; ++waited) {
    DWORD available = 0;
    if (!PeekNamedPipe(server_, nullptr, 0, nullptr, &available, nullptr) || available == 0) break;
    Sleep(1);
  }
  std::lock_guard lock(mutex_);
  closing_ = true;
  for (auto& op : operations_) {
    if (!op.issued || op.kernel_done || broken_) continue;
    // STATUS_CANCELLED, as Windows reports for a request that a close cancels (a bare close
    // would end it with STATUS_PIPE_BROKEN).
    op.kernel_done = true;
    WithClient([&](HANDLE client) { return Original().CancelIoEx(client, op.overlapped); });
  }
}

void DiskPipe::SetLostHandler(std::function<void()> handler) {
  std::lock_guard lock(mutex_);
  lost_ = std::move(handler);
}

void DiskPipe::OnBroken() {
  std::function<void()> lost;
  {
    std::lock_guard lock(mutex_);
    broken_ = true;
    if (!closing_) lost = std::move(lost_);
    lost_ = nullptr;
  }
  // The close logic may wait for a mirror to stop: never on the watch thread.
  if (lost) RunDetached(std::move(lost));
}

}  // namespace vdisk::api::win32
