// Zero-length pending client writes (so the caller sees 0 bytes transferred, like a DeviceIoControl-based op):
// do they pend, can the server count them (FSCTL_PIPE_PEEK NumberOfMessages), complete them, see their cancel?
// Also: does the issuing thread's exit cancel the op under Wine?
#include "common.h"
#include <winioctl.h>
typedef NTSTATUS (NTAPI *NtFsControlFile_t)(HANDLE, HANDLE, PVOID, PVOID, PIO_STATUS_BLOCK, ULONG, PVOID, ULONG, PVOID, ULONG);
struct PEEK { ULONG State, ReadDataAvailable, NumberOfMessages, MessageLength; char Data[16]; };
static long pending_msgs(HANDLE server, ULONG* avail = nullptr) {
    static auto fs = (NtFsControlFile_t)(void*)GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtFsControlFile");
    IO_STATUS_BLOCK io; PEEK pk = {};
    NTSTATUS st = fs(server, NULL, NULL, NULL, &io, 0x11400c /*FSCTL_PIPE_PEEK*/, NULL, 0, &pk, sizeof pk);
    if (avail) *avail = pk.ReadDataAvailable;
    if (st && st != (NTSTATUS)0x80000005) return -(long)(st & 0xffff);   // STATUS_BUFFER_OVERFLOW is fine
    return pk.NumberOfMessages;
}
static DWORD WINAPI issue_and_exit(void* p) {
    auto* a = (void**)p; BOOL r = WriteFile((HANDLE)a[0], "", 0, NULL, (OVERLAPPED*)a[1]);
    printf("      [thread] WriteFile(0) r=%d err=%lu, thread exits now\n", r, r ? 0 : GetLastError()); return 0;
}
int main() {
    setvbuf(stdout, NULL, _IONBF, 0);
    PipePair p; make_pair(&p, PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE, 0);
    OVERLAPPED a = {}, b = {}; a.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL); b.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    NOTE("idle: messages=%ld", pending_msgs(p.server));
    BOOL r = WriteFile(p.client, "", 0, NULL, &a); DWORD e = GetLastError();
    CHECK(!r && e == ERROR_IO_PENDING, "zero-length client WriteFile pends: r=%d err=%lu", r, e);
    r = WriteFile(p.client, "", 0, NULL, &b);
    NOTE("two pending: messages=%ld", pending_msgs(p.server));
    CancelIoEx(p.client, &a); WaitForSingleObject(a.hEvent, 1000);
    NOTE("first cancelled: messages=%ld (a: Internal=0x%lx)", pending_msgs(p.server), (unsigned long)a.Internal);
    char buf[16]; OVERLAPPED s = {}; s.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL); DWORD n = 99;
    r = ReadFile(p.server, buf, 16, NULL, &s); if (!r && GetLastError() == ERROR_IO_PENDING) r = GetOverlappedResult(p.server, &s, &n, TRUE); else n = (DWORD)s.InternalHigh;
    NOTE("server read: r=%d n=%lu", r, n);
    DWORD wr = WaitForSingleObject(b.hEvent, 1000); DWORD bn = 99; BOOL g = GetOverlappedResult(p.client, &b, &bn, FALSE);
    CHECK(wr == 0 && g && bn == 0, "second op completed by the server's read: GOR=%d bytes=%lu; messages now %ld", g, bn, pending_msgs(p.server));
    // issuing thread exits while the op is pending
    OVERLAPPED c = {}; c.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    void* args[2] = {p.client, &c};
    HANDLE t = CreateThread(NULL, 0, issue_and_exit, args, 0, NULL); WaitForSingleObject(t, INFINITE); CloseHandle(t);
    wr = WaitForSingleObject(c.hEvent, 500);
    NOTE("after issuing thread exit: event %s Internal=0x%lx, messages=%ld", wr == 0 ? "SET (op cancelled by thread exit)" : "not set (op survives)", (unsigned long)c.Internal, pending_msgs(p.server));
    // close
    OVERLAPPED d = {}; d.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    WriteFile(p.client, "", 0, NULL, &d);
    CloseHandle(p.client);
    WaitForSingleObject(d.hEvent, 1000);
    ULONG av; long m = pending_msgs(p.server, &av);
    DWORD pa; BOOL pr = PeekNamedPipe(p.server, NULL, 0, NULL, &pa, NULL); DWORD pe = GetLastError();
    NOTE("after client close: pending op Internal=0x%lx; server FSCTL_PIPE_PEEK=%ld; PeekNamedPipe r=%d err=%lu", (unsigned long)d.Internal, m, pr, pr ? 0 : pe);
    return 0;
}
