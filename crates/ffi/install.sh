#!/usr/bin/env bash
# Builds libframebus (the C ABI) and installs it under PREFIX:
#   PREFIX/lib/libframebus.so.1 (+ libframebus.so), PREFIX/lib/libframebus.a,
#   PREFIX/include/framebus.h, PREFIX/include/framebus.hpp,
#   PREFIX/lib/pkgconfig/framebus.pc,
#   PREFIX/lib/cmake/framebus/framebusConfig.cmake (+ ...ConfigVersion.cmake).
# Then `PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs framebus`
# and CMake's `find_package(framebus)` (with CMAKE_PREFIX_PATH=PREFIX) work.
#
# usage: crates/ffi/install.sh PREFIX [--debug]
#   --debug   install the debug build (faster to build; what the tests use)
# CARGO_TARGET_DIR is honoured. Nothing outside PREFIX is written, but for
# the dynamic loader's cache: run as root with a prefix whose lib/ the
# loader searches (/usr/local on Debian and most distributions), it runs
# `ldconfig` so programs find libframebus.so.1 without an rpath.
set -euo pipefail

usage() { echo "usage: $0 PREFIX [--debug]" >&2; exit 2; }
[ $# -ge 1 ] || usage
prefix=$1
shift
profile=release
for arg in "$@"; do
  case $arg in
    --debug) profile=debug ;;
    *) usage ;;
  esac
done
case $prefix in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case $target in
  /*) ;;
  *) target="$root/$target" ;;
esac

# Versions come from the sources: the crate's version and the ABI major,
# which is also the shared library's soname.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n1)
abi_major=$(sed -n 's/^pub const FRAMEBUS_ABI_VERSION_MAJOR: u32 = \([0-9]*\);/\1/p' "$here/src/lib.rs")
[ -n "$version" ] && [ -n "$abi_major" ] || { echo "cannot read the version or ABI major" >&2; exit 1; }

if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release -p framebus-ffi)
else
  (cd "$root" && cargo build -p framebus-ffi)
fi
out="$target/$profile"

install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/framebus" "$prefix/include"
install -m 0755 "$out/libframebus.so" "$prefix/lib/libframebus.so.$abi_major"
ln -sf "libframebus.so.$abi_major" "$prefix/lib/libframebus.so"
install -m 0644 "$out/libframebus.a" "$prefix/lib/libframebus.a"
install -m 0644 "$here/include/framebus.h" "$here/include/framebus.hpp" "$prefix/include/"

subst() {
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" -e "s|@ABI_MAJOR@|$abi_major|g" "$1" > "$2"
  chmod 0644 "$2"
}
subst "$here/framebus.pc.in" "$prefix/lib/pkgconfig/framebus.pc"
subst "$here/cmake/framebusConfig.cmake.in" "$prefix/lib/cmake/framebus/framebusConfig.cmake"
subst "$here/cmake/framebusConfigVersion.cmake.in" "$prefix/lib/cmake/framebus/framebusConfigVersion.cmake"

echo "installed framebus $version (ABI $abi_major, $profile build) under $prefix"

# The loader finds a library in a directory of /etc/ld.so.conf only through
# its cache: refresh it when that directory is one of them.
searched=""
if command -v ldconfig >/dev/null; then
  # (Read whole, not piped into `grep -q`: an early exit would fail the
  # pipeline under pipefail.)
  searched=$(ldconfig -v -N 2>/dev/null || true)
fi
if [ "$(id -u)" = 0 ] && printf '%s\n' "$searched" | grep "^$prefix/lib:" >/dev/null; then
  ldconfig
  echo "ran ldconfig: programs find libframebus.so.$abi_major in $prefix/lib"
else
  echo "to run programs linked against it: link with -Wl,-rpath,$prefix/lib," \
    "set LD_LIBRARY_PATH=$prefix/lib, or (as root) add $prefix/lib to /etc/ld.so.conf.d and run ldconfig"
fi
