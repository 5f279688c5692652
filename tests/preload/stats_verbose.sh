#!/usr/bin/env bash
# REMALLOC_STATS=1 prints statistics at exit, REMALLOC_VERBOSE=1 prints the
# options; with neither, a preloaded program prints nothing extra.
source "$(dirname "$0")/common.sh" "$@"
TRUE=$(type -P true)  # the program, not the shell builtin

with_remalloc "$TRUE" >"$TMP/out" 2>"$TMP/err" || fail "preloaded true failed"
[ ! -s "$TMP/out" ] && [ ! -s "$TMP/err" ] || fail "remalloc printed something without being asked: $(cat "$TMP/err")"

REMALLOC_STATS=1 with_remalloc "$TRUE" >"$TMP/out" 2>"$TMP/err" || fail "REMALLOC_STATS=1 true failed"
[ ! -s "$TMP/out" ] || fail "statistics went to stdout"
[ -s "$TMP/err" ] || fail "REMALLOC_STATS=1 printed no statistics at exit"
grep -qi mremap "$TMP/err" || fail "statistics lack the relocation engine's mremap moves: $(cat "$TMP/err")"
grep -qi peak "$TMP/err" || fail "statistics lack the peak: $(cat "$TMP/err")"
echo "ok: REMALLOC_STATS=1 ($(wc -l <"$TMP/err") lines)"

# A directory nobody else touches (listing / would race with other tests
# creating files in /tmp); the outputs go elsewhere, so that neither the
# directory nor its parent changes between the two listings.
mkdir -p "$TMP/dir/sub" "$TMP/o"
for i in $(seq 1 300); do echo "$i" >"$TMP/dir/file-$i"; done
ls -laR --time-style=+%s "$TMP/dir" >"$TMP/o/expected"
REMALLOC_VERBOSE=1 with_remalloc ls -laR --time-style=+%s "$TMP/dir" >"$TMP/o/actual" 2>"$TMP/o/err" ||
  fail "REMALLOC_VERBOSE=1 ls failed"
compare "ls with REMALLOC_VERBOSE=1 (stdout)" "$TMP/o/expected" "$TMP/o/actual"
[ -s "$TMP/o/err" ] || fail "REMALLOC_VERBOSE=1 printed no options"
grep -qi verbose "$TMP/o/err" || fail "REMALLOC_VERBOSE=1 output lacks the option 'verbose': $(cat "$TMP/o/err")"
grep -qi stats "$TMP/o/err" || fail "REMALLOC_VERBOSE=1 output lacks the option 'stats': $(cat "$TMP/o/err")"
echo "ok: REMALLOC_VERBOSE=1 ($(wc -l <"$TMP/o/err") lines)"

# Both, in a pipeline of preloaded programs that exit early (SIGPIPE).
(REMALLOC_STATS=1 with_remalloc seq 1 1000000 2>/dev/null || true) | head -3 >"$TMP/out"
[ "$(tr '\n' ' ' <"$TMP/out")" = "1 2 3 " ] || fail "seq | head gave '$(cat "$TMP/out")'"
echo "ok: early-exiting pipeline"
