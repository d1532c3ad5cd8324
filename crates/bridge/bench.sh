#!/usr/bin/env bash
# Loopback figures for doc/BRIDGE.md: a fake camera -> bridge out -> bridge
# in -> `bridge latency` on the far bus, all on this machine (one
# CLOCK_MONOTONIC, so capture -> pin is end to end), at 640x480 and
# 1920x1080, raw and lz4, at 30 fps (latency) and with the camera at
# 1000 fps (throughput: what the far side gets).
#
#   cargo build --release --features bridge
#   bash crates/bridge/bench.sh [SECONDS] > figures.jsonl
#
# Prints one JSON line per run on stdout, a table on stderr. Every process
# it starts is stopped at the end of its run; nothing listens beyond
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=${FRAMEBUS:-${CARGO_TARGET_DIR:-target}/release/framebus}
secs=${1:-10}
warmup=2
[ -x "$exe" ] || { echo "build first: cargo build --release --features bridge ($exe missing)" >&2; exit 1; }
work=$(mktemp -d)
export FRAMEBUS_RUNTIME_DIR=$work
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_line FILE PATTERN: until FILE has a line matching PATTERN (30 s).
wait_line() {
  local deadline=$((SECONDS + 30))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for '$2' in $1:" >&2
      cat "$1" >&2
      exit 1
    fi
    sleep 0.05
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

run() { # SIZE FPS COMPRESS
  local size=$1 fps=$2 compress=$3 n=$((${#pids[@]}))
  local cam=bench-cam-$$-$n far=bench-far-$$-$n port
  port=$(free_port)
  "$exe" produce --bus "$cam" --size "$size" --fps "$fps" --max-consumers 4 --json > "$work/p.out" 2> "$work/p.err" &
  pids+=($!)
  local producer=$!
  wait_line "$work/p.out" "ready bus="
  "$exe" bridge out --bus "$cam" --listen "tcp/127.0.0.1:$port" --compress "$compress" --json > "$work/o.out" 2> "$work/o.err" &
  pids+=($!)
  local out=$!
  wait_line "$work/o.out" "ready bus="
  "$exe" bridge in --key "framebus/$cam" --bus "$far" --connect "tcp/127.0.0.1:$port" --json > "$work/i.out" 2> "$work/i.err" &
  pids+=($!)
  local in=$!
  wait_line "$work/i.out" "^bus bus="
  local lat
  lat=$("$exe" bridge latency --bus "$far" --duration "$secs" --warmup "$warmup" --json | tail -1)
  kill -TERM "$in" "$out"
  wait "$in" "$out" || true
  kill -TERM "$producer"
  wait "$producer" || true
  local out_stats in_stats cam_stats
  out_stats=$(tail -1 "$work/o.out")
  in_stats=$(tail -1 "$work/i.out")
  cam_stats=$(tail -1 "$work/p.out")
  python3 - "$size" "$fps" "$compress" "$lat" "$out_stats" "$in_stats" "$cam_stats" <<'EOF'
import json, sys
size, fps, compress = sys.argv[1:4]
lat, out, inn, cam = (json.loads(a) for a in sys.argv[4:8])
row = {
    "size": size, "camera_fps": float(fps), "compress": compress,
    "camera_fps_achieved": round(cam["fps"], 1),
    "far_fps": round(lat["fps"], 1), "frames": lat["frames"],
    "p50_us": round(lat["capture_to_pin_us"]["p50"]), "p99_us": round(lat["capture_to_pin_us"]["p99"]),
    "max_us": round(lat["capture_to_pin_us"]["max"]),
    "bytes_per_frame": round(out["bytes_sent"] / max(out["frames_sent"], 1)),
    "out_skipped": out["frames_skipped"], "in_lost": inn["frames_lost"],
    "in_overrun": inn["dropped_overrun"], "in_invalid": inn["dropped_invalid"],
    "out_of_order": lat["out_of_order"],
}
print(json.dumps(row))
print(f"{size:>9} {fps:>5} fps {compress:>4}: camera {row['camera_fps_achieved']:7.1f} fps, far {row['far_fps']:7.1f} fps, capture->pin p50 {row['p50_us']:6} us p99 {row['p99_us']:6} us, {row['bytes_per_frame']:8} B/frame, lost {row['in_lost']}, overrun {row['in_overrun']}", file=sys.stderr)
EOF
}

# The same camera read on its own host, no bridge: the baseline.
local_run() { # SIZE FPS
  local size=$1 fps=$2 n=$((${#pids[@]}))
  local cam=bench-local-$$-$n
  "$exe" produce --bus "$cam" --size "$size" --fps "$fps" --json > "$work/p.out" 2> "$work/p.err" &
  pids+=($!)
  local producer=$!
  wait_line "$work/p.out" "ready bus="
  local lat
  lat=$("$exe" bridge latency --bus "$cam" --duration "$secs" --warmup "$warmup" --json | tail -1)
  kill -TERM "$producer"
  wait "$producer" || true
  python3 - "$size" "$fps" "$lat" <<'EOF'
import json, sys
size, fps = sys.argv[1:3]
lat = json.loads(sys.argv[3])
row = {"size": size, "camera_fps": float(fps), "compress": "local (no bridge)",
       "far_fps": round(lat["fps"], 1), "frames": lat["frames"],
       "p50_us": round(lat["capture_to_pin_us"]["p50"]), "p99_us": round(lat["capture_to_pin_us"]["p99"]),
       "max_us": round(lat["capture_to_pin_us"]["max"])}
print(json.dumps(row))
print(f"{size:>9} {fps:>5} fps local (no bridge): {row['far_fps']:7.1f} fps, capture->pin p50 {row['p50_us']:6} us p99 {row['p99_us']:6} us", file=sys.stderr)
EOF
}

for size in 640x480 1920x1080; do
  local_run "$size" 30
done
for size in 640x480 1920x1080; do
  for compress in none lz4; do
    run "$size" 30 "$compress"
  done
done
for size in 640x480 1920x1080; do
  for compress in none lz4; do
    run "$size" 1000 "$compress"
  done
done
