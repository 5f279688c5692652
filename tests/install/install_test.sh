#!/usr/bin/env bash
# Installs the build into a temporary prefix and uses it the three ways a
# user would: a CMake project with find_package(remalloc), a pkg-config
# build, and the remalloc-run launcher. Also checks that the installed tree
# is relocatable and that DESTDIR staging works.
# usage: install_test.sh BUILD_DIR CMAKE C_COMPILER PYTHON
set -euo pipefail
BUILD=${1:?build dir}
CMAKE=${2:-cmake}
CC=${3:-cc}
PY=${4:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/remalloc-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
unset LD_PRELOAD REMALLOC_STATS REMALLOC_VERBOSE || true
fail() { echo "FAIL: $*" >&2; exit 1; }
PREFIX="$TMP/prefix"

"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log" >&2; fail "cmake --install"; }

# --- the files ---
so=$(find "$PREFIX" -name 'libremalloc.so' | head -1)
[ -n "$so" ] || fail "libremalloc.so not installed"
LIBDIR=$(dirname "$so")
[ -L "$so" ] || fail "libremalloc.so is not a link to the versioned library"
ls "$LIBDIR"/libremalloc.so.[0-9]* >/dev/null 2>&1 || fail "no versioned libremalloc.so.N"
soname=$(readelf -dW "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] && [ -e "$LIBDIR/$soname" ] || fail "soname link $soname missing"
[ -f "$LIBDIR/libremalloc.a" ] || fail "libremalloc.a not installed"
[ -f "$PREFIX/include/remalloc/remalloc.h" ] || fail "header not installed"
cmp -s "$PREFIX/include/remalloc/remalloc.h" "$HERE/../../include/remalloc/remalloc.h" || fail "installed header differs"
for f in remallocConfig.cmake remallocConfigVersion.cmake remallocTargets.cmake; do
  [ -f "$LIBDIR/cmake/remalloc/$f" ] || fail "$f not installed in $LIBDIR/cmake/remalloc"
done
[ -f "$LIBDIR/pkgconfig/remalloc.pc" ] || fail "remalloc.pc not installed"
[ -x "$PREFIX/bin/remalloc-run" ] || fail "bin/remalloc-run not installed or not executable"
echo "ok: installed files ($(cd "$PREFIX" && find . -type f -o -type l | sort | tr '\n' ' '))"

# --- CMake consumer ---
"$CMAKE" -S "$HERE/consumer" -B "$TMP/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_COMPILER="$CC" \
  >"$TMP/consumer.log" 2>&1 || { cat "$TMP/consumer.log" >&2; fail "consumer configure"; }
grep 'consumer:' "$TMP/consumer.log"
"$CMAKE" --build "$TMP/consumer" >"$TMP/consumer-build.log" 2>&1 || { cat "$TMP/consumer-build.log" >&2; fail "consumer build"; }
out=$("$TMP/consumer/use_shared") || fail "use_shared failed: $out"
echo "use_shared: $out"
grep -q 'owns(malloc(10)) = 1' <<<"$out" || fail "malloc of a program linked to remalloc::remalloc is not remalloc"
readelf -dW "$TMP/consumer/use_shared" | grep -q "NEEDED.*libremalloc" || fail "use_shared does not need libremalloc"
# Built against the installed header: the sized statistics call, versioned.
readelf --dyn-syms -W "$TMP/consumer/use_shared" | grep -q "remalloc_stats_get_sized@REMALLOC_0.2" ||
  fail "use_shared does not call remalloc_stats_get_sized@REMALLOC_0.2"
out=$("$TMP/consumer/use_static") || fail "use_static failed: $out"
echo "use_static: $out"
readelf -dW "$TMP/consumer/use_static" | grep -q "NEEDED.*libremalloc" && fail "use_static needs libremalloc.so"
# A version the package cannot satisfy is refused.
mkdir -p "$TMP/badver"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(b LANGUAGES NONE)\nfind_package(remalloc 99 CONFIG REQUIRED)\n' \
  >"$TMP/badver/CMakeLists.txt"
if "$CMAKE" -S "$TMP/badver" -B "$TMP/badver/b" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null 2>&1; then
  fail "find_package(remalloc 99) succeeded"
fi
echo "ok: CMake consumer"

# --- pkg-config consumer ---
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
ver=$(pkg-config --modversion remalloc) || fail "pkg-config does not find remalloc"
flags=$(pkg-config --cflags --libs remalloc)
echo "pkg-config: remalloc $ver: $flags"
# shellcheck disable=SC2086
"$CC" -o "$TMP/pc_consumer" "$HERE/consumer/main.c" $flags || fail "pkg-config consumer does not compile"
out=$(LD_LIBRARY_PATH="$LIBDIR" "$TMP/pc_consumer") || fail "pkg-config consumer failed: $out"
grep -q 'owns(malloc(10)) = 1' <<<"$out" || fail "pkg-config consumer: $out"
echo "ok: pkg-config consumer"

# --- remalloc-run ---
RUN="$PREFIX/bin/remalloc-run"
maps_check="import sys; print('libremalloc' in open('/proc/self/maps').read())"
out=$("$RUN" "$PY" -c "$maps_check") || fail "remalloc-run python3 failed"
[ "$out" = True ] || fail "remalloc-run python3: libremalloc not loaded ($out)"
"$RUN" --stats "$PY" -c "x = [bytearray(100000) for _ in range(100)]" 2>"$TMP/stats" || fail "remalloc-run --stats failed"
[ -s "$TMP/stats" ] || fail "remalloc-run --stats printed no statistics"
"$RUN" --verbose --stats true 2>"$TMP/verbose" || fail "remalloc-run --verbose failed"
grep -qi verbose "$TMP/verbose" || fail "remalloc-run --verbose printed no options"
out=$(LD_PRELOAD=libm.so.6 "$RUN" sh -c 'echo "$LD_PRELOAD"')
case "$out" in
  */libremalloc.so*:libm.so.6) ;;
  *) fail "remalloc-run must prepend to LD_PRELOAD, got '$out'" ;;
