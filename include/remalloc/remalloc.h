/* remalloc — a malloc replacement whose page heap grows, shrinks and moves
 * large blocks by remapping pages instead of copying bytes.
 *
 * This header is the prefixed API. It works whether or not the library also
 * overrides the process's malloc: libremalloc.so and libremalloc.a both
 * export the standard names (malloc, free, operator new, ...) as well as
 * these prefixed ones, so linking either one replaces the process's
 * allocator.
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
#define REMALLOC_VERSION_MINOR 2
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

/* Re-reads the memory cgroup's limit (also read at start-up) and returns
 * the limit in force in bytes, 0 for none. */
REMALLOC_API size_t remalloc_refresh_limits(void);

/* Does p start a block in remalloc's heap? 1 for a live large block and for
 * any block boundary of a slab in use (small blocks are not tracked one by
 * one, so a freed small block whose slab is still in use also counts), 0
 * for everything else, including freed large blocks. Never aborts. */
REMALLOC_API int remalloc_owns(const void* p);

/* Statistics. remalloc_stats_print writes the human-readable report to fd
 * (2 = stderr). remalloc_stats_json writes a JSON object into buf (at most
 * len bytes, always NUL-terminated) and returns the length it needed. */
REMALLOC_API void remalloc_stats_print(int fd);
REMALLOC_API size_t remalloc_stats_json(char* buf, size_t len);

/* The relocation engine's counters: one list (field name, label of the text
 * report, meaning), from which the text report and the JSON object are
 * generated, in this order. Each is also a field of remalloc_stats_t, where
 * the order is the ABI's (below): a counter added here is appended at the
 * end of the struct, not next to its kin. */
#define REMALLOC_RELOC_COUNTERS(X)                                                        \
  X(realloc_inplace, "realloc stayed in place", "large reallocs that needed no move")    \
  X(grow_inplace, "grown in place", "growths that claimed following free pages")         \
  X(shrink_inplace, "shrunk in place", "shrinks that returned tail pages")               \
  X(moves_mremap, "moved by mremap", "moves by mremap(DONTUNMAP|FIXED)")                 \
  X(moves_uffd, "moved by UFFDIO_MOVE", "moves by UFFDIO_MOVE")                          \
  X(moves_copy, "moved by copying", "moves by memcpy then purge")                        \
  X(bytes_moved, "bytes moved", "bytes relocated by remapping pages")                    \
  X(bytes_copied, "bytes copied", "bytes relocated by memcpy")                           \
  X(fallback_budget, "fallbacks: VMA budget", "mremap skipped: VMA budget full")         \
  X(fallback_error, "fallbacks: mover failed", "a mover failed and a slower one finished") \
  X(fallback_fork, "fallbacks: fork", "uffd refused pages shared with a fork child")     \
  X(fallback_small, "fallbacks: small", "copied because below the move threshold")     \
  X(moves_multi_vma, "mremap moves of several VMAs", "sources of several VMAs, moved one VMA per call")

/* The statistics, as one struct.
 *
 * ABI rule: this struct only ever grows at its end. Fields are appended,
 * never inserted, removed, reordered or resized, and every field is a
 * size_t. The first 23 fields (allocated .. vma_heals, 184 bytes) are
 * remalloc 0.1's struct, byte for byte; the fields after them are marked
 * with the version that appended them.
 *
 * remalloc_stats_get_sized(out, size) writes min(size, the library's
 * sizeof(remalloc_stats_t)) bytes of it, zeroes the rest of `size` when the
 * caller's struct is larger than the library's (a program built against a
 * newer header than the library it runs with), and returns the library's
 * size; out == NULL only returns the size. remalloc_stats_get(out) is a
 * macro for remalloc_stats_get_sized(out, sizeof *out), so a program
 * always passes the size of the struct it was compiled with, and a newer
 * library never writes past it.
 *
 * The function remalloc_stats_get, which programs built against the 0.1
 * header call (it was a function there), writes exactly the 184 bytes of
 * 0.1's struct, forever: it cannot know a caller's size. A program that
 * calls it by name rather than through the macro, e.g. through a function
 * pointer or (remalloc_stats_get)(out), gets those 23 fields and the rest
 * of its struct left as it was.
 *
 * Symbol versions (libremalloc.so.0): the names of 0.1 are REMALLOC_0.1,
 * remalloc_stats_get_sized is REMALLOC_0.2. */
