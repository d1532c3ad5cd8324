#!/usr/bin/env bash
# Windows, on this Linux machine: cross-build for x86_64-pc-windows-gnu with
# Debian's mingw-w64 and run under wine (.ci/wine/setup.sh installs both and
# the ProcessPrng shim wine 8 lacks). Runs clippy for the Windows target, the
# unit tests of shm-layout, platform, producer and consumer, and the
# multi-process test (tests/windows.rs) with the Windows CLI. About 4 min on
# a fresh machine (cross build 3, tests 1), plus the apt install.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash .ci/wine/setup.sh)"
target=x86_64-pc-windows-gnu
start=$SECONDS
cargo clippy --target "$target" -p shm-layout -p framebus-platform -p framebus-producer \
    -p framebus-consumer --lib --tests -- -D warnings
cargo clippy --target "$target" -p framebus-bridge --lib -- -D warnings
cargo clippy --target "$target" --bin framebus --test windows -- -D warnings
cargo test --target "$target" -p shm-layout -p framebus-platform -p framebus-producer \
    -p framebus-consumer --lib -- --nocapture
cargo test --target "$target" --test windows -- --nocapture
# Every test process is gone: wine's server exits once its last client does.
wineserver -w || true
echo "windows step: $((SECONDS - start)) s"
bash .ci/windows-ffi.sh
