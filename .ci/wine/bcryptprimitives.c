/*
 * A stand-in for Windows' bcryptprimitives.dll, for running cross-built
 * framebus binaries under wine 8 (Debian 12's wine) in CI only.
 *
 * Why: Rust's standard library (1.78 and later) imports ProcessPrng from
 * bcryptprimitives.dll for its random seeds (HashMap keys). Wine 8 has no
 * such export, so every Rust program fails to start under it ("import
 * ProcessPrng not found"). Real Windows 10 and later has it; this file is
 * never shipped and never used there.
 *
 * What: ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which wine implements. It always returns TRUE, as the
 * real function does.
 *
 * Built by .ci/wine/setup.sh:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        SystemFunction036(data, chunk);
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
