#include "api/win32/function_hooks.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cwchar>
#include <mutex>
#include <vector>

namespace vdisk::api::win32 {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
constexpr bool kInlineHooks = true;
#else
// x86 (the 32-bit DLL) hooks by the table method only. Its hot-patch form (`mov edi,edi`
// swapped for a short jump back into the 5 bytes of padding before the function, rewritten as
// a `jmp rel32` to the hook) is not done: 32-bit programs cannot run where this project is
// tested, and the table method is the one whose x64 form the tests also run (api.hooks.tables),
// with only its stub encoded differently here.
constexpr bool kInlineHooks = false;
#endif

// `lea rsp,[rsp+0]`: the hot-patch no-op that opens every function of Wine's x64 PE modules.
constexpr std::uint8_t kHotPatchNop[8] = {0x48, 0x8d, 0xa4, 0x24, 0x00, 0x00, 0x00, 0x00};
// x64: `jmp [rip+0]` (6 bytes) + absolute address (8) + pad; x86: `jmp rel32` (5) + pad.
constexpr std::size_t kStubBytes = 16;
constexpr std::size_t kStubPageBytes = 4096;
constexpr std::uintptr_t kAllocationGranularity = 0x10000;
constexpr std::uintptr_t kReach = 0x7FF00000;  // what rel32 and an RVA can span, with margin

struct ModuleRange {
  std::uintptr_t base = 0;
  std::uintptr_t end = 0;
};

ModuleRange RangeOf(HMODULE module) {
  const auto base = reinterpret_cast<std::uintptr_t>(module);
  const auto* dos = reinterpret_cast<const IMAGE_DOS_HEADER*>(base);
  const auto* nt = reinterpret_cast<const IMAGE_NT_HEADERS*>(base + dos->e_lfanew);
  return {base, base + nt->OptionalHeader.SizeOfImage};
}

// Pages of jump stubs, each above one module's image (so that both a rel32 jump from the
// module's code and an export-table RVA reach it).
class StubPages {
 public:
  // A stub that jumps to `target`, placed above `module`; nullptr if no page could be had.
  void* Make(HMODULE module, void* target) {
    const ModuleRange range = RangeOf(module);
    Page* page = nullptr;
    for (auto& p : pages_) {
      if (p.module_base == range.base && p.used + kStubBytes <= kStubPageBytes) page = &p;
    }
    if (page == nullptr) {
      auto* memory = AllocateAbove(range);
      if (memory == nullptr) return nullptr;
      pages_.push_back(Page{range.base, memory, 0});
      page = &pages_.back();
    }
    std::uint8_t* stub = page->memory + page->used;
    page->used += kStubBytes;
    DWORD old = 0;
    VirtualProtect(page->memory, kStubPageBytes, PAGE_EXECUTE_READWRITE, &old);
    if constexpr (sizeof(void*) == 8) {
      const std::uint8_t jump[6] = {0xFF, 0x25, 0, 0, 0, 0};  // jmp qword ptr [rip+0]
      std::memcpy(stub, jump, sizeof jump);
      std::memcpy(stub + sizeof jump, &target, sizeof target);
    } else {
      // jmp rel32: in a 32-bit address space every target is in reach (the sum wraps).
      const auto rel32 = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(target) -
                                                    reinterpret_cast<std::uintptr_t>(stub + 5));
      stub[0] = 0xE9;
      std::memcpy(stub + 1, &rel32, sizeof rel32);
    }
    VirtualProtect(page->memory, kStubPageBytes, PAGE_EXECUTE_READ, &old);
    FlushInstructionCache(GetCurrentProcess(), stub, kStubBytes);
    return stub;
  }

 private:
  struct Page {
    std::uintptr_t module_base;
    std::uint8_t* memory;
    std::size_t used;
  };

  static std::uint8_t* AllocateAbove(const ModuleRange& range) {
    std::uintptr_t at = (range.end + kAllocationGranularity - 1) & ~(kAllocationGranularity - 1);
    for (; at - range.base < kReach; at += kAllocationGranularity) {
      void* memory = VirtualAlloc(reinterpret_cast<void*>(at), kStubPageBytes,
                                  MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE);
      if (memory != nullptr) return static_cast<std::uint8_t*>(memory);
    }
    return nullptr;
  }

  std::vector<Page> pages_;
};

HMODULE ModuleOf(const void* address) {
  HMODULE module = nullptr;
  GetModuleHandleExW(
      GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
      static_cast<LPCWSTR>(address), &module);
  return module;
}

