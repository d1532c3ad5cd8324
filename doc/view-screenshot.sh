#!/usr/bin/env bash
# Makes doc/view.png: a screenshot of `framebus view`'s page showing a live
# frame of the fake camera, taken by headless Chromium (Debian: apt-get
# install chromium). Run from the repository root:
#
#   bash doc/view-screenshot.sh            (FRAMEBUS=path/to/framebus to pick the binary)
#
# It starts a producer and a consumer on a private bus, `framebus view` on
# a free loopback port, takes the screenshot of the page in its `?still=1`
# mode (single JPEGs instead of the endless MJPEG stream, so the page load
# finishes), and stops them all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FB="${FRAMEBUS:-$ROOT/target/release/framebus}"
BUS="viewshot-$$"
WORK="$(mktemp -d)"
export FRAMEBUS_RUNTIME_DIR="$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$FB" produce --bus "$BUS" --size 640x480 --fps 30 > "$WORK/produce.out" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q "^ready" "$WORK/produce.out" && break; sleep 0.1; done
"$FB" consume --bus "$BUS" --algo verify --max-fps 10 > /dev/null 2>&1 & pids+=($!)
"$FB" consume --bus "$BUS" --algo mean > /dev/null 2>&1 & pids+=($!)
"$FB" view --bus "$BUS" --listen 127.0.0.1:0 > "$WORK/view.out" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q "^listening" "$WORK/view.out" && break; sleep 0.1; done
URL="$(sed -n 's/^listening \(http:[^ ]*\) .*/\1/p' "$WORK/view.out")"
sleep 2   # let the consumers measure their rates
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --window-size=1400,560 --virtual-time-budget=3000 \
  --screenshot="$ROOT/doc/view.png" "${URL}?still=1" 2>/dev/null
echo "wrote $ROOT/doc/view.png from $URL"