typedef struct remalloc_stats_s {
  size_t allocated;        /* bytes in live blocks (usable sizes; large blocks
                              kept in a thread's reuse cache count as live) */
  size_t peak_allocated;   /* high-water mark of the bytes held for blocks
                              (slabs plus large blocks) */
  size_t mapped;           /* address space reserved by arenas */
  size_t resident;         /* RSS of the process, from /proc/self/statm */
  size_t arenas;           /* number of arenas */
  size_t large_live;       /* live large blocks */
  size_t small_live;       /* live small blocks (approximate, per heap) */
  size_t purged_bytes;     /* bytes given back with madvise/mmap */
  /* relocation engine (REMALLOC_RELOC_COUNTERS gives their meaning) */
  size_t realloc_inplace;
  size_t grow_inplace;
  size_t shrink_inplace;
  size_t moves_mremap;
  size_t moves_uffd;
  size_t moves_copy;
  size_t bytes_moved;
  size_t bytes_copied;
  size_t fallback_budget;
  size_t fallback_error;
  size_t fallback_fork;
  size_t fallback_small;
  size_t vma_estimate;     /* estimated VMAs of the process */
  size_t vma_budget;       /* VMAs remalloc allows itself to cause */
  size_t vma_heals;        /* free runs re-mapped to merge VMAs back */
  /* --- the end of 0.1's struct (184 bytes); appended since, in 0.2: --- */
  /* Where resident memory goes (approximate: large blocks and slabs count
     whole, touched or not). */
  size_t slab_slack;       /* bytes of slabs not in live small blocks */
  size_t free_unpurged;    /* free pages not given back yet (dirty) */
  size_t metadata;         /* resident bytes of remalloc's own metadata */
  size_t dirty_cap;        /* free_unpurged above this is purged at once */
  /* The background purger thread (REMALLOC_BACKGROUND=1). */
  size_t bg_running;       /* 1 while it runs */
  size_t bg_purged_bytes;  /* bytes it gave back */
  size_t bg_heals;         /* split runs it re-mapped */
  size_t bg_wakeups;       /* times it woke up */
  /* The memory limit (cgroup v2 memory.max/memory.high, v1
     memory.limit_in_bytes, or REMALLOC_MEMORY_LIMIT); 0 when none. */
  size_t memory_limit;
  size_t memory_headroom;  /* memory_limit minus resident, 0 when none */
  /* The secure build's sampled guarded allocations (REMALLOC_GUARD_SAMPLE);
     0 in other builds. */
  size_t guarded_sampled;  /* small blocks ever placed against a guard page */
  size_t guarded_live;     /* of which not freed yet (counted in small_live
                              and allocated as well) */
  size_t moves_multi_vma;  /* relocation engine: sources of several VMAs,
                              moved one VMA per call */
  /* VMAs counted, not estimated (0.2): */
  size_t vma_kernel;       /* the kernel's count: lines of /proc/self/maps
                              when the statistics were taken */
  size_t vma_moved_blocks; /* live large blocks whose pages arrived by
                              mremap: each holds VMAs of its own until freed */
  size_t vma_split_runs;   /* free runs whose VMAs moves split, waiting for
                              the decay to heal them */
  /* Transparent huge pages (0.2; REMALLOC_HUGEPAGE): */
  size_t thp_mode;         /* the system's THP mode: 0 unknown, 1 always,
                              2 madvise, 3 never */
  size_t huge_blocks;      /* live large blocks advised MADV_HUGEPAGE */
  size_t huge_advised;     /* bytes of their whole 2 MiB granules, advised */
  size_t huge_backed;      /* bytes of remalloc's arenas on huge pages now
                              (AnonHugePages in /proc/self/smaps) */
  size_t large_bytes;      /* bytes held for large blocks (the share of them
                              on huge pages is huge_backed / large_bytes) */
  /* Append new fields here. */
} remalloc_stats_t;

REMALLOC_API size_t remalloc_stats_get_sized(remalloc_stats_t* out, size_t size);
/* The 0.1 entry point (184 bytes, see above); call it through the macro. */
REMALLOC_API void remalloc_stats_get(remalloc_stats_t* out);
#define remalloc_stats_get(out) ((void)remalloc_stats_get_sized((out), sizeof *(out)))

/* Options: name without the REMALLOC_ prefix, case-insensitive. Returns the
 * effective value (reading the environment on first use), or -1 for an
 * unknown name. remalloc_option_set returns 0, or -1 for an unknown name or
 * a value outside the option's range (the option then keeps its value;
 * REMALLOC_VERBOSE=1 says so on stderr). */
REMALLOC_API long remalloc_option_get(const char* name);
REMALLOC_API int remalloc_option_set(const char* name, long value);

/* Checks the allocator's structures: the page heap (free runs, bins, purge
 * lists, arenas, the byte accounting) and the calling thread's slabs. On the
 * first inconsistency it reports what and where on stderr and aborts;
 * otherwise it returns 0. The checked build (cmake -DREMALLOC_CHECKED=ON)
 * also runs it by itself every few dozen page-heap operations. */
REMALLOC_API int remalloc_validate(void);

/* Heap profiling (REMALLOC_PROF=1, or remalloc_option_set("prof", 1); the
 * README's "Heap profiling"). Writes the heap profile of the sampled
 * allocations (gperftools' text format, heap_v2, which jeprof and pprof
 * read) to `path`, or, when path is NULL, to PREFIX.PID.SEQ.heap (PREFIX:
 * REMALLOC_PROF_PREFIX, "remalloc" by default). Returns 0, or -1 with errno
 * set. Since 0.2. */
REMALLOC_API int remalloc_prof_dump(const char* path);

#ifdef __cplusplus
}
#endif

#endif /* REMALLOC_REMALLOC_H */
