#!/usr/bin/env bash
# Makes this Linux machine build framebus for Windows and run it under wine:
# the Rust target, Debian's mingw-w64 (linker) and wine64, a wine prefix, and
# the ProcessPrng shim (see bcryptprimitives.c for why). Idempotent.
# Prints the environment to use: `eval "$(.ci/wine/setup.sh)"`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q mingw-w64 wine64 wine >&2
    else
        echo "setup.sh: install mingw-w64 and wine64 (as root: apt-get install mingw-w64 wine64)" >&2
        exit 1
    fi
fi
rustup target add x86_64-pc-windows-gnu >&2
export WINEPREFIX="${WINEPREFIX:-$HOME/.wine-framebus}"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="winedbg.exe=d;mscoree,mshtml="
if [ ! -d "$WINEPREFIX/drive_c/windows/system32" ]; then
    wineboot --init >&2 2>/dev/null || wine64 wineboot --init >&2
    wineserver -w || true
fi
out="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$out" ] || [ "$here/bcryptprimitives.c" -nt "$out" ]; then
    x86_64-w64-mingw32-gcc -shared -O2 -o "$out" \
        "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32
fi
runner=wine
echo "export WINEPREFIX='$WINEPREFIX'"
echo "export WINEDEBUG=-all"
echo "export WINEDLLOVERRIDES='winedbg.exe=d;mscoree,mshtml='"
echo "export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$runner"
echo "export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc"
