// page heap: the lock, allocation and free of spans (slabs and large
// blocks), all accounting of bytes held for blocks, the primitives the
// relocation engine uses, statistics and the validator.
//
// Accounting invariant (validate checks it against the arenas):
//   mapped = large_bytes + slab_bytes + free_bytes
// where large_bytes counts live large blocks and those in threads' reuse
// caches (kSpanCached), slab_bytes every slab, free_bytes every free run.
#include "pages/free_runs.h"
#include "pages/internal.h"
#include "pages/purge.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

Config g_config;
Mutex g_lock;
std::atomic<size_t> g_counters[kNumCounters];

static size_t g_large_live;   // live large blocks (cached ones included)
static size_t g_large_bytes;  // their bytes
static size_t g_slab_bytes;   // bytes of all slabs
static size_t g_slabs;        // number of slabs
static size_t g_peak_bytes;   // peak of g_large_bytes + g_slab_bytes
static size_t g_huge_blocks;  // live blocks with kLargeHugeAdv
static size_t g_huge_bytes;   // the bytes of their advised interiors

// The checked build validates after every `kValidateEvery` page-heap
// operations (every one would make the suite quadratic in heap size).
#if REMALLOC_DEBUG >= 3
static size_t g_ops;
constexpr size_t kValidateEvery = 64;
static void validate_locked();
#define RM_VALIDATE_SOMETIMES() \
  do {                          \
    if (++g_ops % kValidateEvery == 0) validate_locked(); \
  } while (0)
#else
#define RM_VALIDATE_SOMETIMES() \
  do {                          \
  } while (0)
#endif

void configure(const Config& c) {
  LockGuard g(g_lock);
  g_config = c;
}
const Config& config() { return g_config; }

size_t peak_bytes_locked() { return g_peak_bytes; }
size_t held_bytes_locked() { return g_large_bytes + g_slab_bytes; }

static void note_peak() {
  size_t live = g_large_bytes + g_slab_bytes;
  if (live > g_peak_bytes) g_peak_bytes = live;
}

static void account_large(ptrdiff_t blocks, ptrdiff_t bytes) {
  g_large_live += size_t(blocks);
  g_large_bytes += size_t(bytes);
  if (bytes > 0) note_peak();
}

// A run of npages from the free pool (a new arena if needed). Fresh
// allocations reuse resident memory first; realloc destinations
// (room_after) want clean runs with room to grow, since movers overwrite or
// clear them.
static Span* take_run(size_t npages, size_t align, Region region, bool room_after, size_t phase) {
  size_t skip = 0;
  Span* f = nullptr;
  if (!room_after) f = purging::find_resident(npages, align, phase, region, &skip);
  if (!f && room_after) f = free_runs::find(npages, align, phase, region, npages * 2, &skip);
  if (!f) f = free_runs::find(npages, align, phase, region, npages, &skip);
  if (!f) {
    if (new_arena_locked(npages + phase, align, region)) {
      if (room_after) f = free_runs::find(npages, align, phase, region, npages * 2, &skip);
      if (!f) f = free_runs::find(npages, align, phase, region, npages, &skip);
    } else if (region == kRegionNormal) {
      // Out of address space (RLIMIT_AS): the free runs of arenas registered
      // for uffd moves serve ordinary blocks as well. (Not the other way:
      // a registration would turn off mremap's fast path in a normal arena.)
      f = free_runs::find(npages, align, phase, kRegionUffd, npages, &skip);
    }
    if (!f) return nullptr;
  }
  // The pages become read-write before anyone can use them.
  if (!commit_locked(f->arena, index_of(f->arena, f) + skip + npages)) return nullptr;
  return free_runs::carve(f, skip, npages);
}

// ---- the huge page policy ---------------------------------------------------
// A large block of at least hugepage_threshold in a normal arena may live on
// transparent huge pages, in its interior: the whole 2 MiB granules inside
// its usable bytes. The pieces at either end share a granule with a
// neighbouring run and keep small pages; so does the secure build's guard
// page, which sits past the usable bytes. With hugepage_advise the interior
// gets MADV_HUGEPAGE at allocation, after growth in place and after a move
// (madvise only sets a flag on the VMA: it never stalls; the kernel
// assembles a huge page at the first touch of a granule, or khugepaged does
// later). The advice gives the interior a VMA of its own, so the block is
// marked moved-in (kLargeMovedIn) and its run is healed with the decay once
// freed, which ends the advice and merges the VMA back.
//
// What keeps a live block's huge pages whole: its interior never shares a
// granule with another run (the ends do not have huge pages); a shrink in
// place keeps the granule the new end falls in (`huge_keep_pages`); and a
// freed interior (kFreeHuge) is purged in whole granules (purge.cpp).
static void huge_interior(const Span* s, size_t pages, uintptr_t* lo, uintptr_t* hi) {
  *lo = align_up(s->start, kHugePageSize);
  *hi = align_down(s->start + ((pages - guard_tail_pages()) << kPageShift), kHugePageSize);
  if (*hi < *lo) *hi = *lo;
}

