/* FROZEN: remalloc 0.1's public header, byte for byte below this comment, as
 * include/remalloc/remalloc.h was when the library first shipped its
 * statistics (commit 37c404c, "Core allocator: ..."). remalloc_stats_t
 * here is 23 size_t fields, 184 bytes: the layout that programs built
 * against 0.1 pass to remalloc_stats_get, which therefore writes exactly
 * those 184 bytes forever (src/api/stats.cpp). Later headers of the 0.1
 * series appended fields (264, then 280 bytes) and kept these 23 as their
 * prefix, until moves_multi_vma was inserted before vma_estimate; 0.2 moved
 * it to the end, so 0.2's struct begins with this one.
 *
 * Used only by tests/abi/consumer_0_1.c and stub_0_1.c. Never edit it:
 * it stands for binaries that already exist. */
/* remalloc — a malloc replacement whose page heap grows, shrinks and moves
 * large blocks by remapping pages instead of copying bytes.
 *
 * This header is the prefixed API. It works whether or not the library also
 * overrides the process's malloc (libremalloc.so does when preloaded or
 * linked; libremalloc.a exports only these prefixed names plus, when linked
 * with REMALLOC_OVERRIDE, the standard ones).
 *
 * Semantics follow glibc: remalloc_malloc(0) returns a unique pointer,
 * remalloc_realloc(p, 0) frees p and returns NULL, overflow and impossible
 * sizes return NULL with errno = ENOMEM, bad alignments return EINVAL.
 * Every pointer is at least 16-byte aligned. */
#ifndef REMALLOC_REMALLOC_H
#define REMALLOC_REMALLOC_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REMALLOC_VERSION_MAJOR 0
#define REMALLOC_VERSION_MINOR 1
#define REMALLOC_VERSION_PATCH 0

#if defined(__GNUC__)
#define REMALLOC_API __attribute__((visibility("default")))
#else
#define REMALLOC_API
#endif

REMALLOC_API void* remalloc_malloc(size_t size);
REMALLOC_API void* remalloc_calloc(size_t count, size_t size);
REMALLOC_API void* remalloc_realloc(void* p, size_t size);
REMALLOC_API void* remalloc_reallocarray(void* p, size_t count, size_t size);
REMALLOC_API void remalloc_free(void* p);
REMALLOC_API void remalloc_free_sized(void* p, size_t size);
REMALLOC_API void remalloc_free_aligned_sized(void* p, size_t alignment, size_t size);
REMALLOC_API int remalloc_posix_memalign(void** out, size_t alignment, size_t size);
REMALLOC_API void* remalloc_aligned_alloc(size_t alignment, size_t size);
REMALLOC_API void* remalloc_memalign(size_t alignment, size_t size);
REMALLOC_API void* remalloc_valloc(size_t size);
REMALLOC_API void* remalloc_pvalloc(size_t size);
REMALLOC_API size_t remalloc_usable_size(const void* p);
/* Returns 1 when memory was given back to the system, 0 otherwise. */
REMALLOC_API int remalloc_trim(size_t pad);

/* Is p a live block start that remalloc gave out? (never aborts) */
REMALLOC_API int remalloc_owns(const void* p);

/* Statistics. remalloc_stats_print writes the human-readable report to fd
 * (2 = stderr). remalloc_stats_json writes a JSON object into buf (at most
 * len bytes, always NUL-terminated) and returns the length it needed. */
REMALLOC_API void remalloc_stats_print(int fd);
REMALLOC_API size_t remalloc_stats_json(char* buf, size_t len);

typedef struct remalloc_stats_s {
  size_t allocated;        /* bytes in live blocks (usable sizes) */
  size_t peak_allocated;   /* high-water mark of allocated */
  size_t mapped;           /* address space reserved by arenas */
  size_t resident;         /* RSS of the process, from /proc/self/statm */
  size_t arenas;           /* number of arenas */
  size_t large_live;       /* live large blocks */
  size_t small_live;       /* live small blocks (approximate, per heap) */
  size_t purged_bytes;     /* bytes given back with madvise/mmap */
  /* relocation engine */
  size_t realloc_inplace;  /* large reallocs that needed no move */
  size_t grow_inplace;     /* growths that claimed following free pages */
  size_t shrink_inplace;   /* shrinks that returned tail pages */
  size_t moves_mremap;     /* moves by mremap(DONTUNMAP|FIXED) */
  size_t moves_uffd;       /* moves by UFFDIO_MOVE */
  size_t moves_copy;       /* moves by memcpy then purge */
  size_t bytes_moved;      /* bytes relocated by remapping pages */
  size_t bytes_copied;     /* bytes relocated by memcpy */
  size_t fallback_budget;  /* mremap skipped: VMA budget full */
  size_t fallback_error;   /* a mover failed and a slower one finished */
  size_t fallback_fork;    /* uffd refused pages shared with a fork child */
  size_t fallback_small;   /* copied because below the move threshold */
  size_t vma_estimate;     /* estimated VMAs of the process */
  size_t vma_budget;       /* VMAs remalloc allows itself to cause */
  size_t vma_heals;        /* free runs re-mapped to merge VMAs back */
} remalloc_stats_t;

REMALLOC_API void remalloc_stats_get(remalloc_stats_t* out);

/* Options: name without the REMALLOC_ prefix, case-insensitive. Returns the
 * effective value (reading the environment on first use), or -1 for an
 * unknown name. remalloc_option_set returns 0, or -1 for an unknown name. */
REMALLOC_API long remalloc_option_get(const char* name);
REMALLOC_API int remalloc_option_set(const char* name, long value);

/* Test hook: make the next mover call of the given kind ("mremap", "uffd",
 * "copy") fail at step `step` (0 = first, 1 = middle, 2 = last) `count`
 * times. Used by the failure-injection tests; harmless otherwise. */
REMALLOC_API void remalloc_inject_mover_failure(const char* mover, int step, int count);

#ifdef __cplusplus
}
#endif

#endif /* REMALLOC_REMALLOC_H */
