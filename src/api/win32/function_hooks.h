// Interception of kernel32 functions inside the process (Windows builds only).
//
// Two ways, chosen per function when InstallFunctionHooks runs:
//  - inline: Wine's PE modules start every exported function with an 8-byte no-op,
//    `lea rsp,[rsp+0]` (48 8d a4 24 00 00 00 00). Where the entry is 8-byte aligned and starts
//    with exactly that, the 8 bytes are replaced, in one atomic store, by `jmp rel32` (to a
//    14-byte absolute jump to the hook, in a page allocated near the module) plus a 3-byte nop.
//    The original is entry + 8: the replaced bytes did nothing, so no instruction moves. This
//    catches every caller: imports, GetProcAddress on kernel32 or kernelbase, modules loaded
//    later, and pointers taken before the hook existed.
//  - tables: elsewhere (Windows' own kernelbase has no such prologue), the export tables of
//    kernel32 and kernelbase and the import tables of every loaded module are rewritten, and
//    modules loaded later are patched from an LdrRegisterDllNotification callback. Pointers taken
//    before installation keep reaching the original.
// The 32-bit DLL uses the tables only (function_hooks.cpp says why).
// The DLL pins itself (GET_MODULE_HANDLE_EX_FLAG_PIN) first: no hook may ever point into an
// unloaded image. Nothing is ever unhooked.
#pragma once

#include <windows.h>

#include <span>

namespace vdisk::api::win32 {

enum class HookMethod { kNone, kInline, kTables };

struct FunctionHook {
  const char* name;   // exported by kernel32 (and, on current systems, kernelbase)
  void* replacement;  // the hook
  void** original;    // set to the function that does the real work, before any patching
  HookMethod method = HookMethod::kNone;  // how it was installed (out)
};

// Installs every hook. REQUIRES: called once per process, `self` is the calling DLL (its own
// import table is left alone: the DLL calls the originals through `original`).
// Returns false if a function could not be hooked by either method (its `original` is still
// set, so calling through it works).
bool InstallFunctionHooks(std::span<FunctionHook> hooks, HMODULE self);

}  // namespace vdisk::api::win32
