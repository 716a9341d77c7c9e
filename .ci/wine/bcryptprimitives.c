/*
 * A stand-in for Windows' bcryptprimitives.dll under Wine 8 (Debian 12), whose own lacks
 * ProcessPrng: Rust's standard library imports it (for HashMap keys and the like), and a
 * program that cannot bind it does not start (status c0000135). The CI runner
 * (.ci/wine/runner) builds this with mingw-w64 and puts it beside each test binary.
 *
 * ProcessPrng fills the buffer from the system's CSPRNG and never fails on real Windows;
 * here it forwards to RtlGenRandom (advapi32's SystemFunction036), which Wine implements,
 * in chunks of at most ULONG_MAX bytes.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0xffffffffu ? 0xffffffffu : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
