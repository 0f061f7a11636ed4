// Experiment 1b: the pending operation is a client WriteFile that the pipe cannot buffer, so it stays
// pending until the DLL reads it from the server end. Can the DLL see it (PeekNamedPipe) and its cancel?
#include "common.h"
#include <initializer_list>
static char payload[64] = "op#1";

static void peek(const char* what, HANDLE server) {
    DWORD avail = 0, left = 0; char b[8];
    BOOL r = PeekNamedPipe(server, b, 0, NULL, &avail, &left);
    PIPE_LOCAL_INFO i; pipe_local_info(server, &i);
    NOTE("%-22s PeekNamedPipe r=%d err=%lu avail=%lu msgleft=%lu | ReadDataAvailable=%lu", what, r, r ? 0 : GetLastError(), avail, left, i.ReadDataAvailable);
}

int main() {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (DWORD bufsize : {0u, 16u}) {
        printf("== pipe buffer size %lu\n", bufsize);
        PipePair p; make_pair(&p, PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE, bufsize);
        OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        peek("idle:", p.server);
        BOOL r = WriteFile(p.client, payload, 32, NULL, &ov); DWORD e = GetLastError();
        NOTE("client WriteFile(32) r=%d err=%lu", r, r ? 0 : e);
        if (r) { NOTE("write completed at once -> not usable with this buffer size"); continue; }
        peek("write pending:", p.server);
        CancelIoEx(p.client, &ov); WaitForSingleObject(ov.hEvent, 1000);
        DWORD n; r = GetOverlappedResult(p.client, &ov, &n, FALSE);
        NOTE("after client CancelIoEx: GOR=%d err=%lu Internal=0x%lx", r, r ? 0 : GetLastError(), (unsigned long)ov.Internal);
        peek("after cancel:", p.server);
        // success path
        ResetEvent(ov.hEvent);
        // drain any stale message first
        { DWORD a=0; PeekNamedPipe(p.server, NULL, 0, NULL, &a, NULL); if (a) { char b[64]; OVERLAPPED d = {}; d.hEvent = CreateEventW(NULL,TRUE,FALSE,NULL); ReadFile(p.server, b, 64, NULL, &d); GetOverlappedResult(p.server, &d, &n, TRUE); NOTE("drained stale %lu bytes", n); CloseHandle(d.hEvent);} }
        r = WriteFile(p.client, payload, 32, NULL, &ov);
        char b[64]; OVERLAPPED d = {}; d.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        ReadFile(p.server, b, 64, NULL, &d); GetOverlappedResult(p.server, &d, &n, TRUE);
        DWORD wr = WaitForSingleObject(ov.hEvent, 1000);
        DWORD cn; r = GetOverlappedResult(p.client, &ov, &cn, FALSE);
        NOTE("server read %lu bytes -> client write event=%s GOR=%d bytes=%lu", n, wr == 0 ? "set" : "NOT set", r, cn);
        // close path
        ResetEvent(ov.hEvent);
        r = WriteFile(p.client, payload, 32, NULL, &ov);
        CloseHandle(p.client);
        wr = WaitForSingleObject(ov.hEvent, 1000);
        NOTE("close with pending write: event=%s Internal=0x%lx", wr == 0 ? "set" : "NOT set", (unsigned long)ov.Internal);
        peek("after close:", p.server);
        CloseHandle(d.hEvent); CloseHandle(ov.hEvent); CloseHandle(p.server);
    }
    // completion-port association query (can the DLL learn the caller's port without hooks?)
    PipePair p; make_pair(&p);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    CreateIoCompletionPort(p.client, port, 7, 0);
    struct { HANDLE port; ULONG_PTR key; } info = {};
    IO_STATUS_BLOCK io;
    static NtQueryInformationFile_t q = (NtQueryInformationFile_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQueryInformationFile");
    NTSTATUS st = q(p.client, &io, &info, sizeof info, 30 /*FileCompletionInformation*/);
    NOTE("NtQueryInformationFile(FileCompletionInformation) -> 0x%lx", (unsigned long)st);
    // hEvent low bit: completion not queued to the port?
    OVERLAPPED ov = {}; HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL); ov.hEvent = (HANDLE)((ULONG_PTR)ev | 1);
    char buf[16]; ReadFile(p.client, buf, 16, NULL, &ov);
    DWORD w; WriteFile(p.server, "z", 1, &w, NULL);
    WaitForSingleObject(ev, 1000);
    DWORD n; ULONG_PTR key; OVERLAPPED* got;
    BOOL r = GetQueuedCompletionStatus(port, &n, &key, &got, 300);
    NOTE("hEvent|1: event set=%d, IOCP packet=%s", WaitForSingleObject(ev, 0) == 0, r ? "YES" : "none");
    // NtSetIoCompletion with an error status: what does GetQueuedCompletionStatus report?
    typedef NTSTATUS (NTAPI *NtSetIoCompletion_t)(HANDLE, ULONG_PTR, ULONG_PTR, NTSTATUS, ULONG_PTR);
    auto set = (NtSetIoCompletion_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtSetIoCompletion");
    set(port, 7, (ULONG_PTR)&ov, (NTSTATUS)0xC000007F, 0);
    r = GetQueuedCompletionStatus(port, &n, &key, &got, 300);
    NOTE("NtSetIoCompletion(STATUS_DISK_FULL): GQCS r=%d err=%lu key=%llu ovl_ok=%d", r, r ? 0 : GetLastError(), (unsigned long long)key, got == &ov);
    return 0;
}
