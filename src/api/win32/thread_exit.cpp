#include "api/win32/thread_exit.h"

#include <windows.h>

#include <utility>
#include <vector>

#include "api/trace.h"

namespace vdisk::api::win32 {
namespace {

struct ExitWork {
  std::function<void()> work;
  std::weak_ptr<const void> token;
};
using ExitList = std::vector<ExitWork>;

// ntdll's answer to "is the process exiting?": FLS callbacks also run for the thread that calls
// ExitProcess, when every other thread (a mirror's workers among them) is already gone.
bool ProcessExiting() {
  using Query = BOOLEAN(WINAPI*)();
  static const auto query = reinterpret_cast<Query>(reinterpret_cast<void*>(
      GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "RtlDllShutdownInProgress")));
  return query != nullptr && query() != FALSE;
}

void WINAPI RunExitList(void* data) {
  std::unique_ptr<ExitList> list(static_cast<ExitList*>(data));
  if (list == nullptr || ProcessExiting()) return;
  for (auto& entry : *list) {
    if (entry.token.expired()) continue;
    try {
      entry.work();
    } catch (...) {
      TraceLine("work at a thread's exit ended with an exception");
    }
  }
}

DWORD Slot() {
  static const DWORD slot = FlsAlloc(&RunExitList);
  return slot;
}

}  // namespace

void AtThreadExit(std::function<void()> work, std::weak_ptr<const void> token) {
  const DWORD slot = Slot();
  if (slot == FLS_OUT_OF_INDEXES) {
    TraceLine("no fiber-local storage slot: operations outlive their issuing thread");
    return;
  }
  auto* list = static_cast<ExitList*>(FlsGetValue(slot));
  if (list == nullptr) {
    auto fresh = std::make_unique<ExitList>();
    if (!FlsSetValue(slot, fresh.get())) return;
    list = fresh.release();  // the FLS callback owns it
  }
  std::erase_if(*list, [](const ExitWork& entry) { return entry.token.expired(); });
  list->push_back(ExitWork{std::move(work), std::move(token)});
}

}  // namespace vdisk::api::win32
