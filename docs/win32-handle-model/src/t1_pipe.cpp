// Experiment 1: disk handle = client end of an overlapped message-mode named pipe.
// Each test issues ReadFile(client, dllbuf, n, NULL, caller_ovl) "on the caller's behalf" and
// looks at how completion / cancel / close behave under Wine.
#include "common.h"

static const ULONG_PTR KEY = 0xC0FFEE;
static char g_dllbuf[4][256];

static bool issue(HANDLE client, OVERLAPPED* ov, int slot = 0, DWORD n = 64) {
    BOOL r = ReadFile(client, g_dllbuf[slot], n, NULL, ov);
    DWORD e = GetLastError();
    if (r || e != ERROR_IO_PENDING) { printf("FAIL: issue ReadFile r=%d err=%lu\n", r, e); return false; }
    return true;
}
static void show_ovl(const char* what, OVERLAPPED* ov, HANDLE client) {
    DWORD n = 0; SetLastError(0);
    BOOL r = GetOverlappedResult(client, ov, &n, FALSE);
    NOTE("%s: Internal=0x%08lx InternalHigh=%lu GetOverlappedResult=%d err=%lu bytes=%lu", what,
         (unsigned long)ov->Internal, (unsigned long)ov->InternalHigh, r, r ? 0 : GetLastError(), n);
}

struct CancelArgs { HANDLE h; OVERLAPPED* ov; BOOL r; DWORD err; };
static DWORD WINAPI cancel_ex_thread(void* p) { auto* a = (CancelArgs*)p; a->r = CancelIoEx(a->h, a->ov); a->err = GetLastError(); return 0; }
static DWORD WINAPI cancel_io_thread(void* p) { auto* a = (CancelArgs*)p; a->r = CancelIo(a->h); a->err = GetLastError(); return 0; }
static void run(LPTHREAD_START_ROUTINE f, void* a) { HANDLE t = CreateThread(NULL, 0, f, a, 0, NULL); WaitForSingleObject(t, INFINITE); CloseHandle(t); }

static void test_success() {
    printf("== T1 success completion by a server write\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!issue(p.client, &ov)) return;
    CHECK(ov.Internal == 0x103, "pending: Internal=0x%lx (STATUS_PENDING)", (unsigned long)ov.Internal);
    CHECK(WaitForSingleObject(ov.hEvent, 100) == WAIT_TIMEOUT, "event not set while pending");
    DWORD w; WriteFile(p.server, "done", 4, &w, NULL);   // (server handle is overlapped; a NULL-ovl write completes at once here)
    CHECK(WaitForSingleObject(ov.hEvent, 2000) == WAIT_OBJECT_0, "event set after server write");
    DWORD n = 0; BOOL r = GetOverlappedResult(p.client, &ov, &n, FALSE);
    CHECK(r && n == 4 && ov.Internal == 0, "GetOverlappedResult=%d bytes=%lu Internal=0x%lx", r, n, (unsigned long)ov.Internal);
    CloseHandle(ov.hEvent); CloseHandle(p.client); CloseHandle(p.server);
}

static void test_null_event() {
    printf("== T2 hEvent=NULL: GetOverlappedResult(wait) on the handle, completed from another thread\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov = {};
    if (!issue(p.client, &ov)) return;
    HANDLE t = CreateThread(NULL, 0, [](void* s) -> DWORD { Sleep(200); DWORD w; WriteFile((HANDLE)s, "xy", 2, &w, NULL); return 0; }, p.server, 0, NULL);
    DWORD n = 0; BOOL r = GetOverlappedResult(p.client, &ov, &n, TRUE);
    CHECK(r && n == 2, "GetOverlappedResult(wait) r=%d n=%lu", r, n);
    WaitForSingleObject(t, INFINITE); CloseHandle(t);
    CloseHandle(p.client); CloseHandle(p.server);
}

static void test_iocp() {
    printf("== T3 IOCP associated by the caller: success and cancel packets\n");
    PipePair p; make_pair(&p);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    CHECK(CreateIoCompletionPort(p.client, port, KEY, 0) == port, "associate client with port");
    OVERLAPPED ov = {};
    if (!issue(p.client, &ov)) return;
    DWORD n; ULONG_PTR key; OVERLAPPED* got;
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &got, 100) && GetLastError() == WAIT_TIMEOUT, "no packet while pending");
    DWORD w; WriteFile(p.server, "abc", 3, &w, NULL);
    BOOL r = GetQueuedCompletionStatus(port, &n, &key, &got, 2000);
    CHECK(r && key == KEY && got == &ov && n == 3, "success packet r=%d key=%llx ovl_ok=%d bytes=%lu", r, (unsigned long long)key, got == &ov, n);
    if (!issue(p.client, &ov)) return;
    CancelArgs a = {p.client, &ov}; run(cancel_ex_thread, &a);
    r = GetQueuedCompletionStatus(port, &n, &key, &got, 2000);
    DWORD e = GetLastError();
    CHECK(!r && e == ERROR_OPERATION_ABORTED && key == KEY && got == &ov, "cancel packet r=%d err=%lu key=%llx ovl_ok=%d", r, e, (unsigned long long)key, got == &ov);
    CloseHandle(p.client); CloseHandle(p.server); CloseHandle(port);
}

