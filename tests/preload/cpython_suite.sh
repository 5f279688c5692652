#!/usr/bin/env bash
# A peer's test suite: a selection of CPython's own regression tests
# (Debian's libpython3.11-testsuite) that stress the allocator, run with
# remalloc preloaded; the tests that fail are then run again without it. A
# test that fails only under remalloc fails this test; failures of both runs
# (the environment: no network, root, ...) are reported and ignored. (The
# run without remalloc is limited to the failed tests: the whole selection
# twice was the longest test of the suite.) Skips (exit 77) when the test
# suite is not installed.
#
# Arguments: $1 libremalloc.so, $2 (optional) the Python that matches the
# installed test suite (default: /usr/bin/python3.11).
source "$(dirname "$0")/common.sh" "$@"
PY=${2:-/usr/bin/python3.11}
if ! [ -x "$PY" ] || ! "$PY" -c 'import test.test_list, test.regrtest' 2>/dev/null; then
  echo "SKIP: CPython's test suite is not installed (apt-get install libpython3.11-testsuite)"
  exit 77
fi
# Heavy users of the allocator: containers, strings, bytes, pickling, regular
# expressions, the garbage collector, threads and subprocesses (fork/exec of
# a preloaded interpreter), mmap. About two minutes each run with -j2 on an
# idle two-core machine.
TESTS=(test_list test_tuple test_dict test_set test_deque test_collections
       test_bytes test_unicode test_string test_re test_json test_pickle test_array
       test_struct test_memoryview test_mmap test_gc test_weakref test_threading
       test_thread test_subprocess test_sort test_heapq test_itertools test_functools
       test_zlib test_hashlib test_codecs test_bigmem test_fork1 test_queue test_io)
# regrtest runs tests in worker processes that inherit LD_PRELOAD.
run_suite() {  # $1 output file; the rest: environment assignments
  local out=$1
  shift
  env "$@" "$PY" -m test -j2 --slowest "${TESTS[@]}" >"$out" 2>&1 || true
}
run_suite "$TMP/remalloc" LD_PRELOAD="$PRELOAD"
real=$(readlink -f "$LIB")
loaded=$(with_remalloc "$PY" -c "import sys; print(sys.argv[1] in open('/proc/self/maps').read())" "$real")
[ "$loaded" = True ] || fail "python did not load libremalloc.so (got '$loaded')"
# The failure sets: regrtest's summary ("N tests failed:" then indented
# names; crashed workers are counted there too). A run that printed no
# result line at all is a failure of its own.
failed() {  # $1 output file: prints the failed tests, one per line
  "$PY" - "$1" <<'PYEOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
if "== Tests result:" not in text:
    print(f"FAIL: no result summary in {sys.argv[1]}:\n" + text[-3000:], file=sys.stderr)
    sys.exit(1)
for m in re.finditer(r"^\d+ tests? (?:failed|crashed)[^:\n]*:\n((?:    .*\n)+)", text, re.M):
    print("\n".join(m.group(1).split()))
PYEOF
}
bad=$(failed "$TMP/remalloc") || fail "the run with remalloc printed no result"
if [ -z "$bad" ]; then
  echo "ok: all ${#TESTS[@]} CPython tests pass under remalloc"
  exit 0
fi
echo "failing under remalloc: $(echo $bad); running them without remalloc"
mapfile -t TESTS <<<"$bad"
run_suite "$TMP/plain"
"$PY" - "$TMP/plain" "$TMP/remalloc" <<'PYEOF'
import re, sys
def parse(path):
    text = open(path, errors="replace").read()
    if "== Tests result:" not in text:
        print(f"FAIL: no result summary in {path}:\n" + text[-3000:])
        sys.exit(1)
    bad = set()
    for m in re.finditer(r"^\d+ tests? (?:failed|crashed)[^:\n]*:\n((?:    .*\n)+)", text, re.M):
        bad.update(m.group(1).split())
    ok = len(re.findall(r"^\d+ tests? OK\.|^All \d+ tests OK\.", text, re.M))
    return bad, text
plain, _ = parse(sys.argv[1])
rem, text = parse(sys.argv[2])
only = sorted(rem - plain)
print(f"failures without remalloc: {sorted(plain) or 'none'}")
print(f"failures with remalloc:    {sorted(rem) or 'none'}")
if only:
    print(f"FAIL: failing only under remalloc: {only}\n" + text[-4000:])
    sys.exit(1)
print("ok: no CPython test fails only under remalloc")
PYEOF
