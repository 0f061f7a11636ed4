// rawhook.dll - prototype: makes kernel32/kernelbase ReadFile/WriteFile on a "disk handle"
// (client end of an overlapped message pipe) read/write a DLL-side disk at the OVERLAPPED offset,
// completing the caller's OVERLAPPED through the kernel (event, Internal, IOCP packet exact).
// Also hooks CloseHandle so a close with pending DLL operations is seen before the kernel acts.
//
// Interception modes (RAWHOOK_MODE env var or rh_install argument):
//   0 = inline: replace Wine's 8-byte hot-patch prologue "lea rsp,[rsp+0]" (48 8d a4 24 00 00 00 00)
//       of kernelbase!X with "jmp rel32" to a stub near kernelbase; the original is entry+8.
//       Falls back to mode 1 for any function whose prologue is not exactly that.
//   1 = EAT (kernelbase + kernel32) + IAT sweep of all loaded modules + LdrRegisterDllNotification
//   2 = IAT sweep + LdrRegisterDllNotification only (no EAT) - to test the notification path alone
#include <windows.h>
#include <winternl.h>
#include <psapi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#define RH_API extern "C" __declspec(dllexport)

// ---------------------------------------------------------------- the toy "disk"
struct Disk {
    HANDLE client;      // caller's handle (we never duplicate it: the caller's close must be the last)
    HANDLE server;      // our end
    uint64_t size;
    uint8_t* data;
    SRWLOCK io_lock;    // serialises "server write + client read" so each echo lands on its own read
    HANDLE watch_thread;
};
static SRWLOCK g_tab_lock = SRWLOCK_INIT;
static Disk* g_disks[64];
static volatile LONG g_ndisks = 0, g_closed_seen = 0, g_hook_hits = 0;

typedef BOOL (WINAPI *ReadFile_t)(HANDLE, LPVOID, DWORD, LPDWORD, LPOVERLAPPED);
typedef BOOL (WINAPI *WriteFile_t)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
typedef BOOL (WINAPI *CloseHandle_t)(HANDLE);
static ReadFile_t real_ReadFile;
static WriteFile_t real_WriteFile;
static CloseHandle_t real_CloseHandle;

static Disk* find_disk(HANDLE h) {
    if (!g_ndisks || !h) return nullptr;               // fast path for every other handle in the process
    Disk* d = nullptr;
    AcquireSRWLockShared(&g_tab_lock);
    for (auto* x : g_disks) if (x && x->client == h) { d = x; break; }
    ReleaseSRWLockShared(&g_tab_lock);
    return d;
}
// By handle value (from the CloseHandle hook) or by object identity (from the watch thread: by then the
// handle value may already belong to a NEW disk or any other object - handle values are reused at once).
static Disk* unregister_disk(HANDLE h, Disk* which = nullptr) {
    Disk* d = nullptr;
    AcquireSRWLockExclusive(&g_tab_lock);
    for (auto*& x : g_disks) if (x && (which ? x == which : x->client == h)) { d = x; x = nullptr; InterlockedDecrement(&g_ndisks); break; }
    ReleaseSRWLockExclusive(&g_tab_lock);
    return d;
}

// Complete the caller's I/O through the kernel: put an n-byte message into the pipe and issue the real
// ReadFile on the caller's handle with the caller's OVERLAPPED. The data is already there, so it completes
// at once: Internal/InternalHigh, event, lpNumberOfBytes, IOCP packet (and SKIP_ON_SUCCESS) are the kernel's.
static BOOL echo_complete(Disk* d, const void* msg, void* dest, DWORD n, LPDWORD nbytes, LPOVERLAPPED ov) {
    AcquireSRWLockExclusive(&d->io_lock);
    // The pipe has no buffer quota (size 0), so this write stays pending until the client read below takes it.
    OVERLAPPED sov = {}; sov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    BOOL ok = real_WriteFile(d->server, msg, n, NULL, &sov);
    if (!ok && GetLastError() != ERROR_IO_PENDING) { CloseHandle(sov.hEvent); ReleaseSRWLockExclusive(&d->io_lock); return FALSE; }
    BOOL r; DWORD e;
    if (ov) {
        r = real_ReadFile(d->client, dest, n, nbytes, ov);
        e = GetLastError();
    } else {                                             // no OVERLAPPED on an overlapped handle: wait here
        OVERLAPPED tmp = {}; tmp.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        r = real_ReadFile(d->client, dest, n, nullptr, &tmp);
        DWORD got = 0;
        if (!r && GetLastError() == ERROR_IO_PENDING) r = GetOverlappedResult(d->client, &tmp, &got, TRUE);
        else got = (DWORD)tmp.InternalHigh;
        e = GetLastError();
        if (nbytes) *nbytes = got;
        CloseHandle(tmp.hEvent);
    }
    DWORD w;
    if (!GetOverlappedResult(d->server, &sov, &w, TRUE) || w != n) {   // taken by the client read
        // the message was not consumed (e.g. the caller's read failed at once): pull it back out
        CancelIoEx(d->server, &sov); GetOverlappedResult(d->server, &sov, &w, TRUE);
    }
    CloseHandle(sov.hEvent);
    ReleaseSRWLockExclusive(&d->io_lock);
    SetLastError(e);
    return r;
}

