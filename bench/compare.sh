#!/usr/bin/env bash
# The benchmark in one command: installs what is missing (Debian), builds
# what the comparison needs -- libremalloc.so and the benchmark programs,
# not the test suites -- into build-compare/, and compares remalloc with
# glibc, jemalloc, mimalloc and tcmalloc in the short mode (about three
# minutes on 2 cores). Arguments go to bench/compare, e.g.
# `bench/compare.sh --full`, `bench/compare.sh --only clients`.
# REMALLOC_BENCH_BUILD_DIR overrides the build folder.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${REMALLOC_BENCH_BUILD_DIR:-build-compare}

bash cmake/install-deps.sh
# Tests and sanitizer suites off: the comparison needs none of them.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DREMALLOC_BUILD_TESTS=OFF \
      -DREMALLOC_SANITIZER_TESTS=OFF -DREMALLOC_BUILD_BENCH=ON
if ! cmake --build "$build" -j2 --target remalloc bench; then
  # Still compare the others when the allocator itself does not build.
  echo "compare.sh: building libremalloc.so failed; building the benchmarks alone" >&2
  cmake --build "$build" -j2 --target bench
fi

mode=--short
for a in "$@"; do
  case "$a" in --tiny|--short|--full) mode= ;; esac
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3  # Debian's, with matplotlib
exec "$python" bench/compare $mode --bin-dir "$build/bench" --remalloc "$build/libremalloc.so" "$@"
