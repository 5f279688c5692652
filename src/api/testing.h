/* remalloc's test hooks: failure injection for the test suites. Not part of
 * the public API (include/remalloc/remalloc.h), not installed, and not
 * covered by its stability promise: they may change or go at any release.
 *
 * libremalloc.so exports them (the override tests call them through it)
 * under the symbol version REMALLOC_PRIVATE, as glibc does with
 * GLIBC_PRIVATE; the core objects and libremalloc.a define them as well.
 * Tests include this header as "api/testing.h". C and C++. */
#ifndef REMALLOC_API_TESTING_H
#define REMALLOC_API_TESTING_H

#include "remalloc/remalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make the next mover call of the given kind ("mremap", "uffd", "copy")
 * fail at step `step` (0 = first, 1 = middle, 2 = last) `count` times;
 * count 0 cancels. Harmless otherwise. Step 3, for "uffd" only: the move
 * of the first half succeeds and the call then reports that nothing moved
 * (EEXIST), as Linux 6.18 was seen to do; other movers take it as step 2. */
REMALLOC_API void remalloc_inject_mover_failure(const char* mover, int step, int count);

/* The next `count` reservations of address space (new arenas, their
 * metadata, pools of heap descriptors) fail with ENOMEM, as if mmap had
 * refused them; 0 cancels. Harmless otherwise. */
REMALLOC_API void remalloc_inject_mmap_failure(int count);

#ifdef __cplusplus
}
#endif

#endif /* REMALLOC_API_TESTING_H */
