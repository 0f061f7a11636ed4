#include "api/handle_table.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

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

// Each handle is an event object of the DLL's own, so that it is a genuine kernel handle.
struct HandleTable::Impl {
  mutable std::mutex mutex;
  std::unordered_map<HANDLE, std::shared_ptr<KernelObject>> objects;
};

HANDLE HandleTable::Insert(std::shared_ptr<KernelObject> object) {
  HANDLE token = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (token == nullptr) return nullptr;
  std::lock_guard lock(impl().mutex);
  impl().objects[token] = std::move(object);
  return token;
}

HandleTable::Borrowed::~Borrowed() = default;

HandleTable::Borrowed HandleTable::Borrow(HANDLE handle) const {
  auto object = Get(handle);
  if (!object) return Borrowed();
  return Borrowed(std::move(object));
}

std::shared_ptr<KernelObject> HandleTable::Get(HANDLE handle) const {
  std::lock_guard lock(impl().mutex);
  auto it = impl().objects.find(handle);
  return it == impl().objects.end() ? nullptr : it->second;
}

std::shared_ptr<KernelObject> HandleTable::Remove(HANDLE handle) {
  std::lock_guard lock(impl().mutex);
  auto it = impl().objects.find(handle);
  if (it == impl().objects.end()) return nullptr;
  auto object = std::move(it->second);
  impl().objects.erase(it);
  return object;
}

std::size_t HandleTable::size() const {
  std::lock_guard lock(impl().mutex);
  return impl().objects.size();
}

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
  std::lock_guard lock(t.mutex);
  std::uint32_t index;
  if (!t.free.empty()) {
    index = t.free.back();
    t.free.pop_back();
  } else {
    if (t.slot_count == Impl::kChunkSlots * Impl::kMaxChunks) return nullptr;
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

std::shared_ptr<KernelObject> HandleTable::Remove(HANDLE handle) {
  auto& t = impl();
  std::uint32_t generation = 0;
  Impl::Slot* slot = t.Decode(handle, &generation);
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
