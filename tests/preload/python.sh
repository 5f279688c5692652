#!/usr/bin/env bash
# python3 building and freeing large dicts, lists and bytearrays: same
# checksum with and without remalloc preloaded.
source "$(dirname "$0")/common.sh" "$@"
PY=${2:-python3}
WORKLOAD="$(dirname "$0")/python_workload.py"
"$PY" "$WORKLOAD" >"$TMP/expected"
with_remalloc "$PY" "$WORKLOAD" >"$TMP/actual"
compare python "$TMP/expected" "$TMP/actual"
loaded=$(with_remalloc "$PY" -c "print('libremalloc' in open('/proc/self/maps').read())")
[ "$loaded" = True ] || fail "python3 did not load libremalloc.so (got '$loaded')"
# The interpreter's exit with statistics on.
REMALLOC_STATS=1 with_remalloc "$PY" -c "x = [bytearray(1 << 20) for _ in range(50)]; print(len(x))" \
  >"$TMP/out" 2>"$TMP/err"
[ "$(cat "$TMP/out")" = 50 ] || fail "python3 with REMALLOC_STATS=1 printed '$(cat "$TMP/out")'"
[ -s "$TMP/err" ] || fail "REMALLOC_STATS=1 printed nothing at python3's exit"
echo "ok: python3 loads remalloc and prints statistics at exit"
