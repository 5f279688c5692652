/* A shared library whose constructor allocates. Linked into ctor_main as a
 * NEEDED library, its constructor runs before the constructors of a
 * preloaded libremalloc.so (dependencies are initialised first), so its
 * allocations are remalloc's very first ones. CTORLIB_NAME makes a second
 * copy (loaded with dlopen) distinguishable. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef CTORLIB_FN
#define CTORLIB_FN ctorlib_check
#endif

#define N 6
static void* blocks[N];
static size_t sizes[N] = {1, 100, 5000, 100000, (size_t)3 << 20, (size_t)17 << 20};
static char* dup;

__attribute__((constructor)) static void ctorlib_init(void) {
  for (int i = 0; i < N; ++i) {
    blocks[i] = malloc(sizes[i]);
    if (blocks[i]) memset(blocks[i], 'A' + i, sizes[i]);
  }
  blocks[2] = realloc(blocks[2], 50000);
  if (blocks[2]) memset(blocks[2], 'A' + 2, 50000);
  sizes[2] = 50000;
  dup = strdup("constructed");
  void* tmp = calloc(1000, 10);
  free(tmp);
}

__attribute__((destructor)) static void ctorlib_fini(void) {
  for (int i = 0; i < N; ++i) free(blocks[i]);
  free(dup);
}

/* Returns 0 when every block survived and (if owns is given) belongs to the
 * allocator. */
__attribute__((visibility("default"))) int CTORLIB_FN(int (*owns)(const void*)) {
  for (int i = 0; i < N; ++i) {
    const unsigned char* b = blocks[i];
    if (!b) return 10 + i;
    for (size_t k = 0; k < sizes[i]; k += 4093)
      if (b[k] != 'A' + i) return 20 + i;
    if (b[sizes[i] - 1] != 'A' + i) return 30 + i;
    if (owns && owns(b) != 1) return 40 + i;
  }
  if (!dup || strcmp(dup, "constructed")) return 50;
  if (owns && owns(dup) != 1) return 51;
  return 0;
}
