/* A stand-in for remalloc 0.1's libremalloc.so.0, only to link against: the
 * same soname and the 0.1 header's functions, exported WITHOUT symbol
 * versions, as the library was before preload/exports.map named any. A
 * program linked with it has unversioned references to the remalloc_*
 * names, exactly like a binary built against 0.1; tests/abi runs such a
 * program with the new library in its place (its run path leads there,
 * never here). Every function aborts, so a run that loaded this file
 * instead fails loudly. */
#include <stdlib.h>
#include <unistd.h>

#include "remalloc_0_1.h"

static void stub(void) {
  static const char msg[] = "stub_0_1: the link-time stand-in of libremalloc.so.0 was loaded at run time\n";
  (void)!write(2, msg, sizeof msg - 1);
  abort();
}

void* remalloc_malloc(size_t size) { stub(); return 0; }
void* remalloc_calloc(size_t count, size_t size) { stub(); return 0; }
void* remalloc_realloc(void* p, size_t size) { stub(); return 0; }
void* remalloc_reallocarray(void* p, size_t count, size_t size) { stub(); return 0; }
void remalloc_free(void* p) { stub(); }
void remalloc_free_sized(void* p, size_t size) { stub(); }
void remalloc_free_aligned_sized(void* p, size_t alignment, size_t size) { stub(); }
int remalloc_posix_memalign(void** out, size_t alignment, size_t size) { stub(); return 0; }
void* remalloc_aligned_alloc(size_t alignment, size_t size) { stub(); return 0; }
void* remalloc_memalign(size_t alignment, size_t size) { stub(); return 0; }
void* remalloc_valloc(size_t size) { stub(); return 0; }
void* remalloc_pvalloc(size_t size) { stub(); return 0; }
size_t remalloc_usable_size(const void* p) { stub(); return 0; }
int remalloc_trim(size_t pad) { stub(); return 0; }
int remalloc_owns(const void* p) { stub(); return 0; }
void remalloc_stats_print(int fd) { stub(); }
size_t remalloc_stats_json(char* buf, size_t len) { stub(); return 0; }
void remalloc_stats_get(remalloc_stats_t* out) { stub(); }
long remalloc_option_get(const char* name) { stub(); return 0; }
int remalloc_option_set(const char* name, long value) { stub(); return 0; }
void remalloc_inject_mover_failure(const char* mover, int step, int count) { stub(); }
