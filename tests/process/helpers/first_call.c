/* A fresh process whose very first allocator call is argv[1]; then it checks
 * that ordinary allocation works. Built twice: with the prefixed API over
 * the core objects (TEST_PREFIXED=1; nothing else in the process calls
 * remalloc, so the call really is the first), and with the standard names
 * linked against libremalloc.so (TEST_PREFIXED=0).
 * Exit status 0 on success; prints what failed otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <remalloc/remalloc.h>

#if TEST_PREFIXED
#define A(name) remalloc_##name
#define USABLE remalloc_usable_size
#define TRIM remalloc_trim
#else
#define A(name) name
#define USABLE malloc_usable_size
#define TRIM malloc_trim
#endif

static int fail(const char* what) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "first_call: %s (errno %d)\n", what, errno);
  (void)!write(2, buf, (size_t)n);
  return 1;
}

/* Sizes the compiler cannot see through. */
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_half = SIZE_MAX / 2;

static int first(const char* op) {
  if (!strcmp(op, "free_null")) {
    A(free)(NULL);
  } else if (!strcmp(op, "free_sized_null")) {
    remalloc_free_sized(NULL, 0);
  } else if (!strcmp(op, "realloc_null_zero")) {
    void* p = A(realloc)(NULL, 0);
    if (!p) return fail("realloc(NULL, 0) returned NULL");
    A(free)(p);
  } else if (!strcmp(op, "usable_null")) {
    if (USABLE(NULL) != 0) return fail("usable_size(NULL) != 0");
  } else if (!strcmp(op, "owns_stack")) {
    int x = 0;
    if (remalloc_owns(&x) != 0) return fail("owns(stack) != 0");
  } else if (!strcmp(op, "stats_get")) {
    remalloc_stats_t s;
    memset(&s, 0xff, sizeof s);
    remalloc_stats_get(&s);
    if (s.allocated > ((size_t)1 << 40)) return fail("stats_get returned garbage");
  } else if (!strcmp(op, "stats_json")) {
    char buf[8192];
    size_t n = remalloc_stats_json(buf, sizeof buf);
    if (n == 0 || buf[0] != '{') return fail("stats_json");
  } else if (!strcmp(op, "stats_print")) {
    remalloc_stats_print(1);
  } else if (!strcmp(op, "option_get")) {
    if (remalloc_option_get("verbose") < 0) return fail("option_get(verbose)");
  } else if (!strcmp(op, "option_set")) {
    if (remalloc_option_set("stats", 0) != 0) return fail("option_set(stats)");
  } else if (!strcmp(op, "trim")) {
    int r = TRIM(0);
    if (r != 0 && r != 1) return fail("trim");
  } else if (!strcmp(op, "malloc_huge")) {
    errno = 0;
    if (A(malloc)(v_size_max) != NULL || errno != ENOMEM) return fail("malloc(SIZE_MAX)");
  } else if (!strcmp(op, "calloc_overflow")) {
    errno = 0;
    if (A(calloc)(v_half, 3) != NULL || errno != ENOMEM) return fail("calloc overflow");
  } else if (!strcmp(op, "posix_memalign_einval")) {
    void* p = NULL;
    if (A(posix_memalign)(&p, 3, 10) != EINVAL) return fail("posix_memalign(3)");
  } else if (!strcmp(op, "aligned_large")) {
    void* p = A(aligned_alloc)((size_t)1 << 21, (size_t)5 << 20);
    if (!p || ((uintptr_t)p & (((size_t)1 << 21) - 1))) return fail("aligned_alloc(2 MiB)");
    memset(p, 1, (size_t)5 << 20);
    A(free)(p);
  } else if (!strcmp(op, "malloc_large")) {
    void* p = A(malloc)((size_t)64 << 20);
    if (!p) return fail("malloc(64 MiB)");
    memset(p, 1, (size_t)64 << 20);
    A(free)(p);
  } else if (!strcmp(op, "print_options")) {
    printf("mover=%ld purge_delay=%ld stats=%ld arena_size=%ld abort_on_invalid=%ld\n",
           remalloc_option_get("mover"), remalloc_option_get("purge_delay"), remalloc_option_get("stats"),
           remalloc_option_get("arena_size"), remalloc_option_get("abort_on_invalid"));
  } else if (!strcmp(op, "none")) {
  } else {
    return fail("unknown op");
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return fail("usage: first_call OP");
  if (first(argv[1])) return 1;
  /* Ordinary use afterwards. */
  void* ps[64];
  for (int i = 0; i < 64; ++i) {
    size_t n = (size_t)(i * i * 37 + 1);
    ps[i] = A(malloc)(n);
    if (!ps[i]) return fail("malloc after first call");
    if (remalloc_owns(ps[i]) != 1) return fail("owns after first call");
    memset(ps[i], i, n);
  }
  for (int i = 0; i < 64; ++i) {
    size_t n = (size_t)(i * i * 37 + 1);
    unsigned char* b = ps[i];
    if (b[0] != (unsigned char)i || b[n - 1] != (unsigned char)i) return fail("block damaged");
    ps[i] = A(realloc)(ps[i], n * 3 + (size_t)(i << 16));
    if (!ps[i]) return fail("realloc after first call");
    b = ps[i];
    if (b[0] != (unsigned char)i || b[n - 1] != (unsigned char)i) return fail("realloc lost contents");
  }
  for (int i = 0; i < 64; ++i) A(free)(ps[i]);
  printf("first_call %s ok\n", argv[1]);
  return 0;
}
