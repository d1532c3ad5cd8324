#!/usr/bin/env bash
# Mutation testing of the byte contract: cargo-mutants on `shm-layout`,
# failing when fewer than MUTANTS_THRESHOLD % (default 95) of the viable
# mutants are caught by `cargo test -p shm-layout`. Timeouts (a mutant that
# makes the tests hang) count as caught; unviable mutants (that do not
# build) are not counted. Mutants judged equivalent are excluded in
# .cargo/mutants.toml, each with its reason in doc/TESTING.md.
#
# CI runs the files that carry the contract and the protocol (below): every
# file of the crate that has mutants but the fake camera's pattern.rs (169
# mutants, 275 s of mutant time at -j 1). Run `MUTANTS_FILES=all
# .ci/mutants.sh` for the whole crate.
set -euo pipefail
cd "$(dirname "$0")/.."
threshold=${MUTANTS_THRESHOLD:-95}
out=${MUTANTS_OUT:-target/mutants-ci}
jobs=${MUTANTS_JOBS:-2}
if ! command -v cargo-mutants >/dev/null; then
  cargo install cargo-mutants --locked --version 27.1.0
fi
files=(
  crates/shm-layout/src/view.rs
  crates/shm-layout/src/header.rs
  crates/shm-layout/src/tables.rs
  crates/shm-layout/src/layout.rs
  crates/shm-layout/src/entry.rs
  # The trigger messages (untrusted bytes from a FIFO), the BGR slot's
  # seqlock, the object and FIFO names: 88 mutants, about 1.5 min more
  # (doc/TESTING.md, "Figures").
  crates/shm-layout/src/trigger.rs
  crates/shm-layout/src/seqlock.rs
  crates/shm-layout/src/naming.rs
  # The unpinned copy of the newest frame (snapshot of a full bus): 10
  # viable mutants, a few seconds.
  crates/shm-layout/src/unpinned.rs
  # The pin protocol (pin words, reclaim, the writer's slot pick): 45
  # mutants (43 viable), 111 s of mutant time at -j 1 on the loaded
  # machine, about 1 min at -j 2.
  crates/shm-layout/src/pin.rs
  # The rate window whose figures go into the tables (41 mutants, 40
  # viable; one of them loops for ever and costs the 60 s timeout) and the
  # pixel formats the header records (33 mutants): 328 s of mutant time at
  # -j 1 on the loaded machine, about 3 min at -j 2.
  crates/shm-layout/src/window.rs
  crates/shm-layout/src/format.rs
)
args=()
if [ "${MUTANTS_FILES:-}" != all ]; then
  for f in "${files[@]}"; do args+=(--file "$f"); done
fi
start=$SECONDS
set +e
# A separate target directory per scratch copy: cargo-mutants' own.
env -u CARGO_TARGET_DIR cargo mutants -p shm-layout --profile mutants -j "$jobs" \
  --timeout 60 -o "$out" "${args[@]}"
rc=$?
set -e
# 0: all caught; 2: some missed; 3: some timed out. Anything else (1 usage,
# 4 the unmutated tree fails its tests) is an error of its own.
case $rc in 0 | 2 | 3) ;; *) echo "cargo mutants failed (exit $rc)" >&2; exit 1 ;; esac
count() { if [ -f "$out/mutants.out/$1.txt" ]; then wc -l < "$out/mutants.out/$1.txt"; else echo 0; fi; }
caught=$(count caught); missed=$(count missed); timeouts=$(count timeout); unviable=$(count unviable)
viable=$((caught + missed + timeouts))
echo "shm-layout mutants: $caught caught, $missed missed, $timeouts timeouts, $unviable unviable ($((SECONDS - start)) s)"
if [ "$missed" -gt 0 ]; then
  echo "missed:"; sed 's/^/  /' "$out/mutants.out/missed.txt"
fi
if [ $(((caught + timeouts) * 100)) -lt $((threshold * viable)) ]; then
  echo "under the threshold: $((caught + timeouts)) of $viable viable mutants caught, need $threshold %" >&2
  exit 1
fi
echo "$((caught + timeouts)) of $viable viable mutants caught (threshold $threshold %)"
