#!/usr/bin/env bash
# The test command of the README: installs missing Debian packages, then
#  1. configures build/ (Release, tests on), builds with two jobs and runs
#     the whole ctest suite (tests/, and bench/'s entries);
#  2. configures build-checked/, the hardened checked build (cmake
#     -DREMALLOC_CHECKED=ON -DREMALLOC_SECURE=ON: every assertion, the
#     validators, poisoned free blocks, encoded links, shuffled slabs, guard
#     pages, sampled guarded allocations; no sanitizer suites, no
#     benchmarks) and runs the whole suite against that allocator.
# Exits non-zero when anything fails.
#
# Environment: BUILD_DIR (default build), CHECKED_DIR (default build-checked,
# empty to skip), JOBS (default 2), CTEST_ARGS (extra arguments for ctest,
# e.g. "-L api" or "-E tsan"), REMALLOC_TEST_SCALE (the one factor of the
# tests' heavy loops, default 1; the sanitizer tests multiply it by 0.25 or
# 0.1 themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
CHECKED_DIR=${CHECKED_DIR-build-checked}
JOBS=${JOBS:-2}
export REMALLOC_TEST_SCALE=${REMALLOC_TEST_SCALE:-1}

bash cmake/install-deps.sh
status=0
# Ninja for a new build folder (it keeps both cores busy across targets); a
# folder configured before keeps its generator.
generator() {
  if [ ! -f "$1/CMakeCache.txt" ] && command -v ninja >/dev/null; then echo "-GNinja"; fi
}
cmake -S . -B "$BUILD_DIR" $(generator "$BUILD_DIR") -DCMAKE_BUILD_TYPE=Release -DREMALLOC_BUILD_TESTS=ON
cmake --build "$BUILD_DIR" -j "$JOBS"
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" ${CTEST_ARGS:-} || status=1

if [ -n "$CHECKED_DIR" ]; then
  cmake -S . -B "$CHECKED_DIR" $(generator "$CHECKED_DIR") -DCMAKE_BUILD_TYPE=Release -DREMALLOC_BUILD_TESTS=ON \
    -DREMALLOC_CHECKED=ON -DREMALLOC_SECURE=ON -DREMALLOC_SANITIZER_TESTS=OFF -DREMALLOC_BUILD_BENCH=OFF
  cmake --build "$CHECKED_DIR" -j "$JOBS"
  # shellcheck disable=SC2086
  ctest --test-dir "$CHECKED_DIR" --output-on-failure -j "$JOBS" ${CTEST_ARGS:-} || status=1
fi
exit $status
