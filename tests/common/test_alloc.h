// The allocation functions under test, behind one set of names.
//
// The same test sources are compiled twice (more with sanitizers):
//   - REMALLOC_TEST_OVERRIDE=0: the prefixed API (remalloc_malloc, ...) of the
//     core objects linked straight into the test; the process's own malloc
//     stays glibc's (or the sanitizer's).
//   - REMALLOC_TEST_OVERRIDE=1: the standard names (malloc, free, ...) of a
//     process linked against libremalloc.so, which overrides them.
// Functions with no standard name (owns, stats, options) are always called by
// their prefixed names; libremalloc.so exports those too.
#ifndef REMALLOC_TESTS_TEST_ALLOC_H
#define REMALLOC_TESTS_TEST_ALLOC_H

#include <remalloc/remalloc.h>

#include <malloc.h>
#include <stdlib.h>

#include <cstddef>

#ifndef REMALLOC_TEST_OVERRIDE
#define REMALLOC_TEST_OVERRIDE 0
#endif

#if REMALLOC_TEST_OVERRIDE
// C23 names that glibc 2.36 does not declare; libremalloc.so may export them.
extern "C" void free_sized(void* p, size_t size) __attribute__((weak));
extern "C" void free_aligned_sized(void* p, size_t alignment, size_t size) __attribute__((weak));
#endif

namespace ta {

#if REMALLOC_TEST_OVERRIDE
inline constexpr const char* kMode = "override";
inline constexpr bool kOverride = true;
inline void* malloc(size_t n) { return ::malloc(n); }
inline void* calloc(size_t c, size_t n) { return ::calloc(c, n); }
inline void* realloc(void* p, size_t n) { return ::realloc(p, n); }
inline void* reallocarray(void* p, size_t c, size_t n) { return ::reallocarray(p, c, n); }
inline void free(void* p) { ::free(p); }
inline void free_sized(void* p, size_t n) {
  if (::free_sized) ::free_sized(p, n); else ::remalloc_free_sized(p, n);
}
inline void free_aligned_sized(void* p, size_t a, size_t n) {
  if (::free_aligned_sized) ::free_aligned_sized(p, a, n);
  else ::remalloc_free_aligned_sized(p, a, n);
}
inline int posix_memalign(void** out, size_t a, size_t n) { return ::posix_memalign(out, a, n); }
inline void* aligned_alloc(size_t a, size_t n) { return ::aligned_alloc(a, n); }
inline void* memalign(size_t a, size_t n) { return ::memalign(a, n); }
inline void* valloc(size_t n) { return ::valloc(n); }
inline void* pvalloc(size_t n) { return ::pvalloc(n); }
inline size_t usable_size(const void* p) { return ::malloc_usable_size(const_cast<void*>(p)); }
inline int trim(size_t pad) { return ::malloc_trim(pad); }
#else
inline constexpr const char* kMode = "api";
inline constexpr bool kOverride = false;
inline void* malloc(size_t n) { return ::remalloc_malloc(n); }
inline void* calloc(size_t c, size_t n) { return ::remalloc_calloc(c, n); }
inline void* realloc(void* p, size_t n) { return ::remalloc_realloc(p, n); }
inline void* reallocarray(void* p, size_t c, size_t n) { return ::remalloc_reallocarray(p, c, n); }
inline void free(void* p) { ::remalloc_free(p); }
inline void free_sized(void* p, size_t n) { ::remalloc_free_sized(p, n); }
inline void free_aligned_sized(void* p, size_t a, size_t n) { ::remalloc_free_aligned_sized(p, a, n); }
inline int posix_memalign(void** out, size_t a, size_t n) { return ::remalloc_posix_memalign(out, a, n); }
inline void* aligned_alloc(size_t a, size_t n) { return ::remalloc_aligned_alloc(a, n); }
inline void* memalign(size_t a, size_t n) { return ::remalloc_memalign(a, n); }
inline void* valloc(size_t n) { return ::remalloc_valloc(n); }
inline void* pvalloc(size_t n) { return ::remalloc_pvalloc(n); }
inline size_t usable_size(const void* p) { return ::remalloc_usable_size(p); }
inline int trim(size_t pad) { return ::remalloc_trim(pad); }
#endif

inline int owns(const void* p) { return ::remalloc_owns(p); }

}  // namespace ta

#endif
