#!/usr/bin/env bash
# The C ABI on Windows, on this Linux machine (run by .ci/windows.sh, or on
# its own): cross-builds framebus.dll (crates/ffi) and the Windows CLI for
# x86_64-pc-windows-gnu, compiles examples/c/consumer.c and producer.cpp
# with mingw-w64 against the committed header and the DLL's import library
# (the consumer once more against the static library), and runs
# tests/windows_ffi.rs under wine (real processes: the C consumer and C++
# producer beside the Rust producer and consumer). Also clippy for the
# Windows target, and the crate's unit tests and tests/abi.rs (the ABI
# in-process on a real bus) under wine. About 40 s after .ci/windows.sh's
# own steps (which build most of what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash .ci/wine/setup.sh)"
# --features bridge, as .ci/windows.sh builds framebus.exe: the same binary.
target=x86_64-pc-windows-gnu
start=$SECONDS
cargo clippy --target "$target" -p framebus-ffi --all-targets -- -D warnings
cargo clippy --target "$target" --features bridge --test windows_ffi -- -D warnings
cargo build --target "$target" -p framebus-ffi
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
lib="$target_dir/$target/debug"
out="$target_dir/$target/c-examples"
rm -rf "$out"
mkdir -p "$out"
# Windows looks for a DLL next to the program first.
cp "$lib/framebus.dll" "$out/"
flags=(-Wall -Wextra -Werror -O2 -g -I crates/ffi/include)
x86_64-w64-mingw32-gcc -std=c11 "${flags[@]}" examples/c/consumer.c \
    "$lib/libframebus.dll.a" -o "$out/consumer.exe"
# The same consumer linked statically: libframebus.a and the system
# libraries rustc names for it (`cargo rustc -p framebus-ffi --target
# x86_64-pc-windows-gnu --crate-type staticlib -- --print native-static-libs`).
x86_64-w64-mingw32-gcc -std=c11 "${flags[@]}" examples/c/consumer.c \
    "$lib/libframebus.a" -lkernel32 -lntdll -luserenv -lws2_32 -ldbghelp \
    -o "$out/consumer-static.exe"
# libgcc and libstdc++ linked in, so only framebus.dll and the system's
# DLLs need to be found.
x86_64-w64-mingw32-g++ -std=c++17 "${flags[@]}" -static-libgcc -static-libstdc++ \
    examples/c/producer.cpp "$lib/libframebus.dll.a" -o "$out/producer.exe"
cargo test --target "$target" -p framebus-ffi --lib --test abi -- --nocapture
FRAMEBUS_WIN_C_DIR="$out" cargo test --target "$target" --features bridge --test windows_ffi -- --nocapture
# Every test process is gone: wine's server exits once its last client does.
wineserver -w || true
echo "windows ffi step: $((SECONDS - start)) s"