static bool disk_range(Disk* d, LPOVERLAPPED ov, DWORD n, uint64_t* off) {
    *off = ov ? ((uint64_t)ov->OffsetHigh << 32 | ov->Offset) : 0;   // prototype: no file pointer
    return *off <= d->size && n <= d->size - *off;
}

static BOOL WINAPI hook_ReadFile(HANDLE h, LPVOID buf, DWORD n, LPDWORD nr, LPOVERLAPPED ov) {
    Disk* d = find_disk(h);
    if (!d) return real_ReadFile(h, buf, n, nr, ov);
    InterlockedIncrement(&g_hook_hits);
    uint64_t off;
    if (!disk_range(d, ov, n, &off)) { SetLastError(ERROR_INVALID_PARAMETER); return FALSE; }  // sync failure: no packet, like the kernel
    return echo_complete(d, d->data + off, buf, n, nr, ov);   // the kernel copies the disk bytes into buf
}

static BOOL WINAPI hook_WriteFile(HANDLE h, LPCVOID buf, DWORD n, LPDWORD nw, LPOVERLAPPED ov) {
    Disk* d = find_disk(h);
    if (!d) return real_WriteFile(h, buf, n, nw, ov);
    InterlockedIncrement(&g_hook_hits);
    uint64_t off;
    if (!disk_range(d, ov, n, &off)) { SetLastError(ERROR_INVALID_PARAMETER); return FALSE; }
    memcpy(d->data + off, buf, n);                             // "persist" before the caller sees completion
    void* scratch = malloc(n ? n : 1);                         // never read into the caller's (maybe read-only) buffer
    BOOL r = echo_complete(d, buf, scratch, n, nw, ov);        // synchronous completion: scratch is done with on return
    DWORD e = GetLastError(); free(scratch); SetLastError(e);
    return r;
}

static BOOL WINAPI hook_CloseHandle(HANDLE h) {
    Disk* d = find_disk(h) ? unregister_disk(h) : nullptr;
    if (d) {
        // Here the real DLL would CancelIoEx(h, ovl) every pending operation of this handle, so that the
        // caller's OVERLAPPEDs complete with STATUS_CANCELLED (not STATUS_PIPE_BROKEN) - exact incl. IOCP.
        InterlockedIncrement(&g_closed_seen);
    }
    return real_CloseHandle(h);      // the watch thread then sees ERROR_BROKEN_PIPE and frees the disk
}

static DWORD WINAPI watch_thread(void* p) {
    Disk* d = (Disk*)p;
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    char b[512];
    for (;;) {   // the caller never writes to its end; the read ends only with the caller's close
        DWORD n; ResetEvent(ov.hEvent);
        BOOL r = real_ReadFile(d->server, b, sizeof b, NULL, &ov);
        if (!r && GetLastError() == ERROR_IO_PENDING) r = GetOverlappedResult(d->server, &ov, &n, TRUE);
        if (!r && GetLastError() == ERROR_MORE_DATA) continue;
        if (!r) break;   // ERROR_BROKEN_PIPE: last handle to the client end closed (CloseHandle or NtClose)
    }
    CloseHandle(ov.hEvent);
    if (unregister_disk(nullptr, d)) InterlockedIncrement(&g_closed_seen);   // close that bypassed the hook
    real_CloseHandle(d->server);
    VirtualFree(d->data, 0, MEM_RELEASE);
    HANDLE self = d->watch_thread; free(d); real_CloseHandle(self);
    return 0;
}

// ---------------------------------------------------------------- interception
struct Target { const char* name; void* hook; void** real; void* kb_fn; void* k32_fn; };
static Target g_targets[] = {
    {"ReadFile", (void*)hook_ReadFile, (void**)&real_ReadFile},
    {"WriteFile", (void*)hook_WriteFile, (void**)&real_WriteFile},
    {"CloseHandle", (void*)hook_CloseHandle, (void**)&real_CloseHandle},
};
static HMODULE g_self;
static int g_mode = -1;