static void test_cancel_ex_other_thread() {
    printf("== T4 CancelIoEx(handle, ovl) from another thread\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!issue(p.client, &ov)) return;
    CancelArgs a = {p.client, &ov}; run(cancel_ex_thread, &a);
    CHECK(a.r, "CancelIoEx returned %d err=%lu", a.r, a.err);
    CHECK(WaitForSingleObject(ov.hEvent, 2000) == WAIT_OBJECT_0, "event set");
    DWORD n; BOOL r = GetOverlappedResult(p.client, &ov, &n, FALSE); DWORD e = GetLastError();
    CHECK(!r && e == ERROR_OPERATION_ABORTED && ov.Internal == 0xC0000120, "GetOverlappedResult=%d err=%lu Internal=0x%lx", r, e, (unsigned long)ov.Internal);
    CancelArgs b = {p.client, &ov}; run(cancel_ex_thread, &b);
    CHECK(!b.r && b.err == ERROR_NOT_FOUND, "second CancelIoEx -> %d err=%lu (ERROR_NOT_FOUND)", b.r, b.err);
    CloseHandle(ov.hEvent); CloseHandle(p.client); CloseHandle(p.server);
}

static void test_cancel_io() {
    printf("== T5 CancelIo(handle): from the issuing thread cancels; from another thread does not\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!issue(p.client, &ov)) return;
    CancelArgs a = {p.client, &ov}; run(cancel_io_thread, &a);
    CHECK(WaitForSingleObject(ov.hEvent, 300) == WAIT_TIMEOUT, "CancelIo from another thread (r=%d) left it pending", a.r);
    BOOL r = CancelIo(p.client);
    CHECK(r && WaitForSingleObject(ov.hEvent, 2000) == WAIT_OBJECT_0, "CancelIo from issuing thread r=%d, event set", r);
    show_ovl("after CancelIo", &ov, p.client);
    CloseHandle(ov.hEvent); CloseHandle(p.client); CloseHandle(p.server);
}

static void test_close() {
    printf("== T6 CloseHandle(client) with a pending read; server end sees it\n");
    PipePair p; make_pair(&p);
    // DLL's watch: an overlapped read on the server end that only the client's writes or close complete.
    OVERLAPPED sw = {}; sw.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    char sbuf[64]; BOOL r = ReadFile(p.server, sbuf, sizeof sbuf, NULL, &sw);
    CHECK(!r && GetLastError() == ERROR_IO_PENDING, "server watch read pending");
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    CreateIoCompletionPort(p.client, port, KEY, 0);
    if (!issue(p.client, &ov)) return;
    HANDLE client = p.client;
    CHECK(CloseHandle(client), "CloseHandle(client)");
    DWORD wr = WaitForSingleObject(ov.hEvent, 2000);
    CHECK(wr == WAIT_OBJECT_0, "caller's event set after close (wait=%lu)", wr);
    NOTE("caller's OVERLAPPED after close: Internal=0x%08lx InternalHigh=%lu", (unsigned long)ov.Internal, (unsigned long)ov.InternalHigh);
    DWORD n; ULONG_PTR key; OVERLAPPED* got;
    r = GetQueuedCompletionStatus(port, &n, &key, &got, 1000); DWORD e = GetLastError();
    NOTE("IOCP after close: r=%d err=%lu key_ok=%d ovl_ok=%d", r, e, key == KEY, got == &ov);
    wr = WaitForSingleObject(sw.hEvent, 2000);
    DWORD sn = 0; r = GetOverlappedResult(p.server, &sw, &sn, FALSE); e = GetLastError();
    CHECK(wr == WAIT_OBJECT_0 && !r && e == ERROR_BROKEN_PIPE, "server watch completed: r=%d err=%lu (ERROR_BROKEN_PIPE=109)", r, e);
    DWORD w; r = WriteFile(p.server, "x", 1, &w, NULL); e = GetLastError();
    NOTE("server WriteFile after client close: r=%d err=%lu", r, e);
    CloseHandle(sw.hEvent); CloseHandle(ov.hEvent); CloseHandle(p.server); CloseHandle(port);
}

static void test_detect_cancel() {
    printf("== T7 can the DLL see a pending/cancelled client read from its server end?\n");
    PipePair p; make_pair(&p);
    PIPE_LOCAL_INFO i0, i1, i2, c1;
    pipe_local_info(p.server, &i0);
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!issue(p.client, &ov, 0, 77)) return;
    pipe_local_info(p.server, &i1);
    pipe_local_info(p.client, &c1);
    CancelIoEx(p.client, &ov); WaitForSingleObject(ov.hEvent, 1000);
    pipe_local_info(p.server, &i2);
    NOTE("server WriteQuotaAvailable idle=%lu pending(77-byte read)=%lu cancelled=%lu  (OutboundQuota=%lu)",
         i0.WriteQuotaAvailable, i1.WriteQuotaAvailable, i2.WriteQuotaAvailable, i0.OutboundQuota);
    NOTE("server ReadDataAvailable idle=%lu pending=%lu; state=%lu end=%lu; client ReadDataAvailable=%lu",
         i0.ReadDataAvailable, i1.ReadDataAvailable, i0.NamedPipeState, i0.NamedPipeEnd, c1.ReadDataAvailable);
    CHECK(i1.WriteQuotaAvailable != i2.WriteQuotaAvailable, "WriteQuotaAvailable distinguishes pending vs cancelled");
    CloseHandle(ov.hEvent); CloseHandle(p.client); CloseHandle(p.server);
}

// "event swap": the DLL puts its own event into the caller's OVERLAPPED only while calling ReadFile,
// then restores the caller's event. The kernel signals the DLL's event on completion (success, cancel,
// close). A DLL thread then (optionally) rewrites Internal and signals the caller's event.
struct Swap { OVERLAPPED* ov; HANDLE caller_event; HANDLE dll_event; volatile LONG dll_completes; NTSTATUS final_status; HANDLE done; };
static DWORD WINAPI swap_waiter(void* p) {
    auto* s = (Swap*)p;
    WaitForSingleObject(s->dll_event, INFINITE);
    NTSTATUS kst = (NTSTATUS)s->ov->Internal;
    if (s->dll_completes && s->final_status != 0) s->ov->Internal = (ULONG_PTR)s->final_status;
    printf("      [dll waiter] kernel completed with 0x%08lx; dll-initiated=%ld -> %s\n", (unsigned long)kst, s->dll_completes,
           s->dll_completes ? "our completion" : "CANCEL/CLOSE detected");
    if (s->caller_event) SetEvent(s->caller_event);
    SetEvent(s->done);
    return 0;
}
static void test_event_swap() {
    printf("== T8 event swap: DLL learns of cancel at once, and can complete with an arbitrary status\n");
    for (int mode = 0; mode < 3; ++mode) {
        PipePair p; make_pair(&p);
        OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        Swap s = {&ov, ov.hEvent, CreateEventW(NULL, TRUE, FALSE, NULL), 0, (NTSTATUS)0xC000007F /*STATUS_DISK_FULL*/, CreateEventW(NULL, TRUE, FALSE, NULL)};
        ov.hEvent = s.dll_event;
        BOOL r = ReadFile(p.client, g_dllbuf[0], 64, NULL, &ov); DWORD e = GetLastError();
        ov.hEvent = s.caller_event;
        if (r || e != ERROR_IO_PENDING) { printf("FAIL issue\n"); return; }
        HANDLE t = CreateThread(NULL, 0, swap_waiter, &s, 0, NULL);
        if (mode == 0) { CancelArgs a = {p.client, &ov}; run(cancel_ex_thread, &a); }
        else if (mode == 1) { s.dll_completes = 1; DWORD w; WriteFile(p.server, "e", 1, &w, NULL); }
        else { s.dll_completes = 1; CancelIoEx(p.client, &ov); }  // DLL completes with error via its own cancel
        DWORD n = 0; r = GetOverlappedResult(p.client, &ov, &n, TRUE); e = GetLastError();
        const char* names[] = {"client CancelIoEx", "DLL write + Internal:=STATUS_DISK_FULL", "DLL CancelIoEx + Internal:=STATUS_DISK_FULL"};
        NOTE("%s: GetOverlappedResult=%d err=%lu bytes=%lu Internal=0x%lx", names[mode], r, r ? 0 : e, n, (unsigned long)ov.Internal);
        WaitForSingleObject(s.done, INFINITE); WaitForSingleObject(t, INFINITE); CloseHandle(t);
        CloseHandle(s.caller_event); CloseHandle(s.dll_event); CloseHandle(s.done); CloseHandle(p.client); CloseHandle(p.server);
    }
}

static void test_error_completion() {
    printf("== T9 DLL-side error completion without touching the caller's OVERLAPPED\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    issue(p.client, &ov, 0, 8);
    DWORD w; WriteFile(p.server, "0123456789ABCDEF", 16, &w, NULL);  // message longer than the read
    WaitForSingleObject(ov.hEvent, 1000); show_ovl("oversized message", &ov, p.client);
    // drain the rest of the message
    { OVERLAPPED d = {}; d.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL); char b[64]; DWORD n; ReadFile(p.client, b, 64, NULL, &d); GetOverlappedResult(p.client, &d, &n, TRUE); CloseHandle(d.hEvent); }
    ResetEvent(ov.hEvent); issue(p.client, &ov);
    CancelIoEx(p.client, &ov);  // DLL cancels itself
    WaitForSingleObject(ov.hEvent, 1000); show_ovl("DLL CancelIoEx", &ov, p.client);
    ResetEvent(ov.hEvent); issue(p.client, &ov);
    DisconnectNamedPipe(p.server);
    WaitForSingleObject(ov.hEvent, 1000); show_ovl("DLL DisconnectNamedPipe", &ov, p.client);
    CloseHandle(ov.hEvent); CloseHandle(p.client); CloseHandle(p.server);
}

static void test_multi() {
    printf("== T10 message mode, 3 pending reads: FIFO, messages kept separate\n");
    PipePair p; make_pair(&p);
    OVERLAPPED ov[3] = {};
    for (int i = 0; i < 3; ++i) { ov[i].hEvent = CreateEventW(NULL, TRUE, FALSE, NULL); memset(g_dllbuf[i], 0, 256); issue(p.client, &ov[i], i, 100); }
    // cancel the middle one, then write two messages: do they go to #0 and #2?
    CancelIoEx(p.client, &ov[1]);
    DWORD w; WriteFile(p.server, "first", 5, &w, NULL); WriteFile(p.server, "second!", 7, &w, NULL);
    for (int i = 0; i < 3; ++i) {
        WaitForSingleObject(ov[i].hEvent, 1000);
        DWORD n = 0; BOOL r = GetOverlappedResult(p.client, &ov[i], &n, FALSE);
        NOTE("read #%d: r=%d err=%lu n=%lu data='%s'", i, r, r ? 0 : GetLastError(), n, g_dllbuf[i]);
    }
    CHECK(!strcmp(g_dllbuf[0], "first") && !strcmp(g_dllbuf[2], "second!"), "FIFO over the remaining reads, one message each");
    for (auto& o : ov) CloseHandle(o.hEvent);
    CloseHandle(p.client); CloseHandle(p.server);
}

static void test_leaks() {
    printf("== T11 handle count over 10000 create/issue/close cycles\n");
    long before = handle_count(), after;
    for (int i = 0; i < 10000; ++i) {
        PipePair p; if (!make_pair(&p)) { printf("FAIL at %d\n", i); break; }
        OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        issue(p.client, &ov);
        if (i % 3 == 0) { DWORD w; WriteFile(p.server, "k", 1, &w, NULL); }
        else if (i % 3 == 1) CancelIoEx(p.client, &ov);
        CloseHandle(p.client);           // caller closes (maybe with the read pending)
        WaitForSingleObject(ov.hEvent, 1000);
        CloseHandle(p.server);
        CloseHandle(ov.hEvent);
    }
    after = handle_count();
    CHECK(before == after, "handle count (SystemHandleInformation) before=%ld after=%ld", before, after);
}

int main() {
    setvbuf(stdout, NULL, _IONBF, 0);
    DWORD t0 = GetTickCount();
    test_success(); test_null_event(); test_iocp(); test_cancel_ex_other_thread(); test_cancel_io(); test_close();
    test_detect_cancel(); test_event_swap(); test_error_completion(); test_multi();
    DWORD t1 = GetTickCount(); test_leaks();
    NOTE("10000 cycles took %lu ms", GetTickCount() - t1);
    (void)t0; return 0;
}