static bool huge_policy_applies(const Span* s) {
  return g_config.hugepage && s->arena->region == kRegionNormal &&
         block_bytes(s) >= g_config.hugepage_threshold;
}

// Advises the interior of s (the lock held), or the part of it above
// `from` (bytes already advised end there).
static void huge_advise_locked(Span* s, uintptr_t from) {
  if (!huge_policy_applies(s)) return;
  uintptr_t lo, hi;
  huge_interior(s, s->npages, &lo, &hi);
  if (from > lo) lo = from;
  if (lo >= hi) return;
  bool first = !(s->flags & kLargeHugeAdv);
  if (first && !vma::can_add(2)) return;  // the VMA budget comes first
  if (!os::advise_hugepage(reinterpret_cast<void*>(lo), hi - lo, true)) return;
  if (first) {
    s->flags |= kLargeHugeAdv | kLargeMovedIn;
    vma::note_added(2);
    g_huge_blocks++;
  }
  g_huge_bytes += hi - lo;
}

// The bytes of s's interior that the advice covers (for the accounting).
static size_t huge_advised_bytes(const Span* s) {
  if (!(s->flags & kLargeHugeAdv)) return 0;
  uintptr_t lo, hi;
  huge_interior(s, s->npages, &lo, &hi);
  return hi - lo;
}

static void huge_forget_locked(Span* s) {
  if (!(s->flags & kLargeHugeAdv)) return;
  g_huge_blocks--;
  g_huge_bytes -= huge_advised_bytes(s);
}

// A shrink of a block that may hold huge pages to `pages` keeps the
// granule its new end falls in: the freed tail then starts on a granule
// boundary, and purging it splits no huge page of the block.
static size_t huge_keep_pages(const Span* s, size_t pages) {
  if (!(s->flags & kLargeHugeAdv)) return pages;
  size_t guard = guard_tail_pages();
  uintptr_t end = s->start + ((pages - guard) << kPageShift);
  uintptr_t lo, hi;
  huge_interior(s, s->npages, &lo, &hi);
  if (end <= lo || end >= hi) return pages;  // the end is outside the interior
  size_t keep = ((align_up(end, kHugePageSize) - s->start) >> kPageShift) + guard;
  return keep < s->npages ? keep : s->npages;
}

static void init_large(Span* s, size_t npages, size_t requested, uint8_t run_flags) {
  s->kind = kSpanLarge;
  s->npages = npages;
  s->requested = requested;
  s->flags = (run_flags & kFreeSplit) ? kLargeMovedIn : 0;
}

Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed) {
  bool huge = (npages << kPageShift) >= g_config.huge_threshold;
  if (huge && align_pages < (kHugePageSize >> kPageShift)) align_pages = kHugePageSize >> kPageShift;
  LockGuard g(g_lock);
  // Take the pages first, then purge: the block may reuse resident pages
  // that the cap or the decay would otherwise purge just before.
  Span* s = take_run(npages, align_pages, kRegionNormal, false, 0);
  purging::maybe_purge(os::now_ns(), npages);
  if (!s) return nullptr;
  if (zeroed) *zeroed = !(s->flags & kFreeDirty);
  uint8_t run_flags = s->flags;
  init_large(s, npages, requested, s->flags);
  // A granule whose page table exists faults in small pages: resident
  // small pages in the interior, or an empty table that a page move or a
  // purge left, keep it off huge pages. So a run that did not hold an
  // advised block gets a fresh interior first (one mmap, what a purge
  // costs; the program then faults in 2 MiB pages). Runs of freed advised
  // blocks keep theirs: they are huge pages already.
  if (!(run_flags & kFreeHuge) && huge_policy_applies(s)) {
    uintptr_t lo, hi;
    huge_interior(s, s->npages, &lo, &hi);
    if (lo < hi) os::remap_fresh(reinterpret_cast<void*>(lo), hi - lo);
  }
  huge_advise_locked(s, 0);
  account_large(1, ptrdiff_t(s->bytes()));
  RM_VALIDATE_SOMETIMES();
  return s;
}

Span* alloc_slab(size_t npages) {
  LockGuard g(g_lock);
  Span* s = take_run(npages, 1, kRegionNormal, false, 0);
  purging::maybe_purge(os::now_ns(), npages);
  if (!s) return nullptr;
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  for (size_t i = 1; i < npages; i++) a->back[idx + i] = uint32_t(idx);
  s->kind = kSpanSlab;
  s->flags = 0;
  g_slabs++;
  g_slab_bytes += s->bytes();
  note_peak();
  RM_VALIDATE_SOMETIMES();
  return s;
}

