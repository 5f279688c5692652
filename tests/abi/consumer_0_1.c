/* A program built against remalloc 0.1's header (the frozen copy beside
 * this file, never the current one), run against today's library: the
 * binary that crashed when remalloc_stats_get wrote the library's grown
 * struct over its stack.
 *
 * Its remalloc_stats_t (184 bytes) sits between two canary zones in a
 * struct on the stack. After remalloc_stats_get:
 *   - no byte outside the caller's struct has changed;
 *   - every one of its 23 fields was written;
 *   - each field is the figure of that name: the same as in the JSON
 *     report taken just before (no allocation in between), except the two
 *     that may change by themselves (resident, vma_estimate), which must
 *     only be plausible; and the blocks this program holds are counted.
 *
 * Built three ways (tests/abi/CMakeLists.txt): linked against the new
 * libremalloc.so (a reference to remalloc_stats_get@REMALLOC_0.1), linked
 * against a stand-in of the unversioned 0.1 library and run with the new
 * one (unversioned references, as every binary built before versions
 * existed has), and linked with libremalloc.a.
 *
 * usage: consumer_0_1 [LIBRARY]  LIBRARY: the file that must provide
 * remalloc_stats_get (checked with dladdr), for the shared variants. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remalloc_0_1.h"

#define CANARY 0xC5
#define ZONE 512 /* bytes of canary after the struct: more than it will ever grow by */

struct frame {
  unsigned char before[64];
  remalloc_stats_t st;
  unsigned char after[ZONE];
};

static int failures;
__attribute__((format(printf, 1, 2))) static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("consumer_0_1: FAIL: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  failures++;
}

#define FIELD(f) {#f, offsetof(remalloc_stats_t, f)}
static const struct {
  const char* name;
  size_t offset;
} kFields[] = {
    FIELD(allocated),       FIELD(peak_allocated),  FIELD(mapped),         FIELD(resident),
    FIELD(arenas),          FIELD(large_live),      FIELD(small_live),     FIELD(purged_bytes),
    FIELD(realloc_inplace), FIELD(grow_inplace),    FIELD(shrink_inplace), FIELD(moves_mremap),
    FIELD(moves_uffd),      FIELD(moves_copy),      FIELD(bytes_moved),    FIELD(bytes_copied),
    FIELD(fallback_budget), FIELD(fallback_error),  FIELD(fallback_fork),  FIELD(fallback_small),
    FIELD(vma_estimate),    FIELD(vma_budget),      FIELD(vma_heals),
};
#define NFIELDS (sizeof kFields / sizeof kFields[0])

static size_t field(const remalloc_stats_t* st, size_t i) {
  size_t v;
  memcpy(&v, (const char*)st + kFields[i].offset, sizeof v);
  return v;
}

/* The value of "name": in the JSON object, or SIZE_MAX when absent. */
static size_t json_value(const char* json, const char* name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char* p = strstr(json, key);
  if (!p) return SIZE_MAX;
  return (size_t)strtoull(p + strlen(key), NULL, 10);
}

