#!/usr/bin/env bash
# Installs the Debian packages that building, testing and benchmarking
# remalloc need, when any is missing. Safe to run again; needs root (or sudo)
# only when something is missing.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libgtest-dev libbenchmark-dev
      libjemalloc-dev libjemalloc2 libmimalloc-dev libmimalloc2.0
      libgoogle-perftools-dev libtcmalloc-minimal4 gnuplot-nox
      python3 python3-matplotlib git coreutils
      redis-server redis-tools sqlite3 perl lua5.4
      libpython3.11-testsuite google-perftools)
# libpython3.11-testsuite: CPython's regression tests (preload.cpython_suite).
# google-perftools: google-pprof, the second viewer of remalloc's heap
# profiles in override.HeapProfile.* (jeprof, the first, comes with
# libjemalloc-dev).
# The line before: the programs of bench/compare's clients group. On a machine
# with systemd, Debian's redis-server package also enables a redis service
# on port 6379; the benchmark never uses it (it starts its own server on a
# free port of 127.0.0.1).
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "remalloc: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
