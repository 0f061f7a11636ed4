#include "api/handle_table.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "platform/shared_mutex.h"
#ifdef _WIN32
#include "api/win32/disk_pipe.h"
#endif

namespace vdisk::api {

DWORD KernelObject::Read(void*, DWORD, DWORD*, OVERLAPPED*) { return ERROR_INVALID_FUNCTION; }
DWORD KernelObject::Write(const void*, DWORD, DWORD*, OVERLAPPED*) {
  return ERROR_INVALID_FUNCTION;
}
DWORD KernelObject::Seek(LONGLONG, DWORD, ULONGLONG*) { return ERROR_INVALID_FUNCTION; }
DWORD KernelObject::Flush() { return ERROR_INVALID_FUNCTION; }
DWORD KernelObject::Cancel(const OVERLAPPED*) { return ERROR_NOT_FOUND; }
DWORD KernelObject::AssociatePort(std::shared_ptr<KernelObject>, ULONG_PTR) {
  return ERROR_INVALID_PARAMETER;
}
DWORD KernelObject::Wait(DWORD) { return WAIT_FAILED; }

#ifdef _WIN32

HANDLE KernelObject::CreateKernelHandle(DWORD* error, std::function<void()>) {
  HANDLE event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (event == nullptr) *error = GetLastError();
  return event;
}

// Kernel handle value -> entry. The hooks of every ReadFile/WriteFile/CloseHandle in the process
// look here, so a lookup takes the lock shared and only for the find; the count of calls under
// way on an entry lets a close wait for them without holding the lock. Several values map to one
// object after DuplicateHandle; the object counts those not being closed (open_values_).
struct HandleTable::Impl {
  struct Entry {
    std::shared_ptr<KernelObject> object;
    std::atomic<std::uint32_t> users{0};
    std::atomic<bool> closing{false};  // set under `mutex`; read by ~Borrowed without it
  };

  // SRWLOCK-based (platform::SharedMutex); the waits for calls under way use a Win32 condition
  // variable: libstdc++'s std::atomic::wait can miss a notification on mingw-w64 (seen as a
  // CloseHandle that never returned).
  mutable platform::SharedMutex mutex;
  std::unordered_map<HANDLE, std::shared_ptr<Entry>> entries;  // GUARDED_BY(mutex)
  std::atomic<std::size_t> live{0};  // entries.size(), read without the lock
  SRWLOCK idle_lock = SRWLOCK_INIT;
  CONDITION_VARIABLE idle = CONDITION_VARIABLE_INIT;  // some entry's users dropped to 0