int main(int argc, char** argv) {
  _Static_assert(sizeof(remalloc_stats_t) == 184, "the frozen 0.1 struct is 184 bytes");

  /* Blocks this program holds while it asks: one large, some small. */
  enum { kLarge = 4 << 20, kSmall = 64, kSmallCount = 100 };
  char* large = remalloc_malloc(kLarge);
  char* small[kSmallCount];
  if (!large) {
    fail("remalloc_malloc(%d) returned NULL", kLarge);
    return 1;
  }
  memset(large, 1, kLarge);
  for (int i = 0; i < kSmallCount; i++) {
    small[i] = remalloc_malloc(kSmall);
    if (!small[i]) {
      fail("remalloc_malloc(%d) returned NULL", kSmall);
      return 1;
    }
    memset(small[i], 2, kSmall);
  }
  const size_t held = kLarge + (size_t)kSmall * kSmallCount;

  /* The JSON report, then the struct, with no allocation in between (this
     program's malloc is remalloc's, so no stdio here either). */
  static char json[1 << 16];
  size_t need = remalloc_stats_json(json, sizeof json);
  struct frame f;
  memset(&f, CANARY, sizeof f);
  __asm__ volatile("" : : "r"(&f) : "memory");
  remalloc_stats_get(&f.st);
  __asm__ volatile("" : : "r"(&f) : "memory");

  if (need >= sizeof json) fail("the JSON report needs %zu bytes, more than %zu", need, sizeof json);

  /* 1. Nothing outside the caller's struct was written. */
  const volatile unsigned char* b = f.before;
  for (size_t i = 0; i < sizeof f.before; i++) {
    if (b[i] != CANARY) {
      fail("remalloc_stats_get wrote %zu bytes before the caller's struct", sizeof f.before - i);
      break;
    }
  }
  const volatile unsigned char* a = f.after;
  size_t last = 0;
  for (size_t i = 0; i < sizeof f.after; i++)
    if (a[i] != CANARY) last = i + 1;
  if (last)
    fail("remalloc_stats_get wrote past the caller's %zu-byte struct: bytes up to %zu after it changed "
         "(the library wrote %zu bytes or more, as if the struct were its own)",
         sizeof f.st, last, sizeof f.st + last);

  /* 2. Every field was written (a canary-filled field reads 0xc5c5...). */
  size_t pattern;
  memset(&pattern, CANARY, sizeof pattern);
  for (size_t i = 0; i < NFIELDS; i++)
    if (field(&f.st, i) == pattern) fail("field %s was not written", kFields[i].name);

  /* 3. Each field holds the figure of its name. */
  for (size_t i = 0; i < NFIELDS; i++) {
    const char* name = kFields[i].name;
    size_t want = json_value(json, name), got = field(&f.st, i);
    if (want == SIZE_MAX) {
      fail("the JSON report has no \"%s\"", name);
      continue;
    }
    if (strcmp(name, "resident") == 0 || strcmp(name, "vma_estimate") == 0) continue;
    if (got != want)
      fail("field %s (offset %zu) is %zu, but the JSON report says %zu: the struct's layout is not 0.1's", name,
           kFields[i].offset, got, want);
  }
  const remalloc_stats_t* s = &f.st;
  if (s->allocated < held) fail("allocated = %zu, less than the %zu bytes this program holds", s->allocated, held);
  if (s->peak_allocated < kLarge) fail("peak_allocated = %zu < %d", s->peak_allocated, kLarge);
  if (s->mapped < s->allocated) fail("mapped = %zu < allocated = %zu", s->mapped, s->allocated);
  if (s->arenas < 1) fail("arenas = %zu", s->arenas);
  if (s->large_live < 1) fail("large_live = %zu, but a 4 MiB block is live", s->large_live);
  if (s->small_live < kSmallCount) fail("small_live = %zu < %d", s->small_live, kSmallCount);
  if (s->resident < (size_t)kLarge) fail("resident = %zu, less than the 4 MiB block just written", s->resident);
  if (s->vma_estimate < 1 || s->vma_budget < 1)
    fail("vma_estimate = %zu, vma_budget = %zu", s->vma_estimate, s->vma_budget);

  /* 4. The library that answered is the one given. */
  if (argc > 1) {
    Dl_info info;
    void* fn = dlsym(RTLD_DEFAULT, "remalloc_stats_get");
    char want[PATH_MAX], got[PATH_MAX];
    if (!fn || !dladdr(fn, &info) || !info.dli_fname) {
      fail("remalloc_stats_get: no library found by dlsym/dladdr");
    } else if (!realpath(argv[1], want) || !realpath(info.dli_fname, got) || strcmp(want, got) != 0) {
      fail("remalloc_stats_get came from %s, not from %s", info.dli_fname, argv[1]);
    } else {
      printf("remalloc_stats_get from %s\n", got);
    }
  }

  for (int i = 0; i < kSmallCount; i++) remalloc_free(small[i]);
  remalloc_free(large);
  if (failures) return 1;
  printf("ok: the 0.1 struct (%zu bytes) filled, canaries intact; allocated %zu, arenas %zu, large_live %zu, "
         "vma %zu / %zu\n",
         sizeof f.st, s->allocated, s->arenas, s->large_live, s->vma_estimate, s->vma_budget);
  return 0;
}
