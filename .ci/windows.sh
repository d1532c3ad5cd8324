#!/usr/bin/env bash
# Windows, on this Linux machine: cross-build for x86_64-pc-windows-gnu with
# Debian's mingw-w64 and run under wine (.ci/wine/setup.sh installs both and
# the ProcessPrng shim wine 8 lacks). Runs clippy for the Windows target, the
# unit tests of shm-layout, platform, producer and consumer, and the
# multi-process tests (tests/windows.rs, with the zenoh bridge) with the
# Windows CLI, the Python wheel (built, not run) and the C ABI
# (.ci/windows-ffi.sh). About 8 min on a fresh machine (cross builds with
# zenoh 5, wheel 1, tests and the C ABI 1.5), plus the apt install of
# mingw-w64 and wine.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash .ci/wine/setup.sh)"
target=x86_64-pc-windows-gnu
start=$SECONDS
cargo clippy --target "$target" -p shm-layout -p framebus-platform -p framebus-producer \
    -p framebus-consumer --lib --tests -- -D warnings
cargo clippy --target "$target" -p framebus-bridge --lib -- -D warnings
cargo clippy --target "$target" --features bridge --bin framebus --test windows -- -D warnings
# Unit and integration tests (shm-layout's contract, layout, property and
# entry-race tests too; the producer's registry tests are Unix-only).
cargo test --target "$target" -p shm-layout -p framebus-platform -p framebus-producer \
    -p framebus-consumer --tests -- --nocapture
cargo test --target "$target" --features bridge --test windows -- --nocapture
# The Python package as a Windows abi3 wheel (maturin cross-builds it and
# makes the import library itself). Built, not run: no Windows CPython is
# reachable from this machine.
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2"
# The root target directory: the Windows builds of the framebus crates above
# are reused.
(cd python && CARGO_TARGET_DIR="$PWD/../target" "$venv/bin/maturin" build --locked \
    --target "$target" -o "$(dirname "$venv")/wheels")
ls "$(dirname "$venv")"/wheels/*-abi3-win_amd64.whl
rm -rf "$(dirname "$venv")"
bash .ci/windows-ffi.sh
# Every test process is gone: wine's server exits once its last client does.
wineserver -w || true
echo "windows step: $((SECONDS - start)) s"