// Returns the pages of span s (already off the books) to the free pool.
static void give_back(Span* s, uint8_t flags, uint64_t now) {
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  size_t n = s->npages;
  s->kind = kSpanNone;
  s->flags = 0;
  Span* f = free_runs::put(a, idx, n, flags, now);
  purging::after_put(f, n, now);
}

void free_span(Span* s) {
  LockGuard g(g_lock);
  RM_ASSERT(s->kind == kSpanLarge || s->kind == kSpanSlab);
  if constexpr (kSecure) guard_remove_tail(s);  // guards.cpp
  uint64_t now = os::now_ns();
  uint8_t flags = kFreeDirty;
  if (s->kind == kSpanLarge) {
    account_large(-1, -ptrdiff_t(s->bytes()));
    if (s->flags & kLargeMovedIn) flags |= kFreeSplit;
    if (s->flags & kLargeHugeAdv) flags |= kFreeHuge;
    huge_forget_locked(s);
  } else {
    RM_ASSERT(s->slab_bytes == 0 && s->heap == nullptr);  // the small heap let go of it
    g_slabs--;
    g_slab_bytes -= s->bytes();
  }
  size_t npages = s->npages;
  give_back(s, flags, now);
  // With REMALLOC_PURGE_DELAY=0 the decay's share of a free includes the
  // pages it gave back, so they go back at once. Otherwise not: a larger
  // share purges runs that the next allocation would have reused
  // (hugechurn: 53.5k page faults instead of 40.6k).
  purging::maybe_purge(now, g_config.purge_delay_ns == 0 ? npages : 0);
  RM_VALIDATE_SOMETIMES();
}

// ---- primitives of the relocation engine ----------------------------------
bool resize_in_place(Span* s, size_t new_pages, size_t new_size) {
  LockGuard g(g_lock);
  RM_ASSERT_INTERNAL(s->kind == kSpanLarge);
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  if (new_pages < s->npages) {
    // Shrink: the tail pages become a dirty free run (whole granules of a
    // block that may hold huge pages).
    new_pages = huge_keep_pages(s, new_pages);
    s->requested = new_size;
    if (new_pages == s->npages) {
      RM_VALIDATE_SOMETIMES();
      return true;
    }
    size_t tail = s->npages - new_pages;
    bool huge = s->flags & kLargeHugeAdv;
    huge_forget_locked(s);
    s->npages = new_pages;
    if (huge) {
      g_huge_blocks++;
      g_huge_bytes += huge_advised_bytes(s);
    }
    account_large(0, -ptrdiff_t(tail << kPageShift));
    uint8_t flags = kFreeDirty | ((s->flags & kLargeMovedIn) ? kFreeSplit : 0) | (huge ? kFreeHuge : 0);
    uint64_t now = os::now_ns();
    Span* f = free_runs::put(a, idx + new_pages, tail, flags, now);
    purging::after_put(f, tail, now);
    RM_VALIDATE_SOMETIMES();
    return true;
  }
  // Grow: claim the start of the free run that follows.
  Span* r = free_runs::run_at(a, idx + s->npages);
  size_t need = new_pages - s->npages;
  if (!r || r->npages < need) return false;
  if (!commit_locked(a, idx + new_pages)) return false;
  Span* claimed = free_runs::carve(r, 0, need);
  if (claimed->flags & kFreeSplit) s->flags |= kLargeMovedIn;
  claimed->flags = 0;
  uintptr_t advised_end = 0;
  if (s->flags & kLargeHugeAdv) {
    uintptr_t lo;
    huge_interior(s, s->npages, &lo, &advised_end);
  }
  s->npages = new_pages;
  s->requested = new_size;
  account_large(0, ptrdiff_t(need << kPageShift));
  huge_advise_locked(s, advised_end);
  RM_VALIDATE_SOMETIMES();
  return true;
}

Span* take_move_dst(size_t npages, size_t align, size_t phase, Region region, size_t new_size) {
  LockGuard g(g_lock);
  Span* d = take_run(npages, align, region, true, phase);
  if (!d) return nullptr;
  init_large(d, npages, new_size, d->flags);
  account_large(1, ptrdiff_t(d->bytes()));
  return d;
}

void release_moved(Span* s, bool clean, bool split) {
  LockGuard g(g_lock);
  account_large(-1, -ptrdiff_t(s->bytes()));
  uint8_t flags = (clean ? 0 : kFreeDirty) | (split || (s->flags & kLargeMovedIn) ? kFreeSplit : 0) |
                  ((s->flags & kLargeHugeAdv) ? kFreeHuge : 0);
  huge_forget_locked(s);
  give_back(s, flags, os::now_ns());
  RM_VALIDATE_SOMETIMES();
}

