/* The statistics call of the current header: remalloc_stats_get_sized
 * writes only as many bytes as the caller says it has, and the
 * remalloc_stats_get macro passes the caller's sizeof. Also compiled as
 * C++ (sized_cxx.cpp) and linked with libremalloc.a (tests/abi).
 *
 * Each call writes into a buffer between canary zones:
 *   - size n <= sizeof(remalloc_stats_t): bytes [0, n) are the snapshot's,
 *     byte n and every one after it are untouched;
 *   - n > sizeof: the struct, then zeros up to n (the fields a library
 *     older than the caller's header does not know), then untouched;
 *   - it returns the library's sizeof(remalloc_stats_t); NULL only asks;
 *   - the 0.1 entry point, called by name, writes exactly 0.1's 184 bytes;
 *   - the macro fills the whole current struct and nothing past it. */
#include <remalloc/remalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#define CANARY 0xC5
#define BEFORE 64
#define ROOM 1024 /* bytes of the buffer after its 64 leading canaries */

/* The 0.1 struct is the current one's prefix (tests/abi/remalloc_0_1.h). */
STATIC_ASSERT(offsetof(remalloc_stats_t, vma_heals) == 22 * sizeof(size_t), "0.1's prefix moved");
STATIC_ASSERT(sizeof(remalloc_stats_t) + 256 <= ROOM, "ROOM too small for the struct");

static int failures;

static unsigned char buf[BEFORE + ROOM];

static void reset(void) { memset(buf, CANARY, sizeof buf); }
static remalloc_stats_t* slot(void) { return (remalloc_stats_t*)(void*)(buf + BEFORE); }

/* Checks the buffer after a call that should have written `written` bytes
   of the struct, then zeros up to `zeros`, and nothing else. */
static void check(const char* what, size_t written, size_t zeros) {
  __asm__ volatile("" : : "r"(buf) : "memory");
  const volatile unsigned char* b = buf;
  for (size_t i = 0; i < BEFORE; i++) {
    if (b[i] != CANARY) {
      fprintf(stderr, "sized: FAIL: %s wrote %zu bytes before the struct\n", what, (size_t)BEFORE - i);
      failures++;
      break;
    }
  }
  const volatile unsigned char* s = buf + BEFORE;
  /* The struct's whole fields were written: none reads as canaries. */
  size_t pattern;
  memset(&pattern, CANARY, sizeof pattern);
  for (size_t off = 0; off + sizeof(size_t) <= written; off += sizeof(size_t)) {
    size_t v;
    memcpy(&v, (const void*)(s + off), sizeof v);
    if (v == pattern) {
      fprintf(stderr, "sized: FAIL: %s left the field at offset %zu unwritten\n", what, off);
      failures++;
    }
  }
  for (size_t i = written; i < zeros; i++) {
    if (s[i] != 0) {
      fprintf(stderr, "sized: FAIL: %s: byte %zu (past the library's struct, within the caller's) is %#x, not 0\n",
              what, i, s[i]);
      failures++;
      break;
    }
  }
  for (size_t i = zeros; i < ROOM; i++) {
    if (s[i] != CANARY) {
      fprintf(stderr, "sized: FAIL: %s wrote byte %zu, past the %zu bytes it was given\n", what, i, zeros);
      failures++;
      break;
    }
  }
}

int main(void) {
  const size_t full = sizeof(remalloc_stats_t);
  void* p = malloc(1 << 20); /* something to count */
  if (!p) return 1;
  memset(p, 1, 1 << 20);

  size_t known = remalloc_stats_get_sized(NULL, 0);
  if (known != full) {
    fprintf(stderr, "sized: FAIL: the library's struct is %zu bytes, this header's %zu\n", known, full);
    failures++;
  }

  /* Callers with every size from nothing to more than the struct. */
  const size_t sizes[] = {0, 1, 7, 8, 9, 100, 184, full - 9, full - 8, full - 1, full, full + 1, full + 8, full + 200};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    char what[64];
    snprintf(what, sizeof what, "remalloc_stats_get_sized(p, %zu)", n);
    reset();
    size_t r = remalloc_stats_get_sized(slot(), n);
    if (r != full) {
      fprintf(stderr, "sized: FAIL: %s returned %zu, not %zu\n", what, r, full);
      failures++;
    }
    check(what, n < full ? n : full, n);
  }

  /* A snapshot is consistent with itself: the blocks held are counted. */
  reset();
  remalloc_stats_get(slot());
  check("remalloc_stats_get (the macro)", full, full);
  const remalloc_stats_t* st = slot();
  if (st->allocated < (1 << 20) || st->large_live < 1 || st->arenas < 1 || st->mapped < st->allocated) {
    fprintf(stderr, "sized: FAIL: implausible figures: allocated %zu, large_live %zu, arenas %zu, mapped %zu\n",
            st->allocated, st->large_live, st->arenas, st->mapped);
    failures++;
  }

  /* The 0.1 entry point by name: 0.1's 184 bytes, whatever the struct. */
  reset();
  (remalloc_stats_get)(slot());
  check("the 0.1 entry point remalloc_stats_get", 184, 184);

  /* A struct declared the ordinary way, on the stack. */
  struct {
    remalloc_stats_t st;
    unsigned char after[64];
  } local;
  memset(&local, CANARY, sizeof local);
  remalloc_stats_get(&local.st);
  __asm__ volatile("" : : "r"(&local) : "memory");
  for (size_t i = 0; i < sizeof local.after; i++) {
    if (((volatile unsigned char*)local.after)[i] != CANARY) {
      fprintf(stderr, "sized: FAIL: remalloc_stats_get(&st) wrote past st\n");
      failures++;
      break;
    }
  }

  free(p);
  if (failures) return 1;
  printf("ok: remalloc_stats_get_sized writes what each caller has room for (struct %zu bytes)\n", full);
  return 0;
}
