#!/usr/bin/env bash
# Builds the framebus Python package and runs its tests.
#
#   bash python/ci.sh            (from the repository root, as CI does)
#
# 1. a fresh virtualenv in a temp dir with maturin, numpy and pytest;
# 2. the Rust `framebus` binary the tests run as producer / Rust consumer
#    (`cargo build --release` at the root; skipped if FRAMEBUS_BIN is set);
# 3. the abi3 wheel (`maturin build --release`, Cargo target dir python/target
#    so it never waits on the root build's lock), installed into the venv;
# 4. pytest on python/tests, run from the temp dir so the installed wheel,
#    not the source tree, is what gets imported.
# Exits non-zero on any failure, including "no tests ran" (pytest exit 5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_DIR="$ROOT/python"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/framebus-python-ci.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS

step() { printf '\n== python/ci.sh: %s (%ds)\n' "$1" "$((SECONDS - started))"; }

step "virtualenv ($("$PYTHON" --version 2>&1)) in $WORK"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" numpy pytest

if [[ -n "${FRAMEBUS_BIN:-}" ]]; then
    step "framebus binary: FRAMEBUS_BIN=$FRAMEBUS_BIN"
    [[ -x "$FRAMEBUS_BIN" ]] || { echo "FRAMEBUS_BIN=$FRAMEBUS_BIN is not an executable" >&2; exit 1; }
else
    step "framebus binary: cargo build --release"
    (cd "$ROOT" && cargo build --release --bin framebus)
    export FRAMEBUS_BIN="$ROOT/target/release/framebus"
fi

step "wheel: maturin build --release"
export CARGO_TARGET_DIR="$PY_DIR/target"
"$WORK/venv/bin/maturin" build --release --locked \
    --manifest-path "$PY_DIR/Cargo.toml" \
    --interpreter "$VPY" \
    --out "$WORK/wheels"
"$VPY" -m pip install --quiet --disable-pip-version-check "$WORK"/wheels/framebus-*.whl

step "pytest python/tests"
cd "$WORK"
set +e
"$VPY" -m pytest "$PY_DIR/tests" -p no:cacheprovider ${PYTEST_ARGS:-}
code=$?
set -e
if [[ $code -eq 5 ]]; then
    echo "python/ci.sh: pytest collected no tests: failing" >&2
    exit 1
fi
step "done, pytest exit $code"
exit "$code"
