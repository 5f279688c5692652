// override: the exported malloc family, the __libc_* aliases and every C++
// operator new/delete, each forwarding to the api layer in one line.
//
// operator new must throw std::bad_alloc, but the library must not depend on
// libstdc++: the C++ runtime pieces are weak references, present whenever a
// C++ program (the only kind that calls operator new) has loaded libstdc++.
#include <malloc.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "api/api.h"
#include "api/stats.h"
#include "base/format.h"
#include "prof/prof.h"
#include "remalloc/remalloc.h"

using namespace remalloc;

namespace remalloc::cxx {
bool call_new_handler_nothrow(void (*handler)());
}

#define RM_EXPORT extern "C" __attribute__((visibility("default")))

RM_EXPORT void* malloc(size_t n) { return api::malloc(n); }
RM_EXPORT void free(void* p) { api::free(p); }
RM_EXPORT void* calloc(size_t n, size_t s) { return api::calloc(n, s); }
RM_EXPORT void* realloc(void* p, size_t n) { return api::realloc(p, n); }
RM_EXPORT void* reallocarray(void* p, size_t n, size_t s) { return remalloc_reallocarray(p, n, s); }
RM_EXPORT int posix_memalign(void** out, size_t a, size_t n) { return remalloc_posix_memalign(out, a, n); }
RM_EXPORT void* aligned_alloc(size_t a, size_t n) { return remalloc_aligned_alloc(a, n); }
RM_EXPORT void* memalign(size_t a, size_t n) { return remalloc_memalign(a, n); }
RM_EXPORT void* valloc(size_t n) { return remalloc_valloc(n); }
RM_EXPORT void* pvalloc(size_t n) { return remalloc_pvalloc(n); }
RM_EXPORT size_t malloc_usable_size(void* p) { return api::usable_size(p); }
RM_EXPORT void free_sized(void* p, size_t) { api::free(p); }
RM_EXPORT void free_aligned_sized(void* p, size_t, size_t) { api::free(p); }
RM_EXPORT void cfree(void* p) { api::free(p); }
RM_EXPORT int malloc_trim(size_t pad) { return remalloc_trim(pad); }
RM_EXPORT void malloc_stats(void) { remalloc_stats_print(2); }
RM_EXPORT int mallopt(int, int) { return 1; }  // accepted and ignored
// Not an allocator call: remalloc's reservations must not make the
// program's mlockall fail (see api::lock_all).
RM_EXPORT int mlockall(int flags) { return api::lock_all(flags); }

RM_EXPORT struct mallinfo2 mallinfo2(void) {
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  struct mallinfo2 mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = st.mapped;
  mi.hblks = st.large_live;
  mi.uordblks = st.allocated;
  mi.fordblks = st.mapped > st.allocated ? st.mapped - st.allocated : 0;
  mi.usmblks = st.peak_allocated;
  return mi;
}

// glibc's XML report, which some monitoring tools parse: one <heap> for
// the whole page heap (remalloc has no per-arena heaps in glibc's sense);
// "rest" is the free bytes, "current" what the arenas hold, "max" the peak.
RM_EXPORT int malloc_info(int options, FILE* fp) {
  if (options != 0 || !fp) {
    errno = EINVAL;
    return -1;
  }
  remalloc_stats_t st;
  remalloc_stats_get(&st);
  size_t held = st.allocated + st.slab_slack;
  size_t free_bytes = st.mapped > held ? st.mapped - held : 0;
  char buf[2048];
  BufWriter w(buf, sizeof buf);
  auto total = [&](const char* type, size_t count, size_t size) {
    w.str("<total type=\"").str(type).str("\" count=\"").u64(count).str("\" size=\"").u64(size).str("\"/>\n");
  };
  auto sys = [&](const char* tag, const char* type, size_t size) {
    w.str("<").str(tag).str(" type=\"").str(type).str("\" size=\"").u64(size).str("\"/>\n");
  };
  w.str("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n");
  total("fast", 0, 0);
  total("rest", st.arenas, free_bytes);
  sys("system", "current", st.mapped);
  sys("system", "max", st.mapped);
  sys("aspace", "total", st.mapped);
  sys("aspace", "mprotect", st.mapped);
  w.str("</heap>\n");
  total("fast", 0, 0);
  total("rest", st.arenas, free_bytes);
  total("mmap", 0, 0);  // no block has a mapping of its own
  sys("system", "current", st.mapped);
  sys("system", "max", st.mapped);
  sys("aspace", "total", st.mapped);
  sys("aspace", "mprotect", st.mapped);
  w.str("</malloc>\n");
  size_t n = w.needed() < sizeof buf ? w.needed() : sizeof buf - 1;
  return fwrite(buf, 1, n, fp) == n ? 0 : -1;
}

RM_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi;
  memset(&mi, 0, sizeof mi);
  mi.arena = int(m2.arena);
  mi.hblks = int(m2.hblks);
  mi.uordblks = int(m2.uordblks);
  mi.fordblks = int(m2.fordblks);
  mi.usmblks = int(m2.usmblks);
  return mi;
}

