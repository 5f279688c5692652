// api: the C API with glibc-compatible semantics, process initialisation and
// fork handlers. Nothing here throws; operator new lives in the override.
#include "api/api.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "api/background.h"
#include "api/options.h"
#include "api/stats.h"
#include "api/testing.h"
#include "base/format.h"
#include "base/lock.h"
#include "platform/movers.h"
#include "platform/os.h"
#include "prof/prof.h"
#include "remalloc/remalloc.h"

namespace remalloc::api {

static std::atomic<int> g_init{0};  // 0 none, 1 running, 2 done
static std::atomic<bool> g_atfork{false};
std::atomic<size_t> g_invalid_frees{0};

// fork: remalloc's locks are held from its prepare handler to its parent or
// child handler, on behalf of the forking thread (Mutex::fork_acquire): the
// program's own atfork handlers run before or after ours in an order we do
// not choose, and may allocate; they use the held structures as the owner.
// Not static: the unit tests run the handlers from two threads at once.
void fork_prepare() {
  prof::fork_prepare();
  if constexpr (kSecure) sampled::fork_prepare();
  heap::fork_prepare();
  pages::fork_prepare();
  movers::fork_prepare();
}
void fork_parent() {
  movers::fork_parent();
  pages::fork_parent();
  heap::fork_parent();
  if constexpr (kSecure) sampled::fork_parent();
  prof::fork_parent();
}
static void fork_child() {
  background::fork_child();
  pages::fork_child();
  heap::fork_child();
  if constexpr (kSecure) sampled::fork_child();
  prof::fork_child();
  movers::after_fork_child();
}

static RM_COLD void invalid(const void* p, const char* what);

RM_NOINLINE void ensure_init() {
  if (RM_LIKELY(g_init.load(std::memory_order_acquire) == 2)) {
    background::poll();  // no lock is held here
    return;
  }
  int expected = 0;
  if (g_init.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    options::init();
    heap::g_on_invalid = invalid;
    heap::g_on_slab_released = background::poll;
    g_init.store(2, std::memory_order_release);
    if (options::get(options::kVerbose)) {
      options::print(2);
      Writer w(2);
      w.str("remalloc: movers: mremap(DONTUNMAP) ")
          .str(movers::mremap_mode())
          .str(", UFFDIO_MOVE ")
          .str(movers::uffd_move_available() ? "yes" : "no")
          .str("\n");
      w.flush();
      options::print_thp(2);
      if constexpr (kSecure)
        w.str("remalloc: secure build: encoded free-list links, shuffled new slabs, guard pages ")
            .str(pages::guard_tail_pages() ? "after large blocks and slabs (MADV_GUARD_INSTALL)\n"
                                           : "off (the kernel lacks MADV_GUARD_INSTALL)\n");
      if constexpr (kSecure) {
        long rate = options::get(options::kGuardSample);
        w.str("remalloc: secure build: sampled guarded allocations ");
        if (rate > 0)
          w.str("1 in ").i64(rate).str(" small allocations of at most a page, a pool of ")
              .u64(sampled::kSlots).str(" slots (").str(sampled::mechanism_name()).str(")\n");
        else
          w.str("off (REMALLOC_GUARD_SAMPLE=0)\n");
      }
      size_t limit = options::memory_limit();
      w.str("remalloc: memory limit: ");
      if (!limit) {
        w.str("none");
      } else {
        size_t rss = os::resident_bytes();
        w.bytes(limit);
        if (options::get(options::kMemoryLimit))
          w.str(" (REMALLOC_MEMORY_LIMIT)");
        else
          w.str(" (cgroup v").i64(options::cgroup_version()).str(")");
        w.str(", headroom ").bytes(limit > rss ? limit - rss : 0);
      }
      w.str("\n");
    }
    // pthread_atfork may allocate: register once the allocator is usable.
    if (!g_atfork.exchange(true)) pthread_atfork(fork_prepare, fork_parent, fork_child);
    return;
  }
  // Another thread is initialising (or this one, recursively): options are
  // plain words with usable defaults, so go on.
}

// A large block from the page heap. Out of address space (RLIMIT_AS), the
// calling thread's cached large blocks and spare slabs may be what stands
// in the way (they hold pages in the middle of arenas): they go back to the
// page heap, where they coalesce, and the request is tried once more.
static Span* alloc_large(size_t npages, size_t align_pages, size_t size, bool* zeroed = nullptr) {
  Span* s = pages::alloc_large(npages, align_pages, size, zeroed);
  if (RM_UNLIKELY(!s)) {
    heap::large_cache_flush_current();
    s = pages::alloc_large(npages, align_pages, size, zeroed);
  }
  return s;
}

// Heap profiling: this thread's count ran out (prof::due) and prof says the
// allocation is sampled. RM_PROF_ENTRY on every function that may be on the
// stack between the program and the capture (prof/prof.h).
static bool sample_now(size_t size, prof::Ticket* t) {
  if (RM_LIKELY(!prof::due(size))) return false;
  ensure_init();
  return prof::begin(t);
}

static void* malloc_large_now(size_t size, size_t align_pages);
static void* calloc_large_now(size_t total);

// A sampled allocation: a large block of its own, whatever its size (so a
// sampled block is never a slab block and the small free path never looks
// for a record), then counted and marked by prof.
RM_PROF_ENTRY static void* malloc_large_sampled(size_t size, size_t align_pages, bool zero, const prof::Ticket& t) {
  void* p = zero ? calloc_large_now(size) : malloc_large_now(size, align_pages);
  prof::end(t, p, size);
  return p;
}

RM_PROF_ENTRY static void* malloc_large(size_t size, size_t align_pages) {
  ensure_init();
  if (RM_UNLIKELY(size > kMaxAllocSize)) {
    errno = ENOMEM;
    return nullptr;
  }
  prof::Ticket t;
  if (RM_UNLIKELY(sample_now(size, &t))) return malloc_large_sampled(size, align_pages, false, t);
  return malloc_large_now(size, align_pages);
}

static void* malloc_large_now(size_t size, size_t align_pages) {
  size_t npages = pages_of(size);
  if (npages == 0) npages = 1;
  if (align_pages == 1 && npages <= heap::kLargeCacheMaxPages) {
    if (Span* c = heap::large_cache_get(npages)) {
      pages::set_requested(c, size);
      return reinterpret_cast<void*>(c->start);
    }
  }
  Span* s = alloc_large(npages, align_pages, size);  // the page heap adds and guards the secure build's page
  if (!s) {
    errno = ENOMEM;
    return nullptr;
  }
  return reinterpret_cast<void*>(s->start);
}

// Secure build: one small malloc in REMALLOC_GUARD_SAMPLE gets a page of its
// own against a guard page (heap/sampled.h); when the pool has no slot to
// give, the block comes from the small heaps as usual.
RM_PROF_ENTRY void* malloc_sampled(size_t size) {
  ensure_init();
  if (void* p = sampled::alloc(size)) return p;
  if (void* b = heap::malloc_fast(size)) return b;
  return malloc_slow(size);
}

RM_PROF_ENTRY void* malloc_slow(size_t size) {
  if (size <= sc::kMaxSmall) {
    prof::Ticket t;
    if (RM_UNLIKELY(sample_now(size, &t))) return malloc_large_sampled(size, 1, false, t);
    ensure_init();
    bool first = heap::tl_heap == &heap::g_empty_heap;
    void* p = heap::malloc_slow(size);
    if (RM_UNLIKELY(first)) prof::heap_attached();
    if (!p) errno = ENOMEM;
    return p;
  }
  return malloc_large(size, 1);
}

static RM_COLD void invalid(const void* p, const char* what) {
  g_invalid_frees.fetch_add(1, std::memory_order_relaxed);
  ensure_init();
  if (options::get(options::kAbortOnInvalid)) fatal(what, p);
  warning(what, p);
}

RM_NOINLINE void free_slow(Span* s, void* p) {
  if (s && pages::is_large_start(s, p)) {
    if (prof::is_marked(p)) prof::forget(p);
    if (!heap::large_cache_put(s)) pages::free_span(s);
    background::poll();  // no lock is held here
    return;
  }
  if constexpr (kSecure) {
    if (sampled::in_pool(p)) return sampled::free(p);  // reports what it must
  }
  invalid(p, "free(): invalid pointer (not allocated by remalloc, or freed twice)");
}

size_t usable_size(const void* p) {
  if (!p) return 0;
  Span* s = pages::span_of(p);
  if (s && heap::is_block(s, p)) return s->block_size;
  if (s && pages::is_large_start(s, p)) return pages::block_bytes(s);
  if constexpr (kSecure) {
    if (sampled::in_pool(p))
      return sampled::usable(p, "malloc_usable_size(): invalid pointer (block already freed)",
                             "malloc_usable_size(): invalid pointer");
  }
  invalid(p, "malloc_usable_size(): invalid pointer");
  return 0;
}

RM_PROF_ENTRY void* realloc(void* p, size_t size) {
  if (!p) return api::malloc(size);
  if (size == 0) {
    api::free(p);
    return nullptr;
  }
  if (RM_UNLIKELY(size > kMaxAllocSize)) {
    errno = ENOMEM;
    return nullptr;
  }
  Span* s = pages::span_of(p);
  size_t old;
  if (s && heap::is_block(s, p)) {
    if (RM_UNLIKELY(heap::has_free_mark(p)) &&
        heap::check_marked(s, p, "realloc(): invalid pointer (block already freed)")) {
      errno = EINVAL;
      return nullptr;
    }
    old = s->block_size;
    // Stay when it fits and does not waste more than half.
    if (size <= old && size * 2 >= old) return p;
  } else if (s && pages::is_large_start(s, p)) {
    old = pages::block_bytes(s);
    if (size > sc::kMaxSmall) {
      ensure_init();
      // Heap profiling: a sampled block's record moves with it (mremap and
      // UFFDIO_MOVE included); a block that grows may become sampled.
      bool prof_on = prof::config().active || prof::is_marked(p);
      bool was_sampled = prof_on && prof::realloc_before(p);
      size_t asked = s->requested;
      // Sets errno on failure; the secure build's guard page is the page
      // heap's business.
      void* q = pages::realloc_large(s, size);
      if (RM_UNLIKELY(prof_on)) {
        int e = errno;
        prof::realloc_after(was_sampled, p, q, asked, size);
        errno = e;
      }
      background::poll();
      return q;
    }
  } else if (kSecure && sampled::in_pool(p)) {
    old = sampled::usable(p, "realloc(): invalid pointer (block already freed)",
                          "realloc(): invalid pointer (not allocated by remalloc, or freed)");
    if (!old) {
      errno = EINVAL;
      return nullptr;
    }
    if (align_up(size, kMinAlign) == old) return p;  // still ends at the guard
  } else {
    invalid(p, "realloc(): invalid pointer (not allocated by remalloc, or freed)");
    return nullptr;
  }
  void* q = api::malloc(size);
  if (!q) return nullptr;  // the old block stays intact
  memcpy(q, p, size < old ? size : old);
  api::free(p);
  return q;
}

RM_PROF_ENTRY void* calloc(size_t n, size_t size) {
  size_t total;
  if (RM_UNLIKELY(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total <= sc::kMaxSmall) {
    void* p = api::malloc(total);
    if (p) memset(p, 0, total);
    return p;
  }
  ensure_init();
  if (total > kMaxAllocSize) {
    errno = ENOMEM;
    return nullptr;
  }
  prof::Ticket t;
  if (RM_UNLIKELY(sample_now(total, &t))) return malloc_large_sampled(total, 1, true, t);
  return calloc_large_now(total);
}

static void* calloc_large_now(size_t total) {
  bool zeroed = false;
  Span* s = alloc_large(pages_of(total), 1, total, &zeroed);
  if (!s) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = reinterpret_cast<void*>(s->start);
  if (!zeroed) memset(p, 0, total);
  return p;
}

RM_PROF_ENTRY void* aligned(size_t align, size_t size) {
  if (align <= kMinAlign) return api::malloc(size);
  if (RM_UNLIKELY(size > kMaxAllocSize || align > kMaxAllocSize)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (align <= kPageSize && size <= sc::kMaxSmall) {
    // A class whose block size is a multiple of align: every block of it is
    // aligned, since slabs start on a page.
    unsigned c = sc::class_of(size < align ? align : size);
    while (c < sc::kNumClasses && sc::kInfo[c].size % align) c++;
    if (c < sc::kNumClasses) return api::malloc(sc::kInfo[c].size);
  }
  size_t ap = align <= kPageSize ? 1 : align >> kPageShift;
  return malloc_large(size, ap);
}

}  // namespace remalloc::api

// ---- the prefixed C API --------------------------------------------------------
using namespace remalloc;

namespace remalloc::api {
// Tries the call as it is first: a privileged process, or one within its
// limit, sees no difference. Only an ENOMEM for MCL_CURRENT trims. Once
// MCL_FUTURE holds, every page the page heap commits is populated then, so
// prefault (page_heap.h) would only make calls on resident pages: it stops.
static std::atomic<bool> g_future_locked{false};
int lock_all(int flags) {
  long r = syscall(SYS_mlockall, flags);
  if (r != 0 && errno == ENOMEM && (flags & MCL_CURRENT)) {
    pages::trim_reservations();
    r = syscall(SYS_mlockall, flags);
  }
  if (r == 0 && (flags & MCL_FUTURE)) {
    g_future_locked.store(true, std::memory_order_relaxed);
    options::apply();
  }
  return int(r);
}
bool future_locked() { return g_future_locked.load(std::memory_order_relaxed); }
}  // namespace remalloc::api

extern "C" {

RM_PROF_ENTRY void* remalloc_malloc(size_t size) { return api::malloc(size); }
void remalloc_free(void* p) { api::free(p); }
RM_PROF_ENTRY void* remalloc_calloc(size_t n, size_t size) { return api::calloc(n, size); }
RM_PROF_ENTRY void* remalloc_realloc(void* p, size_t size) { return api::realloc(p, size); }

RM_PROF_ENTRY void* remalloc_reallocarray(void* p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return api::realloc(p, total);
}

void remalloc_free_sized(void* p, size_t) { api::free(p); }
void remalloc_free_aligned_sized(void* p, size_t, size_t) { api::free(p); }

RM_PROF_ENTRY int remalloc_posix_memalign(void** out, size_t align, size_t size) {
  if (align < sizeof(void*) || !is_pow2(align)) return EINVAL;
  int saved = errno;
  void* p = api::aligned(align, size);
  if (!p) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

RM_PROF_ENTRY void* remalloc_aligned_alloc(size_t align, size_t size) {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return api::aligned(align, size);
}

RM_PROF_ENTRY void* remalloc_memalign(size_t align, size_t size) { return remalloc_aligned_alloc(align, size); }

RM_PROF_ENTRY void* remalloc_valloc(size_t size) { return api::aligned(kPageSize, size); }

RM_PROF_ENTRY void* remalloc_pvalloc(size_t size) {
  size_t rounded = align_up(size ? size : 1, kPageSize);
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return api::aligned(kPageSize, rounded);
}

size_t remalloc_usable_size(const void* p) { return api::usable_size(p); }

int remalloc_trim(size_t) {
  api::ensure_init();
  heap::large_cache_flush_current();
  // Exited threads' slabs go back as frees empty them; this gives back
  // anything those frees left waiting (normally nothing).
  heap::trim_abandoned();
  return pages::purge(true) > 0 ? 1 : 0;
}

size_t remalloc_refresh_limits(void) {
  api::ensure_init();
  return options::refresh_limits();
}

int remalloc_owns(const void* p) {
  if (!p) return 0;
  if constexpr (kSecure) {
    if (sampled::in_pool(p)) return sampled::owns(p) ? 1 : 0;
  }
  Span* s = pages::span_of(p);
  if (!s) return 0;
  if (s->kind == kSpanSlab && heap::is_block(s, p)) return 1;
  return pages::is_large_start(s, p) ? 1 : 0;
}

long remalloc_option_get(const char* name) {
  api::ensure_init();
  int id = options::find(name);
  return id < 0 ? -1 : options::get(options::Id(id));
}

int remalloc_option_set(const char* name, long value) {
  api::ensure_init();
  int id = options::find(name);
  if (id < 0) return -1;
  return options::set(options::Id(id), value) ? 0 : -1;
}

int remalloc_validate(void) {
  api::ensure_init();
  pages::validate();
  heap::validate_current();
  return 0;
}

void remalloc_inject_mover_failure(const char* mover, int step, int count) {
  for (int k = 0; k < movers::kNumKinds; k++) {
    if (mover && strcmp(mover, movers::kind_name(k)) == 0) movers::inject_failure(k, step, count);
  }
}

void remalloc_inject_mmap_failure(int count) { os::inject_reserve_failure(count); }

}  // extern "C"
