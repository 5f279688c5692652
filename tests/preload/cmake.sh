#!/usr/bin/env bash
# cmake configuring, building and running a tiny C project with remalloc
# preloaded into cmake (and, through the environment, everything it runs).
source "$(dirname "$0")/common.sh" "$@"
CMAKE=${2:-cmake}
mkdir -p "$TMP/src"
cat >"$TMP/src/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(tiny LANGUAGES C)
include(CheckIncludeFile)
include(CheckSymbolExists)
check_include_file(stdlib.h HAVE_STDLIB_H)
check_symbol_exists(reallocarray stdlib.h HAVE_REALLOCARRAY)
string(REPEAT "abc" 10000 big)
string(LENGTH "${big}" big_len)
set(items)
foreach(i RANGE 2000)
  list(APPEND items "item${i}")
endforeach()
list(LENGTH items n)
list(SORT items)
list(GET items 1234 some)
message(STATUS "tiny: big_len=${big_len} items=${n} some=${some} stdlib=${HAVE_STDLIB_H}")
configure_file(config.h.in config.h)
add_executable(tiny main.c)
target_include_directories(tiny PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
CM
printf '#cmakedefine HAVE_STDLIB_H 1\n#define ITEMS @n@\n' >"$TMP/src/config.h.in"
cat >"$TMP/src/main.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "config.h"
int main(void) { char* p = malloc(1000); printf("tiny %d %d\n", ITEMS, p != NULL); free(p); return 0; }
C
run_cmake() {  # run_cmake BUILD_DIR: configure + build + run, print the interesting output
  $RUN "$CMAKE" -S "$TMP/src" -B "$1" >"$1.log" 2>&1 || { cat "$1.log" >&2; return 1; }
  grep '^-- tiny:' "$1.log"
  grep -v '^//\|^#\|^$' "$1/config.h"
  $RUN "$CMAKE" --build "$1" >"$1.build.log" 2>&1 || { cat "$1.build.log" >&2; return 1; }
  "$1/tiny"
}
RUN="" run_cmake "$TMP/plain" >"$TMP/expected" || fail "cmake without remalloc failed"
RUN="with_remalloc" run_cmake "$TMP/preloaded" >"$TMP/actual" || fail "cmake with remalloc failed"
compare cmake "$TMP/expected" "$TMP/actual"
