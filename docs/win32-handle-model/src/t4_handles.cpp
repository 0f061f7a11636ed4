// How can a test count this process's handles under Wine 8?
#include "common.h"
typedef NTSTATUS (NTAPI *NtQSI_t)(ULONG, PVOID, ULONG, PULONG);
typedef NTSTATUS (NTAPI *NtQIP_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
struct HANDLE_ENTRY { ULONG OwnerPid; BYTE ObjectType; BYTE Flags; USHORT Handle; PVOID Object; ACCESS_MASK Access; };
struct HANDLE_INFO { ULONG Count; HANDLE_ENTRY Handles[1]; };
struct HANDLE_ENTRY_EX { PVOID Object; ULONG_PTR Pid; ULONG_PTR Handle; ULONG Access; USHORT a, b; ULONG attr, res; };
struct HANDLE_INFO_EX { ULONG_PTR Count, Reserved; HANDLE_ENTRY_EX Handles[1]; };

static long count_qsi(ULONG cls) {
    static auto q = (NtQSI_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQuerySystemInformation");
    ULONG size = 1 << 20; void* buf = nullptr; NTSTATUS st;
    do { free(buf); buf = malloc(size); ULONG need = 0; st = q(cls, buf, size, &need); size *= 2; } while (st == (NTSTATUS)0xC0000004);
    if (st) { free(buf); return -(long)(st & 0xffff) - 1; }
    long n = 0; DWORD pid = GetCurrentProcessId();
    if (cls == 16) { auto hi = (HANDLE_INFO*)buf; for (ULONG i = 0; i < hi->Count; ++i) n += hi->Handles[i].OwnerPid == pid; }
    else { auto hi = (HANDLE_INFO_EX*)buf; for (ULONG_PTR i = 0; i < hi->Count; ++i) n += hi->Handles[i].Pid == pid; }
    free(buf); return n;
}
static long count_probe() {   // every value a handle can have, asked one by one (Wine: index*4)
    long n = 0; for (ULONG_PTR v = 4; v < 0x10000; v += 4) { DWORD f; n += GetHandleInformation((HANDLE)v, &f) ? 1 : 0; } return n;
}
static void show(const char* when) {
    DWORD c = 12345; BOOL r = GetProcessHandleCount(GetCurrentProcess(), &c);
    static auto qip = (NtQIP_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQueryInformationProcess");
    ULONG hc = 12345; NTSTATUS st = qip(GetCurrentProcess(), 20 /*ProcessHandleCount*/, &hc, sizeof hc, NULL);
    printf("%-16s GetProcessHandleCount r=%d count=%lu | NtQIP(ProcessHandleCount) st=0x%lx count=%lu | SystemHandleInformation=%ld | Extended=%ld | probe=%ld\n",
           when, r, c, (unsigned long)st, hc, count_qsi(16), count_qsi(64), count_probe());
}
int main() {
    show("start");
    HANDLE ev[10]; for (auto& e : ev) e = CreateEventW(NULL, TRUE, FALSE, NULL);
    show("+10 events");
    PipePair p; make_pair(&p);
    show("+pipe pair");
    for (auto& e : ev) CloseHandle(e); CloseHandle(p.client); CloseHandle(p.server);
    show("all closed");
}