// 14-byte absolute jump "jmp [rip+0]; dq target" in a page within 2 GB above `near` (also valid as an EAT RVA).
static uint8_t* g_stub_page; static size_t g_stub_used;
static void* make_stub(void* near_module, void* target) {
    if (!g_stub_page) {
        auto nt = (IMAGE_NT_HEADERS*)((BYTE*)near_module + ((IMAGE_DOS_HEADER*)near_module)->e_lfanew);
        BYTE* want = (BYTE*)near_module + ((nt->OptionalHeader.SizeOfImage + 0xFFFF) & ~(size_t)0xFFFF);
        for (int i = 0; i < 16384 && !g_stub_page; ++i, want += 0x10000)   // up to 1 GB away
            g_stub_page = (uint8_t*)VirtualAlloc(want, 4096, MEM_RESERVE | MEM_COMMIT, PAGE_EXECUTE_READWRITE);
        if (!g_stub_page) return nullptr;
    }
    if ((uint64_t)(g_stub_page - (uint8_t*)near_module) > 0x7fff0000u) return nullptr;
    uint8_t* s = g_stub_page + g_stub_used; g_stub_used += 16;
    s[0] = 0xFF; s[1] = 0x25; memset(s + 2, 0, 4); memcpy(s + 6, &target, 8);
    FlushInstructionCache(GetCurrentProcess(), s, 16);
    return s;
}

static bool inline_patch(Target& t) {
    static const uint8_t prologue[8] = {0x48, 0x8d, 0xa4, 0x24, 0, 0, 0, 0};   // lea rsp,[rsp+0]
    uint8_t* e = (uint8_t*)t.kb_fn;
    if (!e || memcmp(e, prologue, 8) || ((uintptr_t)e & 7)) return false;
    HMODULE kb; GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, (LPCWSTR)e, &kb);
    uint8_t* stub = (uint8_t*)make_stub(kb, t.hook);
    int64_t rel = stub ? stub - (e + 5) : 0;
    if (!stub || rel != (int32_t)rel) return false;
    *t.real = e + 8;                                      // the 8 bytes we replace are a no-op
    uint8_t code[8] = {0xE9, 0, 0, 0, 0, 0x0F, 0x1F, 0x00}; int32_t r32 = (int32_t)rel; memcpy(code + 1, &r32, 4);
    DWORD old; VirtualProtect(e, 8, PAGE_EXECUTE_READWRITE, &old);
    uint64_t v; memcpy(&v, code, 8);
    InterlockedExchange64((volatile LONG64*)e, (LONG64)v);   // one aligned 8-byte store: no torn instruction
    VirtualProtect(e, 8, old, &old);
    FlushInstructionCache(GetCurrentProcess(), e, 8);
    return true;
}

static bool g_target_inline[3];
static void patch_iat(HMODULE m) {
    if (m == g_self) return;                               // our own calls go to the originals anyway
    auto base = (BYTE*)m;
    auto nt = (IMAGE_NT_HEADERS*)(base + ((IMAGE_DOS_HEADER*)base)->e_lfanew);
    auto& dir = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (!dir.VirtualAddress) return;
    for (auto imp = (IMAGE_IMPORT_DESCRIPTOR*)(base + dir.VirtualAddress); imp->Name; ++imp)
        for (auto slot = (void**)(base + imp->FirstThunk); *slot; ++slot)
            for (int i = 0; i < 3; ++i) {
                Target& t = g_targets[i];
                if (g_target_inline[i] || (*slot != t.kb_fn && *slot != t.k32_fn)) continue;
                DWORD old; VirtualProtect(slot, sizeof *slot, PAGE_READWRITE, &old);
                InterlockedExchangePointer(slot, t.hook);
                VirtualProtect(slot, sizeof *slot, old, &old);
            }
}

static void patch_eat(HMODULE m, Target& t) {
    auto base = (BYTE*)m;
    auto nt = (IMAGE_NT_HEADERS*)(base + ((IMAGE_DOS_HEADER*)base)->e_lfanew);
    auto ed = (IMAGE_EXPORT_DIRECTORY*)(base + nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT].VirtualAddress);
    auto names = (DWORD*)(base + ed->AddressOfNames); auto ords = (WORD*)(base + ed->AddressOfNameOrdinals);
    auto funcs = (DWORD*)(base + ed->AddressOfFunctions);
    for (DWORD i = 0; i < ed->NumberOfNames; ++i) {
        if (strcmp((char*)base + names[i], t.name)) continue;
        void* stub = make_stub(m, t.hook);
        if (!stub || (BYTE*)stub < base) return;
        DWORD* slot = &funcs[ords[i]]; DWORD old;
        VirtualProtect(slot, 4, PAGE_READWRITE, &old);
        InterlockedExchange((volatile LONG*)slot, (LONG)((BYTE*)stub - base));
        VirtualProtect(slot, 4, old, &old);
        return;
    }
}

