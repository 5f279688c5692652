# Shared helpers of the preload tests. Usage in a test script:
#   source "$(dirname "$0")/common.sh" "$@"    # $1 = path of libremalloc.so
set -euo pipefail
export LC_ALL=C
LIB=${1:?usage: $0 /path/to/libremalloc.so}
[ -f "$LIB" ] || { echo "no such library: $LIB" >&2; exit 2; }
# Anything the test environment preloads (a sanitizer, ...) stays, after us.
PRELOAD="$LIB${LD_PRELOAD:+:$LD_PRELOAD}"
unset REMALLOC_STATS REMALLOC_VERBOSE || true
TMP=$(mktemp -d "${TMPDIR:-/tmp}/remalloc-preload.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# with_remalloc CMD...: runs CMD with libremalloc.so preloaded.
with_remalloc() { LD_PRELOAD="$PRELOAD" "$@"; }

# compare NAME EXPECTED_FILE ACTUAL_FILE: fails with a diff when they differ.
compare() {
  if ! cmp -s "$2" "$3"; then
    echo "FAIL: $1: output with remalloc differs from the output without it" >&2
    diff -u "$2" "$3" | head -40 >&2 || true
    exit 1
  fi
  echo "ok: $1 ($(wc -c <"$3") bytes of output identical)"
}

# assert_loaded CMD...: the preloaded process maps libremalloc.
assert_loaded() {
  local maps
  maps=$(with_remalloc cat /proc/self/maps)
  grep -q libremalloc <<<"$maps" || fail "libremalloc.so not mapped in a preloaded process"
}
