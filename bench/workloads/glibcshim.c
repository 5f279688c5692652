/* glibcshim: a preloadable library that sends every allocation to glibc's
 * own malloc.
 *
 * Some programs link an allocator of their own: Debian's redis-server has
 * libjemalloc.so.2 in its NEEDED entries, so running it with nothing
 * preloaded measures jemalloc, not glibc. Preloading this shim gives the
 * "glibc" row of such a program glibc's malloc, by forwarding to the entry
 * points glibc exports for that purpose (__libc_malloc & co.).
 * malloc_usable_size comes from libc.so.6 itself (looked up at load time),
 * as glibc exports no __libc_ name for it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void* __libc_malloc(size_t);
extern void __libc_free(void*);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void* __libc_valloc(size_t);
extern void* __libc_pvalloc(size_t);

#define EXPORT __attribute__((visibility("default")))

static size_t (*glibc_usable_size)(void*);

__attribute__((constructor)) static void shim_init(void) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (libc) glibc_usable_size = (size_t (*)(void*))dlsym(libc, "malloc_usable_size");
}

EXPORT void* malloc(size_t n) { return __libc_malloc(n); }
EXPORT void free(void* p) { __libc_free(p); }
EXPORT void cfree(void* p) { __libc_free(p); }
EXPORT void* calloc(size_t n, size_t s) { return __libc_calloc(n, s); }
EXPORT void* realloc(void* p, size_t n) { return __libc_realloc(p, n); }
EXPORT void* reallocarray(void* p, size_t n, size_t s) {
  size_t t;
  if (__builtin_mul_overflow(n, s, &t)) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_realloc(p, t);
}
EXPORT void* memalign(size_t a, size_t n) { return __libc_memalign(a, n); }
EXPORT void* aligned_alloc(size_t a, size_t n) { return __libc_memalign(a, n); }
EXPORT void* valloc(size_t n) { return __libc_valloc(n); }
EXPORT void* pvalloc(size_t n) { return __libc_pvalloc(n); }
EXPORT int posix_memalign(void** out, size_t a, size_t n) {
  if (a < sizeof(void*) || (a & (a - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(a, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
EXPORT size_t malloc_usable_size(void* p) {
  if (!p) return 0;
  if (glibc_usable_size) return glibc_usable_size(p);
  /* Before the constructor ran: the chunk header's size, less the header
   * (and, for an mmapped chunk, the unused trailer word). */
  size_t head = ((size_t*)p)[-1];
  size_t size = head & ~(size_t)7;
  return (head & 2) ? size - 2 * sizeof(size_t) : size - sizeof(size_t);
}
