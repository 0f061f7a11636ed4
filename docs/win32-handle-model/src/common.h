// Shared helpers for the handle-model experiments (mingw-w64, runs under Wine).
#pragma once
#include <initializer_list>
#include <windows.h>
#include <winternl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

#define CHECK(cond, ...) do { printf("%s: ", (cond) ? "ok  " : "FAIL"); printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)
#define NOTE(...) do { printf("      "); printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

// A disk-handle pair: server end kept by the DLL, client end handed to the caller.
struct PipePair { HANDLE server; HANDLE client; };

static inline bool make_pair(PipePair* p, DWORD type = PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE, DWORD bufsize = 4096) {
    static volatile LONG seq = 0;
    wchar_t name[128];
    LARGE_INTEGER qpc; QueryPerformanceCounter(&qpc);
    swprintf(name, 128, L"\\\\.\\pipe\\virtdisk-%lu-%ld-%llx", GetCurrentProcessId(), InterlockedIncrement(&seq), (unsigned long long)qpc.QuadPart);
    p->server = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                 type | PIPE_REJECT_REMOTE_CLIENTS, 1, bufsize, bufsize, 0, NULL);
    if (p->server == INVALID_HANDLE_VALUE) { printf("CreateNamedPipeW: %lu\n", GetLastError()); return false; }
    p->client = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
    if (p->client == INVALID_HANDLE_VALUE) { printf("CreateFileW: %lu\n", GetLastError()); CloseHandle(p->server); return false; }
    // Already connected because the client opened it; ConnectNamedPipe would say ERROR_PIPE_CONNECTED.
    return true;
}

// ntdll pieces not (fully) in mingw headers
typedef struct { ULONG NamedPipeType, NamedPipeConfiguration, MaximumInstances, CurrentInstances, InboundQuota,
                 ReadDataAvailable, OutboundQuota, WriteQuotaAvailable, NamedPipeState, NamedPipeEnd; } PIPE_LOCAL_INFO;
typedef NTSTATUS (NTAPI *NtQueryInformationFile_t)(HANDLE, PIO_STATUS_BLOCK, PVOID, ULONG, ULONG);
static inline bool pipe_local_info(HANDLE h, PIPE_LOCAL_INFO* out) {
    static NtQueryInformationFile_t q = (NtQueryInformationFile_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQueryInformationFile");
    IO_STATUS_BLOCK io; NTSTATUS st = q(h, &io, out, sizeof *out, 24 /*FilePipeLocalInformation*/);
    return st == 0;
}

// GetProcessHandleCount / NtQueryInformationProcess(ProcessHandleCount) return 0 under Wine 8.
// NtQuerySystemInformation(SystemHandleInformation = 16), filtered by our pid, is right on Wine and Windows.
static inline long handle_count() {
    typedef NTSTATUS (NTAPI *NtQSI_t)(ULONG, PVOID, ULONG, PULONG);
    struct Entry { ULONG OwnerPid; BYTE ObjectType; BYTE Flags; USHORT Handle; PVOID Object; ACCESS_MASK Access; };
    struct Info { ULONG Count; Entry Handles[1]; };
    static NtQSI_t q = (NtQSI_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQuerySystemInformation");
    ULONG size = 1 << 20; void* buf = nullptr; NTSTATUS st;
    do { free(buf); buf = malloc(size); ULONG need = 0; st = q(16, buf, size, &need); size *= 2; } while (st == (NTSTATUS)0xC0000004);
    long n = -1;
    if (!st) { n = 0; auto hi = (Info*)buf; for (ULONG i = 0; i < hi->Count; ++i) n += hi->Handles[i].OwnerPid == GetCurrentProcessId(); }
    free(buf); return n;
}