esac
if "$RUN" >/dev/null 2>&1; then fail "remalloc-run without a command succeeded"; fi
status=0; "$RUN" sh -c 'exit 7' || status=$?
[ "$status" = 7 ] || fail "remalloc-run must pass the exit status on (got $status)"
# --profile DIR: heap profiling on, a profile at exit in DIR named after the
# command, the viewer command printed, the exit status passed on.
status=0
"$RUN" --profile "$TMP/prof" "$PY" -c "import sys; x = [bytearray(1 << 20) for _ in range(64)]; sys.exit(3)" \
  2>"$TMP/prof.err" || status=$?
[ "$status" = 3 ] || fail "remalloc-run --profile must pass the exit status on (got $status): $(cat "$TMP/prof.err")"
last=$(ls -t "$TMP/prof"/python3.*.heap 2>/dev/null | head -n 1)
[ -n "$last" ] || fail "remalloc-run --profile wrote no DIR/python3.PID.SEQ.heap: $(cat "$TMP/prof.err")"
head -n 1 "$last" | grep -q '^heap profile: .* @ heap_v2/' || fail "remalloc-run --profile: $last is no heap profile"
grep -q "^  jeprof --text /.* $last\$" "$TMP/prof.err" \
  || fail "remalloc-run --profile did not print the viewer command for $last: $(cat "$TMP/prof.err")"
ln -s "$RUN" "$TMP/run-link"
out=$("$TMP/run-link" "$PY" -c "$maps_check") || fail "remalloc-run through a symlink failed"
[ "$out" = True ] || fail "remalloc-run through a symlink: not loaded"
echo "ok: remalloc-run"

# --- relocated prefix: everything still finds everything ---
mv "$PREFIX" "$TMP/moved"
out=$("$TMP/moved/bin/remalloc-run" "$PY" -c "$maps_check") || fail "moved remalloc-run failed"
[ "$out" = True ] || fail "moved remalloc-run does not load the library next to it"
MLIBDIR=${LIBDIR/#$PREFIX/$TMP/moved}
PKG_CONFIG_PATH="$MLIBDIR/pkgconfig" pkg-config --cflags remalloc | grep -q "$TMP/moved" \
  || fail "remalloc.pc is not relocatable: $(PKG_CONFIG_PATH="$MLIBDIR/pkgconfig" pkg-config --cflags remalloc)"
rm -rf "$TMP/consumer2"
"$CMAKE" -S "$HERE/consumer" -B "$TMP/consumer2" -DCMAKE_PREFIX_PATH="$TMP/moved" -DCMAKE_C_COMPILER="$CC" \
  >"$TMP/consumer2.log" 2>&1 || { cat "$TMP/consumer2.log" >&2; fail "consumer of a moved prefix"; }
"$CMAKE" --build "$TMP/consumer2" >/dev/null 2>&1 || fail "consumer build against a moved prefix"
"$TMP/consumer2/use_shared" >/dev/null || fail "consumer against a moved prefix failed"
echo "ok: relocatable"

# --- DESTDIR staging ---
DESTDIR="$TMP/stage" "$CMAKE" --install "$BUILD" --prefix /opt/remalloc-test >/dev/null 2>&1 || fail "DESTDIR install"
[ -x "$TMP/stage/opt/remalloc-test/bin/remalloc-run" ] || fail "DESTDIR install did not stage remalloc-run"
[ -e /opt/remalloc-test ] && fail "DESTDIR install wrote outside DESTDIR"
echo "ok: DESTDIR"
echo "install test passed"