// glibc's internal names, used by some programs and by other libraries'
// interposers.
RM_EXPORT void* __libc_malloc(size_t n) { return api::malloc(n); }
RM_EXPORT void __libc_free(void* p) { api::free(p); }
RM_EXPORT void* __libc_calloc(size_t n, size_t s) { return api::calloc(n, s); }
RM_EXPORT void* __libc_realloc(void* p, size_t n) { return api::realloc(p, n); }
RM_EXPORT void* __libc_memalign(size_t a, size_t n) { return remalloc_memalign(a, n); }
RM_EXPORT void* __libc_valloc(size_t n) { return remalloc_valloc(n); }
RM_EXPORT void* __libc_pvalloc(size_t n) { return remalloc_pvalloc(n); }
RM_EXPORT int __posix_memalign(void** out, size_t a, size_t n) { return remalloc_posix_memalign(out, a, n); }

// ---- C++ ------------------------------------------------------------------------
// Weak references into the C++ runtime: no NEEDED entry on libstdc++.
extern "C" {
void* __cxa_allocate_exception(size_t) __attribute__((weak));
void __cxa_throw(void*, void*, void (*)(void*)) __attribute__((weak, noreturn));
extern char _ZTISt9bad_alloc[] __attribute__((weak));        // typeinfo for std::bad_alloc
extern void* _ZTVSt9bad_alloc[] __attribute__((weak));       // vtable for std::bad_alloc
void _ZNSt9bad_allocD1Ev(void*) __attribute__((weak));       // std::bad_alloc::~bad_alloc()
void* _ZSt15get_new_handlerv() __attribute__((weak));        // std::get_new_handler()
}

[[noreturn]] static RM_COLD void throw_bad_alloc() {
  if (__cxa_allocate_exception && __cxa_throw && _ZTISt9bad_alloc && _ZTVSt9bad_alloc) {
    void** e = static_cast<void**>(__cxa_allocate_exception(sizeof(void*)));
    e[0] = _ZTVSt9bad_alloc + 2;  // the vtable's address point
    __cxa_throw(e, _ZTISt9bad_alloc, _ZNSt9bad_allocD1Ev);
  }
  fatal("operator new: out of memory and no C++ runtime to throw std::bad_alloc", nullptr);
}

// The C++ policy on failure: call the new-handler until it gives up, then
// throw (or return nullptr for nothrow forms).
RM_PROF_ENTRY __attribute__((cold)) static void* new_retry(size_t n, size_t align, bool nothrow) {
  for (;;) {
    void* p = align ? api::aligned(align, n) : api::malloc(n);
    if (p) return p;
    typedef void (*handler_t)();
    handler_t h = _ZSt15get_new_handlerv ? reinterpret_cast<handler_t>(_ZSt15get_new_handlerv())
                                         : nullptr;
    if (!h) {
      if (nothrow) return nullptr;
      throw_bad_alloc();
    }
    if (nothrow) {
      // The handler may throw std::bad_alloc: nothrow new returns nullptr.
      if (!cxx::call_new_handler_nothrow(h)) return nullptr;
      continue;
    }
    h();
  }
}

// operator new's slow paths, each a tail call from operator new's inline
// fast path, with a frame pointer and in remalloc_text: a heap profile's
// stack walk passes through them to the program's frame (prof/prof.h).
RM_PROF_ENTRY static void* new_slow(size_t n) {
  void* p = api::malloc_slow(n);
  if (RM_LIKELY(p)) return p;
  return new_retry(n, 0, false);
}
RM_PROF_ENTRY static void* new_sampled(size_t n) {
  void* p = api::malloc_sampled(n);
  if (RM_LIKELY(p)) return p;
  return new_retry(n, 0, false);
}
RM_PROF_ENTRY static void* new_nothrow_slow(size_t n) {
  void* p = api::malloc_slow(n);
  if (RM_LIKELY(p)) return p;
  return new_retry(n, 0, true);
}
RM_PROF_ENTRY static void* new_nothrow_sampled(size_t n) {
  void* p = api::malloc_sampled(n);
  if (RM_LIKELY(p)) return p;
  return new_retry(n, 0, true);
}
RM_PROF_ENTRY static void* new_aligned_slow(size_t n, size_t al, bool nothrow) {
  void* p = api::aligned(al, n);
  if (RM_LIKELY(p)) return p;
  return new_retry(n, al, nothrow);
}

static RM_INLINE void* new_impl(size_t n) { return api::malloc_with<new_slow, new_sampled>(n); }
static RM_INLINE void* new_nothrow(size_t n) { return api::malloc_with<new_nothrow_slow, new_nothrow_sampled>(n); }
static RM_INLINE void* new_aligned(size_t n, std::align_val_t a) {
  size_t al = size_t(a);
  if (RM_UNLIKELY(!is_pow2(al))) throw_bad_alloc();
  return new_aligned_slow(n, al, false);
}
static RM_INLINE void* new_aligned_nothrow(size_t n, std::align_val_t a) {
  size_t al = size_t(a);
  if (RM_UNLIKELY(!is_pow2(al))) return nullptr;
  return new_aligned_slow(n, al, true);
}

#define RM_NEW_EXPORT __attribute__((visibility("default")))
RM_NEW_EXPORT void* operator new(size_t n) { return new_impl(n); }
RM_NEW_EXPORT void* operator new[](size_t n) { return new_impl(n); }
RM_NEW_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
RM_NEW_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
RM_NEW_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned(n, a); }
RM_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_aligned(n, a); }
RM_NEW_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_aligned_nothrow(n, a); }
RM_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_aligned_nothrow(n, a); }
RM_NEW_EXPORT void operator delete(void* p) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete(void* p, size_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p, size_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { api::free(p); }
RM_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { api::free(p); }
