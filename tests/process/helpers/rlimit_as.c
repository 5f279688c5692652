/* Under RLIMIT_AS (argv[1] MiB, set before the first allocation), allocate
 * until NULL: the failure must be a clean NULL with ENOMEM, no crash; the
 * blocks already handed out stay intact; after freeing them, allocation
 * works again. Built with the prefixed API over the core objects
 * (TEST_PREFIXED=1) and with the standard names over libremalloc.so. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <remalloc/remalloc.h>

#if TEST_PREFIXED
#define A(name) remalloc_##name
#else
#define A(name) name
#endif

#define MiB ((size_t)1 << 20)
#define MAX_BLOCKS 400000

static void* blocks[MAX_BLOCKS];
static size_t sizes[MAX_BLOCKS];

static int fail(const char* what) {
  fprintf(stderr, "rlimit_as: %s (errno %d %s)\n", what, errno, strerror(errno));
  return 1;
}

static void mark(void* p, size_t n, size_t i) {
  unsigned char* b = p;
  b[0] = (unsigned char)i;
  b[n / 2] = (unsigned char)(i >> 8);
  b[n - 1] = (unsigned char)(i >> 16);
}
static int marked(const void* p, size_t n, size_t i) {
  const unsigned char* b = p;
  return b[0] == (unsigned char)i && b[n / 2] == (unsigned char)(i >> 8) && b[n - 1] == (unsigned char)(i >> 16);
}

/* Allocates blocks of `size` (0: mixed sizes) until NULL; returns bytes.
 * *clean tells whether it ended with a NULL + ENOMEM (or, when cap_ok, by
 * reaching the block table's capacity). */
static size_t exhaust(size_t size, size_t* count, int* clean, int cap_ok) {
  size_t total = 0;
  *clean = 0;
  while (*count < MAX_BLOCKS) {
    size_t n = size ? size : (size_t)((*count * 2654435761u) % (3 * MiB)) + 16;
    errno = 0;
    void* p = A(malloc)(n);
    if (!p) {
      *clean = errno == ENOMEM;
      if (!*clean) fail("malloc failed without ENOMEM");
      return total;
    }
    mark(p, n, *count);
    blocks[*count] = p;
    sizes[*count] = n;
    ++*count;
    total += n;
  }
  *clean = cap_ok;
  if (!cap_ok) fail("never ran out of memory");
  return total;
}

static int check_and_free(size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (!marked(blocks[i], sizes[i], i)) return fail("a block was damaged");
    A(free)(blocks[i]);
  }
  return 0;
}

/* Impossible requests (more than the limit) fail cleanly, and leave the
 * allocator able to serve the possible ones: small and 1 MiB blocks, then,
 * once those are freed, a block of a tenth of the limit. */
static int recover(size_t limit_mib) {
  size_t limit = limit_mib * MiB;
  for (int round = 0; round < 4; ++round) {
    size_t impossible[] = {limit * 4, limit * 2, limit, limit - MiB};
    for (size_t k = 0; k < sizeof impossible / sizeof impossible[0]; ++k) {
      errno = 0;
      void* p = A(malloc)(impossible[k]);
      if (p) return fail("a request above the limit succeeded");
      if (errno != ENOMEM) return fail("a request above the limit: errno not ENOMEM");
    }
    void* small = A(malloc)(4096);
    if (!small) return fail("malloc(4096) failed after impossible requests");
    void* mib = A(malloc)(MiB);
    if (!mib) return fail("malloc(1 MiB) failed after impossible requests");
    memset(small, 1, 4096);
    memset(mib, 2, MiB);
    A(free)(small);
    A(free)(mib);
    void* tenth = A(malloc)(limit / 10);
    if (!tenth) return fail("malloc(limit / 10) failed after impossible requests");
    memset(tenth, 3, limit / 10);
    A(free)(tenth);
  }
  printf("rlimit_as recover ok\n");
  return 0;
}

int main(int argc, char** argv) {
  size_t limit_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 512;
  struct rlimit rl = {limit_mib * MiB, limit_mib * MiB};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return fail("setrlimit");
  if (argc > 2 && strcmp(argv[2], "recover") == 0) return recover(limit_mib);

  for (int round = 0; round < 3; ++round) {
    size_t count = 0;
    int clean = 0;
    /* Large blocks first, then fill the rest with small ones. */
    size_t big = exhaust(8 * MiB, &count, &clean, 0);
    if (!clean) return 1;
    size_t mixed = exhaust(0, &count, &clean, 0);
    if (!clean) return 1;
    size_t small = exhaust(64, &count, &clean, 1);
    if (!clean) return 1;
    printf("round %d: %zu MiB in 8 MiB blocks, %zu MiB mixed, %zu KiB small, %zu blocks\n", round, big / MiB,
           mixed / MiB, small / 1024, count);
    if (big + mixed + small < limit_mib * MiB / 4)
      return fail("less than a quarter of the address-space limit was usable");
    /* A failing realloc keeps its block. */
    if (count > 0) {
      size_t i = count / 2;
      errno = 0;
      void* q = A(realloc)(blocks[i], (size_t)limit_mib * MiB * 2);
      if (q) return fail("realloc beyond the limit succeeded");
      if (errno != ENOMEM) return fail("realloc beyond the limit: errno not ENOMEM");
      if (!marked(blocks[i], sizes[i], i)) return fail("failed realloc damaged its block");
    }
    if (check_and_free(count)) return 1;
    /* Everything came back: one big block of a third of the limit fits. */
    void* p = A(malloc)(limit_mib * MiB / 3);
    if (!p) return fail("allocation after freeing everything failed");
    memset(p, 7, limit_mib * MiB / 3);
    A(free)(p);
  }
  printf("rlimit_as ok\n");
  return 0;
}