  void WaitUnused(Entry& entry) {
    AcquireSRWLockExclusive(&idle_lock);
    while (entry.users.load() != 0) SleepConditionVariableSRW(&idle, &idle_lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&idle_lock);
  }
  void NotifyUnused() {
    // Taking the lock orders this after a waiter's check: it is asleep or will see 0.
    AcquireSRWLockExclusive(&idle_lock);
    ReleaseSRWLockExclusive(&idle_lock);
    WakeAllConditionVariable(&idle);
  }
  // Marks an entry closing; returns whether it was its object's last open value.
  // REQUIRES: `mutex` held exclusively, `entry` not closing.
  static bool MarkClosingLocked(Entry& entry) {
    entry.closing = true;
    return entry.object->open_values_.fetch_sub(1) == 1;
  }
  // Runs the close logic of an object whose last kernel handle was closed behind the table's
  // back.
  void CloseLostEntry(const std::shared_ptr<Entry>& entry) {
    WaitUnused(*entry);
    entry->object->OnHandleLost();
    entry->object->OnClose();
  }
  // Retires a value found closed behind the table's back (the kernel gave it to another object):
  // the close logic if it was the last value, else the object forgets the value; then, unless
  // `replaced` (the map slot already holds a new entry), the value is dropped.
  // REQUIRES: MarkClosingLocked(*entry) returned `last`; runs on a thread of its own.
  void RetireDetached(HANDLE handle, std::shared_ptr<Entry> entry, bool last, bool replaced) {
    win32::RunDetached([this, handle, entry, last, replaced] {
      if (last) {
        CloseLostEntry(entry);
      } else {
        WaitUnused(*entry);
        entry->object->OnValueClosed(handle);
      }
      if (!replaced) HandleTable::Instance().EndClose(handle, entry->object.get());
    });
  }
  // A value found closed behind the table's back, to be retired once the lock is released.
  struct Retired {
    HANDLE value = nullptr;
    std::shared_ptr<Entry> entry;
    bool last = false;
  };
  // Maps `value` to `entry`; a value still mapped and not being closed was closed behind the
  // table's back (NtClose) and the kernel reused it before the DLL noticed: that one is returned,
  // for RetireDetached.
  // REQUIRES: `mutex` held exclusively.
  Retired PlaceLocked(HANDLE value, std::shared_ptr<Entry> entry) {
    Retired retired;
    auto& slot = entries[value];
    if (slot && !slot->closing) retired = {value, slot, MarkClosingLocked(*slot)};
    slot = std::move(entry);
    live.store(entries.size());
    return retired;
  }
};

HANDLE HandleTable::Insert(std::shared_ptr<KernelObject> object) {
  auto& t = impl();
  DWORD error = ERROR_SUCCESS;
  const KernelObject* identity = object.get();
  HANDLE value = object->CreateKernelHandle(
      &error, [identity] { HandleTable::Instance().CloseLost(identity); });
  if (value == nullptr) return nullptr;
  auto entry = std::make_shared<Impl::Entry>();
  entry->object = std::move(object);
  entry->object->open_values_.store(1);
  Impl::Retired retired;
  {
    std::unique_lock lock(t.mutex);
    retired = t.PlaceLocked(value, std::move(entry));
  }
  if (retired.entry) t.RetireDetached(value, retired.entry, retired.last, /*replaced=*/true);
  return value;
}

bool HandleTable::InsertDuplicate(HANDLE source, HANDLE duplicate) {
  auto& t = impl();
  std::shared_ptr<KernelObject> object = Get(source);
  if (!object) return false;
  // The object learns of the value before any call can arrive on it.
  object->OnDuplicated(duplicate);
  auto entry = std::make_shared<Impl::Entry>();
  entry->object = object;
  Impl::Retired retired;
  bool placed = false;
  {
    std::unique_lock lock(t.mutex);
    auto it = t.entries.find(source);
    if (it != t.entries.end() && !it->second->closing && it->second->object == object) {
      object->open_values_.fetch_add(1);
      retired = t.PlaceLocked(duplicate, std::move(entry));
      placed = true;
    }
  }
  if (retired.entry) t.RetireDetached(duplicate, retired.entry, retired.last, /*replaced=*/true);
  if (!placed) object->OnValueClosed(duplicate);  // the source was closed meanwhile
  return placed;
}

HandleTable::Borrowed::~Borrowed() {
  if (slot_ == nullptr) return;
  auto* entry = static_cast<Impl::Entry*>(slot_);
  // Only a close waits for the count to reach 0, and it sets `closing` before it looks.
  if (entry->users.fetch_sub(1) == 1 && entry->closing.load()) {
    HandleTable::Instance().impl().NotifyUnused();
  }
}

HandleTable::Borrowed HandleTable::Borrow(HANDLE handle) const {
  auto& t = impl();
  if (t.live.load(std::memory_order_relaxed) == 0) return Borrowed();
  std::shared_lock lock(t.mutex);
  auto it = t.entries.find(handle);
  if (it == t.entries.end()) return Borrowed();
  const auto& entry = it->second;
  if (entry->closing) {
    return entry->object->IsKernelHandle(handle) ? Borrowed::Closing() : Borrowed();
  }
  entry->users.fetch_add(1);
  return Borrowed(entry.get(), entry->object.get(), entry);
}

std::shared_ptr<KernelObject> HandleTable::Get(HANDLE handle) const {
  auto& t = impl();
  if (t.live.load(std::memory_order_relaxed) == 0) return nullptr;
  std::shared_lock lock(t.mutex);
  auto it = t.entries.find(handle);
  if (it == t.entries.end() || it->second->closing) return nullptr;
  return it->second->object;
}

std::shared_ptr<KernelObject> HandleTable::BeginClose(HANDLE handle, bool* closing, bool* last) {
  auto& t = impl();
  *closing = false;
  *last = false;
  if (t.live.load(std::memory_order_relaxed) == 0) return nullptr;
  {
    // Every CloseHandle in the process comes here: most are not ours, and need no exclusive lock.
    std::shared_lock lock(t.mutex);
    if (t.entries.find(handle) == t.entries.end()) return nullptr;
  }
  std::shared_ptr<Impl::Entry> entry;
  {
    std::unique_lock lock(t.mutex);
    auto it = t.entries.find(handle);
    if (it == t.entries.end()) return nullptr;
    if (it->second->closing) {
      *closing = true;
      return nullptr;
    }
    entry = it->second;
    *last = Impl::MarkClosingLocked(*entry);
  }
  t.WaitUnused(*entry);
  return entry->object;
}

void HandleTable::EndClose(HANDLE handle, const KernelObject* object) {
  auto& t = impl();
  std::unique_lock lock(t.mutex);
  auto it = t.entries.find(handle);
  if (it == t.entries.end() || it->second->object.get() != object) return;
  t.entries.erase(it);
  t.live.store(t.entries.size());
}

void HandleTable::CloseLost(const KernelObject* object) {
  auto& t = impl();
  // Every value of the object is gone (its pipe broke only when the last handle to its client
  // end was closed): those not already being closed are dropped here.
  std::vector<std::pair<HANDLE, std::shared_ptr<Impl::Entry>>> lost;
  bool last = false;
  {
    std::unique_lock lock(t.mutex);
    for (auto& [value, entry] : t.entries) {
      if (entry->object.get() != object || entry->closing) continue;
      last = Impl::MarkClosingLocked(*entry) || last;
      lost.emplace_back(value, entry);
    }
  }
  if (lost.empty()) return;
  for (auto& [value, entry] : lost) t.WaitUnused(*entry);
  if (last) t.CloseLostEntry(lost.front().second);
  for (auto& [value, entry] : lost) EndClose(value, object);
}

void HandleTable::CloseReused(HANDLE handle, const KernelObject* object) {
  auto& t = impl();
  std::shared_ptr<Impl::Entry> entry;
  bool last = false;
  {
    std::unique_lock lock(t.mutex);
    auto it = t.entries.find(handle);
    if (it == t.entries.end() || it->second->object.get() != object || it->second->closing)
      return;
    entry = it->second;
    last = Impl::MarkClosingLocked(*entry);
  }
  t.RetireDetached(handle, entry, last, /*replaced=*/false);
}

std::shared_ptr<KernelObject> HandleTable::Remove(HANDLE handle, bool* last) {
  bool closing = false;
  auto object = BeginClose(handle, &closing, last);
  if (object) EndClose(handle, object.get());
  return object;
}

std::size_t HandleTable::size() const { return impl().live.load(std::memory_order_relaxed); }

#else

// Slot table: value = generation << 32 | (index + 1) << 2. The low two bits are always zero,
// so no value is 0 or INVALID_HANDLE_VALUE.
//
// Lookups take no lock: each slot has one atomic word holding its generation, a live bit and
// the number of callers using its object right now. Borrow counts itself in with a CAS that
// also checks generation and live bit; Remove clears the live bit and bumps the generation in
// one step (no new borrower gets in after it), then waits for the count to drop to zero before
// it takes the object out. Slots live in chunks that are never freed or moved, so a forged
// handle can be checked without touching freed memory.
struct HandleTable::Impl {
  static constexpr std::uint64_t kLive = std::uint64_t{1} << 31;
  static constexpr std::uint64_t kUsersMask = kLive - 1;
  static constexpr std::uint32_t kChunkSlots = 1024;
  static constexpr std::uint32_t kMaxChunks = 4096;  // 4M handles at once

