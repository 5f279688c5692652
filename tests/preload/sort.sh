#!/usr/bin/env bash
# A shell pipeline of sort | uniq -c | sort -n over a few hundred thousand
# deterministic lines, every stage preloaded.
source "$(dirname "$0")/common.sh" "$@"
awk 'BEGIN { x = 12345; for (i = 0; i < 400000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
       printf "%d line-%s %s\n", x % 5000, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1, (x % 13) + 1), (x % 7 == 0 ? sprintf("%0300d", x) : "") } }' \
  >"$TMP/input"
[ "$(wc -l <"$TMP/input")" -eq 400000 ] || fail "input generation"
sort "$TMP/input" | uniq -c | sort -n -S 64M >"$TMP/expected"
with_remalloc sort "$TMP/input" | with_remalloc uniq -c | with_remalloc sort -n -S 64M >"$TMP/actual"
compare "sort | uniq -c | sort -n" "$TMP/expected" "$TMP/actual"
# Multithreaded sort with a big buffer: large blocks, many threads.
sort --parallel=4 -S 200M -k2,2 -k1,1n "$TMP/input" >"$TMP/expected2"
with_remalloc sort --parallel=4 -S 200M -k2,2 -k1,1n "$TMP/input" >"$TMP/actual2"
compare "sort --parallel=4" "$TMP/expected2" "$TMP/actual2"
assert_loaded