// Replaces the hot-patch no-op at `entry` with a jump to `replacement`; false if the entry does
// not have it or no stub is in reach.
bool PatchInline(void* entry, void* replacement, StubPages& stubs) {
  if (!kInlineHooks) return false;
  auto* code = static_cast<std::uint8_t*>(entry);
  if (code == nullptr || (reinterpret_cast<std::uintptr_t>(code) & 7) != 0) return false;
  if (std::memcmp(code, kHotPatchNop, sizeof kHotPatchNop) != 0) return false;
  HMODULE module = ModuleOf(code);
  if (module == nullptr) return false;
  auto* stub = static_cast<std::uint8_t*>(stubs.Make(module, replacement));
  if (stub == nullptr) return false;
  const std::int64_t distance = stub - (code + 5);
  if (distance != static_cast<std::int32_t>(distance)) return false;
  std::uint8_t patch[8] = {0xE9, 0, 0, 0, 0, 0x0F, 0x1F, 0x00};  // jmp rel32; nop dword [rax]
  const auto rel32 = static_cast<std::int32_t>(distance);
  std::memcpy(patch + 1, &rel32, sizeof rel32);
  LONG64 value = 0;
  std::memcpy(&value, patch, sizeof value);
  DWORD old = 0;
  if (!VirtualProtect(code, sizeof patch, PAGE_EXECUTE_READWRITE, &old)) return false;
  // One aligned 8-byte store: a thread entering the function sees the old no-op or the jump.
  InterlockedExchange64(reinterpret_cast<volatile LONG64*>(code), value);
  VirtualProtect(code, sizeof patch, old, &old);
  FlushInstructionCache(GetCurrentProcess(), code, sizeof patch);
  return true;
}

const IMAGE_DATA_DIRECTORY& Directory(HMODULE module, int index) {
  const auto base = reinterpret_cast<const std::uint8_t*>(module);
  const auto* dos = reinterpret_cast<const IMAGE_DOS_HEADER*>(base);
  const auto* nt = reinterpret_cast<const IMAGE_NT_HEADERS*>(base + dos->e_lfanew);
  return nt->OptionalHeader.DataDirectory[index];
}

// Points the export `name` of `module` at a stub that jumps to `replacement`.
bool PatchExport(HMODULE module, const char* name, void* replacement, StubPages& stubs) {
  const auto& dir = Directory(module, IMAGE_DIRECTORY_ENTRY_EXPORT);
  if (dir.VirtualAddress == 0) return false;
  auto* base = reinterpret_cast<std::uint8_t*>(module);
  const auto* exports = reinterpret_cast<const IMAGE_EXPORT_DIRECTORY*>(base + dir.VirtualAddress);
  const auto* names = reinterpret_cast<const DWORD*>(base + exports->AddressOfNames);
  const auto* ordinals = reinterpret_cast<const WORD*>(base + exports->AddressOfNameOrdinals);
  auto* functions = reinterpret_cast<DWORD*>(base + exports->AddressOfFunctions);
  for (DWORD i = 0; i < exports->NumberOfNames; ++i) {
    if (std::strcmp(reinterpret_cast<const char*>(base + names[i]), name) != 0) continue;
    auto* stub = static_cast<std::uint8_t*>(stubs.Make(module, replacement));
    if (stub == nullptr || stub < base || static_cast<std::uintptr_t>(stub - base) > kReach)
      return false;
    DWORD* slot = &functions[ordinals[i]];
    DWORD old = 0;
    if (!VirtualProtect(slot, sizeof *slot, PAGE_READWRITE, &old)) return false;
    InterlockedExchange(reinterpret_cast<volatile LONG*>(slot), static_cast<LONG>(stub - base));
    VirtualProtect(slot, sizeof *slot, old, &old);
    return true;
  }
  return false;
}

// The state the table method needs after installation (import tables of later modules).
struct TableState {
  std::mutex mutex;
  HMODULE self = nullptr;
  struct Redirect {
    void* from[2];  // the kernelbase and kernel32 entries an import slot may hold
    void* to;
  };
  std::vector<Redirect> redirects;
};

TableState& Tables() {
  static auto* state = new TableState;  // never destroyed: the loader may call us at exit
  return *state;
}

void PatchImports(HMODULE module) {
  auto& state = Tables();
  if (module == nullptr || module == state.self) return;
  const auto& dir = Directory(module, IMAGE_DIRECTORY_ENTRY_IMPORT);
  if (dir.VirtualAddress == 0) return;
  auto* base = reinterpret_cast<std::uint8_t*>(module);
  for (auto* import = reinterpret_cast<IMAGE_IMPORT_DESCRIPTOR*>(base + dir.VirtualAddress);
       import->Name != 0; ++import) {
    for (auto** slot = reinterpret_cast<void**>(base + import->FirstThunk); *slot != nullptr;
         ++slot) {
      for (const auto& redirect : state.redirects) {
        if (*slot != redirect.from[0] && *slot != redirect.from[1]) continue;
        DWORD old = 0;
        if (!VirtualProtect(slot, sizeof *slot, PAGE_READWRITE, &old)) break;
        InterlockedExchangePointer(slot, redirect.to);
        VirtualProtect(slot, sizeof *slot, old, &old);
        break;
      }
    }
  }
}

