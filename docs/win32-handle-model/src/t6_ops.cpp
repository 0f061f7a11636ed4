// Experiment 3: async operations + cancel/close notification with vdhook.dll (recommended design).
// usage: t6_ops.exe <mode>
#include "common.h"
typedef int (*install_t)(int); typedef HANDLE (*create_t)(uint64_t); typedef LONG (*stat_t)(int);
typedef DWORD (*begin_t)(HANDLE, OVERLAPPED*); typedef DWORD (*complete_t)(HANDLE);
static begin_t begin_op; static complete_t complete_op; static stat_t stat; static create_t create;
static const ULONG_PTR KEY = 0xD15C;

static void result(const char* what, HANDLE h, OVERLAPPED* ov, HANDLE port, DWORD want_err) {
    DWORD wr = ov->hEvent ? WaitForSingleObject(ov->hEvent, 2000) : 0;
    DWORD n = 77; SetLastError(0);
    BOOL g = GetOverlappedResult(h, ov, &n, FALSE); DWORD ge = g ? 0 : GetLastError();
    DWORD pn = 77; ULONG_PTR key = 0; OVERLAPPED* po = nullptr; BOOL p = FALSE; DWORD pe = 0;
    if (port) { p = GetQueuedCompletionStatus(port, &pn, &key, &po, 2000); pe = p ? 0 : GetLastError(); }
    bool ok = wr == 0 && ge == want_err && (!port || (pe == want_err && key == KEY && po == ov));
    CHECK(ok, "%s: event=%s Internal=0x%lx GOR=%d err=%lu bytes=%lu | IOCP %s err=%lu key_ok=%d ovl_ok=%d bytes=%lu", what,
          wr == 0 ? "set" : "NOT set", (unsigned long)ov->Internal, g, ge, n, port ? (p ? "TRUE" : "FALSE") : "-", pe, key == KEY, po == ov, pn);
}
struct CA { HANDLE h; OVERLAPPED* ov; };
static DWORD WINAPI cancel_ex(void* p) { auto* a = (CA*)p; CancelIoEx(a->h, a->ov); return 0; }

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    HMODULE m = LoadLibraryW(L"vdhook.dll");
    auto install = (install_t)(void*)GetProcAddress(m, "rh_install");
    create = (create_t)(void*)GetProcAddress(m, "rh_create_disk"); stat = (stat_t)(void*)GetProcAddress(m, "rh_stat");
    begin_op = (begin_t)(void*)GetProcAddress(m, "rh_begin_op"); complete_op = (complete_t)(void*)GetProcAddress(m, "rh_complete_op");
    printf("== vdhook mode %d\n", install(argc > 1 ? atoi(argv[1]) : 0));
    long h0 = handle_count();
    for (int withport = 0; withport < 2; ++withport) {
        printf("-- %s\n", withport ? "handle associated with an IOCP" : "event only");
        HANDLE disk = create(1 << 16);
        HANDLE port = withport ? CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0) : NULL;
        if (port) CreateIoCompletionPort(disk, port, KEY, 0);
        OVERLAPPED ov = {}; ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        // success (BreakMirrorVirtualDisk)
        DWORD e = begin_op(disk, &ov);
        CHECK(e == ERROR_IO_PENDING && WaitForSingleObject(ov.hEvent, 100) == WAIT_TIMEOUT, "op pending (ret %lu)", e);
        complete_op(disk);
        result("DLL completes", disk, &ov, port, 0);
        // CancelIoEx from another thread
        ResetEvent(ov.hEvent); LONG c0 = stat(5);
        begin_op(disk, &ov);
        CA a = {disk, &ov}; HANDLE t = CreateThread(NULL, 0, cancel_ex, &a, 0, NULL); WaitForSingleObject(t, INFINITE); CloseHandle(t);
        result("CancelIoEx(other thread)", disk, &ov, port, ERROR_OPERATION_ABORTED);
        CHECK(stat(5) == c0 + 1, "DLL was told of the CancelIoEx (cancels seen %ld)", stat(5));
        CHECK(complete_op(disk) == ERROR_NOT_FOUND, "nothing left for the DLL to complete");
        // CancelIo from the issuing thread
        ResetEvent(ov.hEvent); c0 = stat(5);
        begin_op(disk, &ov); CancelIo(disk);
        result("CancelIo(issuing thread)", disk, &ov, port, ERROR_OPERATION_ABORTED);
        CHECK(stat(5) == c0 + 1, "DLL was told of the CancelIo");
        // raw I/O on the same handle while an op is pending does not disturb the op
        ResetEvent(ov.hEvent);
        begin_op(disk, &ov);
        OVERLAPPED rov = {}; rov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL); rov.Offset = 512; char buf[512]; DWORD n;
        ReadFile(disk, buf, 512, NULL, &rov); BOOL g = GetOverlappedResult(disk, &rov, &n, TRUE);
        if (port) { ULONG_PTR k; OVERLAPPED* po; GetQueuedCompletionStatus(port, &n, &k, &po, 1000); }
        CHECK(g && n == 512 && (BYTE)buf[1] == (BYTE)(513 * 7 + 1) && WaitForSingleObject(ov.hEvent, 0) == WAIT_TIMEOUT, "raw read during a pending op: GOR=%d n=%lu, op still pending", g, n);
        CloseHandle(rov.hEvent);
        // CloseHandle with the op pending
        LONG closed0 = stat(1);
        CloseHandle(disk);
        result("CloseHandle(disk) with op pending", disk, &ov, port, ERROR_OPERATION_ABORTED);
        CHECK(stat(1) == closed0 + 1, "DLL was told of the close synchronously (closed=%ld)", stat(1));
        CloseHandle(ov.hEvent); if (port) CloseHandle(port);
    }
    Sleep(200);
    CHECK(handle_count() == h0 && stat(0) == 0, "handles back to %ld (now %ld), open disks %ld", h0, handle_count(), stat(0));
    return 0;
}
