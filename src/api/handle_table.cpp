#include "api/handle_table.h"

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
struct HandleTable::Impl {
  struct Slot {
    std::uint32_t generation = 1;
    std::shared_ptr<KernelObject> object;
  };
  mutable std::mutex mutex;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> free;
  std::size_t live = 0;

  static std::uintptr_t Encode(std::uint32_t index, std::uint32_t generation) {
    return (static_cast<std::uintptr_t>(generation) << 32) |
           (static_cast<std::uintptr_t>(index + 1) << 2);
  }
  Slot* Find(HANDLE handle) {
    const auto value = reinterpret_cast<std::uintptr_t>(handle);
    if ((value & 3) != 0) return nullptr;
    const auto index_plus_one = static_cast<std::uint32_t>((value & 0xFFFFFFFFu) >> 2);
    const auto generation = static_cast<std::uint32_t>(value >> 32);
    if (index_plus_one == 0 || index_plus_one > slots.size()) return nullptr;
    Slot& slot = slots[index_plus_one - 1];
    if (slot.generation != generation || !slot.object) return nullptr;
    return &slot;
  }
};

HANDLE HandleTable::Insert(std::shared_ptr<KernelObject> object) {
  auto& t = impl();
  std::lock_guard lock(t.mutex);
  std::uint32_t index;
  if (!t.free.empty()) {
    index = t.free.back();
    t.free.pop_back();
  } else {
    index = static_cast<std::uint32_t>(t.slots.size());
    t.slots.emplace_back();
  }
  t.slots[index].object = std::move(object);
  ++t.live;
  return reinterpret_cast<HANDLE>(Impl::Encode(index, t.slots[index].generation));
}

std::shared_ptr<KernelObject> HandleTable::Get(HANDLE handle) const {
  auto& t = impl();
  std::lock_guard lock(t.mutex);
  auto* slot = t.Find(handle);
  return slot ? slot->object : nullptr;
}

std::shared_ptr<KernelObject> HandleTable::Remove(HANDLE handle) {
  auto& t = impl();
  std::lock_guard lock(t.mutex);
  auto* slot = t.Find(handle);
  if (slot == nullptr) return nullptr;
  auto object = std::move(slot->object);
  slot->object.reset();
  // Generation 0 never appears, so a wrapped counter cannot revive an old value's slot quickly.
  if (++slot->generation == 0) slot->generation = 1;
  t.free.push_back(static_cast<std::uint32_t>(slot - t.slots.data()));
  --t.live;
  return object;
}

std::size_t HandleTable::size() const {
  auto& t = impl();
  std::lock_guard lock(t.mutex);
  return t.live;
}

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