// LdrRegisterDllNotification (ntdll, documented since Windows Vista; present in Wine).
struct LoadedDllData {
  ULONG flags;
  const void* full_name;
  const void* base_name;
  void* base;
  ULONG size;
};
using DllNotification = VOID(CALLBACK*)(ULONG reason, const LoadedDllData* data, PVOID context);
using RegisterDllNotification = LONG(NTAPI*)(ULONG flags, DllNotification callback, PVOID context,
                                             PVOID* cookie);
constexpr ULONG kDllLoaded = 1;

VOID CALLBACK OnDllNotification(ULONG reason, const LoadedDllData* data, PVOID) {
  if (reason != kDllLoaded || data == nullptr) return;
  std::lock_guard lock(Tables().mutex);
  PatchImports(static_cast<HMODULE>(data->base));
}

bool TablesForced() {
  wchar_t value[16] = {};
  const DWORD n = GetEnvironmentVariableW(L"VIRTDISK_HOOK_METHOD", value, 16);
  return n > 0 && n < 16 && std::wcscmp(value, L"tables") == 0;
}

}  // namespace

bool InstallFunctionHooks(std::span<FunctionHook> hooks, HMODULE self) {
  HMODULE pinned = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN | GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
                     reinterpret_cast<LPCWSTR>(&InstallFunctionHooks), &pinned);
  HMODULE kernelbase = GetModuleHandleW(L"kernelbase.dll");
  HMODULE kernel32 = GetModuleHandleW(L"kernel32.dll");
  const bool tables_only = TablesForced();
  static StubPages stubs;  // only used here, under the caller's once

  auto& state = Tables();
  std::lock_guard lock(state.mutex);
  state.self = self;
  bool all = true;
  bool any_tables = false;
  for (auto& hook : hooks) {
    void* in_kernelbase =
        kernelbase ? reinterpret_cast<void*>(GetProcAddress(kernelbase, hook.name)) : nullptr;
    void* in_kernel32 = reinterpret_cast<void*>(GetProcAddress(kernel32, hook.name));
    void* real = in_kernelbase ? in_kernelbase : in_kernel32;
    if (real == nullptr) {
      all = false;
      continue;
    }
    *hook.original = real;
    if (!tables_only && PatchInline(real, hook.replacement, stubs)) {
      // The kernel32 export is a thunk into kernelbase on current systems; if it has a body of
      // its own with the same prologue, that entry is redirected too.
      if (in_kernel32 != nullptr && in_kernel32 != real) {
        (void)PatchInline(in_kernel32, hook.replacement, stubs);
      }
      // The original of an inline-patched function is past the replaced no-op.
      *hook.original = static_cast<std::uint8_t*>(real) + sizeof kHotPatchNop;
      hook.method = HookMethod::kInline;
      continue;
    }
    bool exported = false;
    if (in_kernelbase != nullptr)
      exported |= PatchExport(kernelbase, hook.name, hook.replacement, stubs);
    if (in_kernel32 != nullptr)
      exported |= PatchExport(kernel32, hook.name, hook.replacement, stubs);
    state.redirects.push_back({{in_kernelbase, in_kernel32}, hook.replacement});
    hook.method = HookMethod::kTables;
    any_tables = true;
    all &= exported;
  }
  if (any_tables) {
    static PVOID cookie = nullptr;
    auto reg = reinterpret_cast<RegisterDllNotification>(reinterpret_cast<void*>(
        GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "LdrRegisterDllNotification")));
    if (reg != nullptr) reg(0, &OnDllNotification, nullptr, &cookie);
    using EnumModules = BOOL(WINAPI*)(HANDLE, HMODULE*, DWORD, LPDWORD);
    auto enum_modules = reinterpret_cast<EnumModules>(
        reinterpret_cast<void*>(GetProcAddress(kernel32, "K32EnumProcessModules")));
    std::vector<HMODULE> modules(1024);
    DWORD needed = 0;
    if (enum_modules != nullptr &&
        enum_modules(GetCurrentProcess(), modules.data(),
                     static_cast<DWORD>(modules.size() * sizeof(HMODULE)), &needed)) {
      modules.resize(std::min<std::size_t>(modules.size(), needed / sizeof(HMODULE)));
      for (HMODULE module : modules) PatchImports(module);
    }
  }
  return all;
}

}  // namespace vdisk::api::win32
