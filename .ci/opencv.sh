#!/usr/bin/env bash
# The test suite once more with cameras and video files (`--features opencv`).
# Installs OpenCV's Debian packages (the `opencv` crate needs the -dev
# headers and libclang to generate its bindings), then runs every test with
# the feature. Called by .ci/run; runs on its own too (as root, or with sudo).
# About 1-2 min of apt and 3 min of build on the CI machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }

step "OpenCV packages (apt)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libopencv-dev clang libclang-dev

step "clippy with --features opencv"
cargo clippy --workspace --all-targets --features opencv -- -D warnings

step "tests with --features opencv"
cargo test --workspace --features opencv