  struct Slot {
    std::atomic<std::uint64_t> state{std::uint64_t{1} << 32};  // generation 1, not live, no users
    KernelObject* raw = nullptr;            // the object's address while live or in use
    std::shared_ptr<KernelObject> object;   // written only with no users and not live
  };
  struct Chunk {
    std::array<Slot, kChunkSlots> slots;
  };

  std::mutex mutex;  // Insert and Remove
  std::array<std::atomic<Chunk*>, kMaxChunks> chunks{};
  std::uint32_t slot_count = 0;      // GUARDED_BY(mutex)
  std::vector<std::uint32_t> free;   // GUARDED_BY(mutex)
  std::atomic<std::size_t> live{0};

  static std::uint32_t Generation(std::uint64_t state) {
    return static_cast<std::uint32_t>(state >> 32);
  }
  static std::uintptr_t Encode(std::uint32_t index, std::uint32_t generation) {
    return (static_cast<std::uintptr_t>(generation) << 32) |
           (static_cast<std::uintptr_t>(index + 1) << 2);
  }
  // The slot a handle value names and the generation it claims; nullptr for values that can
  // never have been ours.
  Slot* Decode(HANDLE handle, std::uint32_t* generation) const {
    const auto value = reinterpret_cast<std::uintptr_t>(handle);
    if ((value & 3) != 0) return nullptr;
    const auto index_plus_one = static_cast<std::uint32_t>((value & 0xFFFFFFFFu) >> 2);
    if (index_plus_one == 0) return nullptr;
    const std::uint32_t index = index_plus_one - 1;
    if (index / kChunkSlots >= kMaxChunks) return nullptr;
    Chunk* chunk = chunks[index / kChunkSlots].load(std::memory_order_acquire);
    if (chunk == nullptr) return nullptr;
    *generation = static_cast<std::uint32_t>(value >> 32);
    return &chunk->slots[index % kChunkSlots];
  }
  Slot& At(std::uint32_t index) const {
    return chunks[index / kChunkSlots].load(std::memory_order_relaxed)->slots[index % kChunkSlots];
  }
};

HandleTable::Borrowed::~Borrowed() {
  if (slot_ == nullptr) return;
  auto* slot = static_cast<Impl::Slot*>(slot_);
  const std::uint64_t after = slot->state.fetch_sub(1, std::memory_order_acq_rel) - 1;
  // The last user of an object whose handle is being closed lets Remove go on.
  if ((after & (Impl::kLive | Impl::kUsersMask)) == 0) slot->state.notify_all();
}

HandleTable::Borrowed HandleTable::Borrow(HANDLE handle) const {
  auto& t = impl();
  std::uint32_t generation = 0;
  Impl::Slot* slot = t.Decode(handle, &generation);
  if (slot == nullptr) return Borrowed();
  std::uint64_t state = slot->state.load(std::memory_order_acquire);
  for (;;) {
    if (Impl::Generation(state) != generation || (state & Impl::kLive) == 0) return Borrowed();
    if ((state & Impl::kUsersMask) == Impl::kUsersMask) return Borrowed();  // 2^31 users
    if (slot->state.compare_exchange_weak(state, state + 1, std::memory_order_acquire)) break;
  }
  return Borrowed(slot, slot->raw);
}

HANDLE HandleTable::Insert(std::shared_ptr<KernelObject> object) {
  auto& t = impl();
  object->open_values_.fetch_add(1);
  std::lock_guard lock(t.mutex);
  std::uint32_t index;
  if (!t.free.empty()) {
    index = t.free.back();
    t.free.pop_back();
  } else {
    if (t.slot_count == Impl::kChunkSlots * Impl::kMaxChunks) {
      object->open_values_.fetch_sub(1);
      return nullptr;
    }
    index = t.slot_count;
    if (index % Impl::kChunkSlots == 0) {
      t.chunks[index / Impl::kChunkSlots].store(new Impl::Chunk, std::memory_order_release);
    }
    ++t.slot_count;
  }
  Impl::Slot& slot = t.At(index);
  slot.raw = object.get();
  slot.object = std::move(object);
  const std::uint32_t generation = Impl::Generation(slot.state.load(std::memory_order_relaxed));
  slot.state.store((std::uint64_t{generation} << 32) | Impl::kLive, std::memory_order_release);
  t.live.fetch_add(1, std::memory_order_relaxed);
  return reinterpret_cast<HANDLE>(Impl::Encode(index, generation));
}

std::shared_ptr<KernelObject> HandleTable::Get(HANDLE handle) const {
  const Borrowed borrowed = Borrow(handle);
  if (!borrowed) return nullptr;
  // While borrowed, the slot's shared_ptr cannot change (Remove waits for its users).
  return static_cast<Impl::Slot*>(borrowed.slot_)->object;
}

HANDLE HandleTable::InsertDuplicate(HANDLE source) {
  // The borrow keeps a Remove of `source` from counting the object's values down until the new
  // value is counted in, so the object cannot be closed under the duplicate.
  const Borrowed borrowed = Borrow(source);
  if (!borrowed) return nullptr;
  return Insert(static_cast<Impl::Slot*>(borrowed.slot_)->object);
}

std::shared_ptr<KernelObject> HandleTable::Remove(HANDLE handle, bool* last) {
  auto& t = impl();
  std::uint32_t generation = 0;
  Impl::Slot* slot = t.Decode(handle, &generation);
  *last = false;
  if (slot == nullptr) return nullptr;
  std::uint64_t state = slot->state.load(std::memory_order_acquire);
  std::uint64_t closed = 0;
  for (;;) {
    if (Impl::Generation(state) != generation || (state & Impl::kLive) == 0) return nullptr;
    // Generation 0 never appears, so a wrapped counter cannot revive an old value's slot quickly.
    std::uint32_t next = generation + 1;
    if (next == 0) next = 1;
    closed = (std::uint64_t{next} << 32) | (state & Impl::kUsersMask);
    if (slot->state.compare_exchange_weak(state, closed, std::memory_order_acq_rel)) break;
  }
  // Only this call got past the exchange; callers still inside the object finish first.
  for (std::uint64_t now = closed; (now & Impl::kUsersMask) != 0;
       now = slot->state.load(std::memory_order_acquire)) {
    slot->state.wait(now, std::memory_order_acquire);
  }
  std::shared_ptr<KernelObject> object = std::move(slot->object);
  slot->object.reset();
  slot->raw = nullptr;
  std::lock_guard lock(t.mutex);
  t.free.push_back(static_cast<std::uint32_t>(
      (reinterpret_cast<std::uintptr_t>(handle) & 0xFFFFFFFFu) / 4 - 1));
  t.live.fetch_sub(1, std::memory_order_relaxed);
  *last = object->open_values_.fetch_sub(1) == 1;
  return object;
}

std::size_t HandleTable::size() const { return impl().live.load(std::memory_order_relaxed); }

#endif

HandleTable& HandleTable::Instance() {
  static auto* table = new HandleTable;  // never destroyed: handles may be closed at exit
  return *table;
}

HandleTable::Impl& HandleTable::impl() const {
  static auto* impl = new Impl;
  return *impl;
}

}  // namespace vdisk::api