void moved_in(Span* d, bool remapped) {
  LockGuard g(g_lock);
  if (remapped) d->flags |= kLargeMovedIn;
  // The pages arrived (by mremap with the source's VMA flags, or by
  // UFFDIO_MOVE or a copy into the arena's own VMA): the interior gets
  // the advice now, the part a remapped interior already had included.
  huge_advise_locked(d, 0);
}

// ---- purge, fork, statistics -----------------------------------------------
size_t purge(bool all) {
  LockGuard g(g_lock);
  size_t before = purging::purged_bytes();
  if (all)
    purging::purge_all();
  else
    purging::maybe_purge(os::now_ns());
  return purging::purged_bytes() - before;
}

size_t trim_reservations() {
  LockGuard g(g_lock);
  size_t n = trim_reservations_locked();
  RM_VALIDATE_SOMETIMES();
  return n;
}

uint64_t background_step(uint32_t* seq) {
  LockGuard g(g_lock);
  return purging::background_step(os::now_ns(), seq);
}
std::atomic<uint32_t>* background_word() { return purging::background_word(); }
void set_background(bool active) {
  LockGuard g(g_lock);
  purging::set_background(active);
}
bool purge_work_seen() { return purging::work_seen(); }

void fork_prepare() { g_lock.fork_acquire(); }
void fork_parent() { g_lock.fork_release(); }
void fork_child() {
  g_lock.reset_in_child();
  purging::background_fork_child();  // the child has no thread
}

void get_stats(Stats* out) {
  LockGuard g(g_lock);
  out->mapped = g_mapped_bytes;
  out->arenas = g_arena_count;
  out->meta_bytes = g_meta_bytes;
  out->large_live = g_large_live;
  out->large_bytes = g_large_bytes;
  out->slab_bytes = g_slab_bytes;
  out->slabs = g_slabs;
  out->peak_bytes = g_peak_bytes;
  out->free_bytes = free_runs::free_bytes();
  out->dirty_bytes = free_runs::dirty_bytes();
  out->purged_bytes = purging::purged_bytes();
  out->heals = purging::heals();
  out->split_runs = purging::split_count();
  // Live blocks whose pages arrived by mremap (a walk over the runs: the
  // statistics only).
  size_t moved = 0;
  for (Arena* a = g_arenas; a; a = a->next_arena)
    for (size_t idx = 0; idx < a->npages && a->meta[idx].npages;) {
      const Span* r = &a->meta[idx];
      uint8_t kind = __atomic_load_n(&r->kind, __ATOMIC_RELAXED);
      if ((kind == kSpanLarge || kind == kSpanCached) && (r->flags & kLargeMovedIn)) moved++;
      idx += r->npages;
    }
  out->moved_blocks = moved;
  out->huge_blocks = g_huge_blocks;
  out->huge_bytes = g_huge_bytes;
  out->bg_purged_bytes = purging::background_purged_bytes();
  out->bg_heals = purging::background_heals();
  out->dirty_cap = purging::dirty_cap();
  size_t meta = map_resident_locked();
  for (Arena* a = g_arenas; a; a = a->next_arena) meta += os::resident_in(a, a->meta_bytes);
  out->meta_resident = meta;
  for (int i = 0; i < kNumCounters; i++) out->counters[i] = g_counters[i].load(std::memory_order_relaxed);
}

static bool in_arenas(uintptr_t lo, uintptr_t hi) {
  Arena* a = map_entry(lo);
  return a && lo >= a->base && hi <= a->base + a->bytes();
}

long huge_backed_bytes() { return os::anon_huge_bytes(in_arenas); }

static void validate_locked() {
  ArenaTally t{};
  validate_arenas_locked(&t);
  size_t runs = free_runs::validate_locked();
  purging::validate_locked();
  if (runs != t.free_runs) fatal("page heap: binned free runs differ from the arenas' free runs", nullptr);
  if (t.free_bytes != free_runs::free_bytes()) fatal("page heap: free bytes differ from the arenas' tally", nullptr);
  if (t.slab_bytes != g_slab_bytes) fatal("page heap: slab bytes differ from the arenas' tally", nullptr);
  if (t.large_bytes + t.cached_bytes != g_large_bytes)
    fatal("page heap: large bytes differ from the arenas' tally", nullptr);
  // The accounting sum the statistics print.
  if (g_large_bytes + g_slab_bytes + free_runs::free_bytes() != g_mapped_bytes)
    fatal("page heap: held != live + free runs", nullptr);
}

void validate() {
  LockGuard g(g_lock);
  validate_locked();
}

}  // namespace remalloc::pages