// LdrRegisterDllNotification (ntdll, documented since Vista; present in Wine)
typedef struct { ULONG Flags; const UNICODE_STRING* FullDllName; const UNICODE_STRING* BaseDllName; PVOID DllBase; ULONG SizeOfImage; } LDR_DLL_LOADED_DATA;
typedef VOID (CALLBACK *LDR_DLL_NOTIFICATION_FUNCTION)(ULONG reason, const LDR_DLL_LOADED_DATA* data, PVOID ctx);
typedef NTSTATUS (NTAPI *LdrRegisterDllNotification_t)(ULONG, LDR_DLL_NOTIFICATION_FUNCTION, PVOID, PVOID*);
static volatile LONG g_notified = 0;
static VOID CALLBACK on_dll(ULONG reason, const LDR_DLL_LOADED_DATA* data, PVOID) {
    if (reason != 1 /*LDR_DLL_NOTIFICATION_REASON_LOADED*/) return;
    InterlockedIncrement(&g_notified);
    patch_iat((HMODULE)data->DllBase);   // only rewrites slots that already hold an original address
}

RH_API int rh_install(int mode) {
    static SRWLOCK once = SRWLOCK_INIT;
    AcquireSRWLockExclusive(&once);
    if (g_mode >= 0) { ReleaseSRWLockExclusive(&once); return g_mode; }
    HMODULE kb = GetModuleHandleW(L"kernelbase.dll"), k32 = GetModuleHandleW(L"kernel32.dll");
    for (auto& t : g_targets) {
        t.kb_fn = kb ? (void*)GetProcAddress(kb, t.name) : nullptr;
        t.k32_fn = (void*)GetProcAddress(k32, t.name);
        *t.real = t.kb_fn ? t.kb_fn : t.k32_fn;
    }
    // pin ourselves: a hook pointing into an unloaded DLL would crash the process
    HMODULE pinned; GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN | GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, (LPCWSTR)&rh_install, &pinned);
    bool all_inline = true;
    for (int i = 0; i < 3; ++i) { g_target_inline[i] = mode == 0 && inline_patch(g_targets[i]); all_inline &= g_target_inline[i]; }
    if (!all_inline) {
        // 1) future loads, 2) GetProcAddress + import resolution of future modules, 3) modules already loaded
        static PVOID cookie;
        auto reg = (LdrRegisterDllNotification_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "LdrRegisterDllNotification");
        if (reg) reg(0, on_dll, nullptr, &cookie);
        if (mode != 2)
            for (int i = 0; i < 3; ++i) if (!g_target_inline[i]) { if (kb) patch_eat(kb, g_targets[i]); patch_eat(k32, g_targets[i]); }
        HMODULE mods[1024]; DWORD need = 0;
        K32EnumProcessModules(GetCurrentProcess(), mods, sizeof mods, &need);
        for (DWORD i = 0; i < need / sizeof(HMODULE) && i < 1024; ++i) patch_iat(mods[i]);
    }
    g_mode = all_inline ? 0 : (mode == 2 ? 2 : 1);
    ReleaseSRWLockExclusive(&once);
    return g_mode;
}

RH_API HANDLE rh_create_disk(uint64_t size) {
    if (g_mode < 0) { const char* m = getenv("RAWHOOK_MODE"); rh_install(m ? atoi(m) : 0); }
    static volatile LONG seq;
    wchar_t name[128];
    swprintf(name, 128, L"\\\\.\\pipe\\virtdisk-%lu-%ld-%llx", GetCurrentProcessId(), InterlockedIncrement(&seq), (unsigned long long)GetTickCount64());
    Disk* d = (Disk*)calloc(1, sizeof *d);
    d->server = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                 PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_REJECT_REMOTE_CLIENTS, 1, 0, 0, 0, NULL);
    d->client = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
    d->size = size;
    d->data = (uint8_t*)VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    for (uint64_t i = 0; i < size; ++i) d->data[i] = (uint8_t)(i * 7 + i / 512);   // recognisable pattern
    InitializeSRWLock(&d->io_lock);
    AcquireSRWLockExclusive(&g_tab_lock);
    for (auto*& x : g_disks) if (!x) { x = d; InterlockedIncrement(&g_ndisks); break; }
    ReleaseSRWLockExclusive(&g_tab_lock);
    d->watch_thread = CreateThread(NULL, 0, watch_thread, d, 0, NULL);
    return d->client;
}

RH_API LONG rh_stat(int what) { return what == 0 ? g_ndisks : what == 1 ? g_closed_seen : what == 2 ? g_hook_hits : what == 3 ? g_notified : g_mode; }

BOOL WINAPI DllMain(HINSTANCE h, DWORD reason, LPVOID) { if (reason == DLL_PROCESS_ATTACH) g_self = h; return TRUE; }
