#!/usr/bin/env bash
# The benchmark in one command: installs what is missing (Debian), builds
# remalloc and the benchmarks into build/, and compares remalloc
# (build/libremalloc.so) with glibc, jemalloc, mimalloc and tcmalloc in the
# short mode (about two minutes on 2 cores). Arguments go to bench/compare,
# e.g. `bench/compare.sh --full`, `bench/compare.sh --only realloc --micro`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash cmake/install-deps.sh
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release; then
  # The benchmarks do not need the test suite; do not let it stop them.
  echo "compare.sh: configuring failed; trying again without the test suite" >&2
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DREMALLOC_BUILD_TESTS=OFF
fi
if ! cmake --build build -j2; then
  # Still compare the others when the allocator itself does not build.
  echo "compare.sh: the full build failed; building the benchmarks alone" >&2
  cmake --build build -j2 --target bench
fi

mode=--short
for a in "$@"; do
  case "$a" in --tiny|--short|--full) mode= ;; esac
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3  # Debian's, with matplotlib
exec "$python" bench/compare $mode --bin-dir build/bench --remalloc build/libremalloc.so "$@"
