// page heap: allocation and free of spans (slabs and large blocks), all
// accounting of bytes held for blocks, the primitives the relocation engine
// uses, statistics and the validator; the process-wide instance and the
// free functions of page_heap.h that forward to it.
//
// Accounting invariant (validate checks it against the arenas):
//   mapped = large_bytes + slab_bytes + free_bytes
// where large_bytes counts live large blocks and those in threads' reuse
// caches (kSpanCached), slab_bytes every slab, free_bytes every free run.
#include "pages/internal.h"
#include "platform/os.h"

namespace remalloc::pages {

// The process-wide instance, on the real platform: both constant-
// initialised (no static constructor), never destroyed.
static constinit OsPlatform g_os_platform;
constinit PageHeap g_page_heap{&g_os_platform};

// The checked build validates after every `kValidateEvery` page-heap
// operations (every one would make the suite quadratic in heap size).
constexpr size_t kValidateEvery = 64;
RM_INLINE void PageHeap::validate_sometimes() {
  if constexpr (REMALLOC_DEBUG >= 3) {
    if (++ops_ % kValidateEvery == 0) validate_locked();
  }
}

void PageHeap::configure(const Config& c) {
  LockGuard g(lock_);
  config_ = c;
  prefault_on_.store(c.prefault, std::memory_order_relaxed);
}

void PageHeap::note_peak() {
  size_t live = large_bytes_ + slab_bytes_;
  if (live > peak_bytes_) peak_bytes_ = live;
}

void PageHeap::account_large(ptrdiff_t blocks, ptrdiff_t bytes) {
  RM_NEEDS_LOCK();
  // Accounting never goes below zero.
  RM_ASSERT_INTERNAL(ptrdiff_t(large_live_) + blocks >= 0 && ptrdiff_t(large_bytes_) + bytes >= 0);
  large_live_ += size_t(blocks);
  large_bytes_ += size_t(bytes);
  if (bytes > 0) note_peak();
}

// A run of npages from the free pool (a new arena if needed). Fresh
// allocations reuse resident memory first; realloc destinations
// (room_after) want clean runs with room to grow, since movers overwrite or
// clear them.
Span* PageHeap::take_run(size_t npages, size_t align, Region region, bool room_after, size_t phase) {
  RM_NEEDS_LOCK();
  RM_ASSERT(npages > 0 && is_pow2(align) && phase < align);
  size_t skip = 0;
  Span* f = nullptr;
  if (!room_after) f = find_resident(npages, align, phase, region, &skip);
  if (!f && room_after) f = find(npages, align, phase, region, npages * 2, &skip);
  if (!f) f = find(npages, align, phase, region, npages, &skip);
  if (!f) {
    if (new_arena_locked(npages + phase, align, region)) {
      if (room_after) f = find(npages, align, phase, region, npages * 2, &skip);
      if (!f) f = find(npages, align, phase, region, npages, &skip);
    } else if (region == kRegionNormal) {
      // Out of address space (RLIMIT_AS): the free runs of arenas registered
      // for uffd moves serve ordinary blocks as well. (Not the other way:
      // a registration would turn off mremap's fast path in a normal arena.)
      f = find(npages, align, phase, kRegionUffd, npages, &skip);
    }
    if (!f) return nullptr;
  }
  // The pages become read-write before anyone can use them.
  if (!commit_locked(f->arena, index_of(f->arena, f) + skip + npages)) return nullptr;
  return carve(f, skip, npages);
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

bool PageHeap::huge_policy_applies(const Span* s) const {
  return config_.hugepage && s->arena->region == kRegionNormal &&
         block_bytes(s) >= config_.hugepage_threshold;
}

// Advises the interior of s (the lock held), or the part of it above
// `from` (bytes already advised end there).
void PageHeap::huge_advise_locked(Span* s, uintptr_t from) {
  RM_NEEDS_LOCK();
  if (!huge_policy_applies(s)) return;
  uintptr_t lo, hi;
  huge_interior(s, s->npages, &lo, &hi);
  if (from > lo) lo = from;
  if (lo >= hi) return;
  bool first = !(s->flags & kLargeHugeAdv);
  if (first && !platform_->vma_can_add(2)) return;  // the VMA budget comes first
  if (!platform_->advise_hugepage(reinterpret_cast<void*>(lo), hi - lo, true)) return;
  if (first) {
    s->flags |= kLargeHugeAdv | kLargeMovedIn;
    platform_->vma_note_added(2);
    huge_blocks_++;
  }
  huge_bytes_ += hi - lo;
}

// The bytes of s's interior that the advice covers (for the accounting).
static size_t huge_advised_bytes(const Span* s) {
  if (!(s->flags & kLargeHugeAdv)) return 0;
  uintptr_t lo, hi;
  huge_interior(s, s->npages, &lo, &hi);
  return hi - lo;
}

void PageHeap::huge_forget_locked(Span* s) {
  RM_NEEDS_LOCK();
  if (!(s->flags & kLargeHugeAdv)) return;
  RM_ASSERT_INTERNAL(huge_blocks_ > 0 && huge_bytes_ >= huge_advised_bytes(s));
  huge_blocks_--;
  huge_bytes_ -= huge_advised_bytes(s);
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

void PageHeap::init_large(Span* s, size_t npages, size_t requested, uint8_t run_flags) {
  RM_ASSERT_INTERNAL(s->kind == kSpanNone && s->npages == npages);
  s->kind = kSpanLarge;
  s->npages = npages;
  s->requested = requested;
  s->flags = (run_flags & kFreeSplit) ? kLargeMovedIn : 0;
}

Span* PageHeap::alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed) {
  RM_ASSERT(npages > 0 && is_pow2(align_pages) && requested <= (npages << kPageShift));
  npages += guard_tail_pages();  // secure build: the guard page after the bytes
  Span* s = alloc_large_unguarded(npages, align_pages, requested, zeroed);
  if (s) guard_install_tail(s);  // a system call: outside the lock
  return s;
}

Span* PageHeap::alloc_large_unguarded(size_t npages, size_t align_pages, size_t requested, bool* zeroed) {
  bool huge = (npages << kPageShift) >= config_.huge_threshold;
  if (huge && align_pages < (kHugePageSize >> kPageShift)) align_pages = kHugePageSize >> kPageShift;
  LockGuard g(lock_);
  // Take the pages first, then purge: the block may reuse resident pages
  // that the cap or the decay would otherwise purge just before.
  Span* s = take_run(npages, align_pages, kRegionNormal, false, 0);
  maybe_purge(platform_->now_ns(), npages);
  if (!s) return nullptr;
  RM_ASSERT_INTERNAL((s->start & ((align_pages << kPageShift) - 1)) == 0);
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
    if (lo < hi) platform_->remap_fresh(reinterpret_cast<void*>(lo), hi - lo);
  }
  huge_advise_locked(s, 0);
  account_large(1, ptrdiff_t(s->bytes()));
  validate_sometimes();
  return s;
}

Span* PageHeap::alloc_slab(size_t npages) {
  RM_ASSERT(npages > 0);
  npages += guard_tail_pages();  // secure build: the guard page after the slab
  Span* s = alloc_slab_unguarded(npages);
  if (s) guard_install_tail(s);  // a system call: outside the lock
  return s;
}

Span* PageHeap::alloc_slab_unguarded(size_t npages) {
  LockGuard g(lock_);
  Span* s = take_run(npages, 1, kRegionNormal, false, 0);
  maybe_purge(platform_->now_ns(), npages);
  if (!s) return nullptr;
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  for (size_t i = 1; i < npages; i++) a->back[idx + i] = slot_of(a, s);
  s->kind = kSpanSlab;
  s->flags = 0;
  slabs_++;
  slab_bytes_ += s->bytes();
  note_peak();
  validate_sometimes();
  return s;
}

void PageHeap::prefault(Span* s, uintptr_t from, uintptr_t to) {
  RM_ASSERT_INTERNAL(s->kind == kSpanSlab && from % kPageSize == 0 && to % kPageSize == 0);
  RM_ASSERT_INTERNAL(from >= s->start && to <= s->end() && from < to);
  if (!prefault_on_.load(std::memory_order_relaxed)) return;
  uintptr_t base = s->arena->base;
  uintptr_t lo = base + (s->maint_lo << kPageShift), hi = base + (s->maint_hi << kPageShift);
  RM_ASSERT_INTERNAL(lo < hi || lo == s->start);
  auto populate = [this](uintptr_t a, uintptr_t b) {
    if (platform_->populate(reinterpret_cast<void*>(a), b - a))
      prefault_pages_.fetch_add((b - a) >> kPageShift, std::memory_order_relaxed);
  };
  // The parts of [from, to) below and above the hull (an empty hull sits
  // at the run's start: all of [from, to) is above it).
  if (from < lo) populate(from, to < lo ? to : lo);
  if (to > hi) populate(from > hi ? from : hi, to);
}

// Returns the pages of span s (already off the books) to the free pool.
void PageHeap::give_back(Span* s, uint8_t flags, uint64_t now) {
  RM_NEEDS_LOCK();
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  size_t n = s->npages;
  slot_drop(a, s);
  Span* f = put(a, idx, n, flags, now);
  after_put(f, n, now);
}

void PageHeap::free_span(Span* s) {
  LockGuard g(lock_);
  RM_ASSERT(s->kind == kSpanLarge || s->kind == kSpanSlab);
  RM_ASSERT_INTERNAL(s->arena && s->arena->back[index_of(s->arena, s)] == slot_of(s->arena, s));
  if constexpr (kSecure) guard_remove_tail(s);  // guards.cpp
  uint64_t now = platform_->now_ns();
  uint8_t flags = kFreeDirty;
  if (s->kind == kSpanLarge) {
    account_large(-1, -ptrdiff_t(s->bytes()));
    if (s->flags & kLargeMovedIn) flags |= kFreeSplit;
    if (s->flags & kLargeHugeAdv) flags |= kFreeHuge;
    huge_forget_locked(s);
  } else {
    RM_ASSERT(s->slab_bytes == 0 && s->heap == nullptr);  // the small heap let go of it
    RM_ASSERT_INTERNAL(slabs_ > 0 && slab_bytes_ >= s->bytes());
    slabs_--;
    slab_bytes_ -= s->bytes();
  }
  size_t npages = s->npages;
  give_back(s, flags, now);
  // With REMALLOC_PURGE_DELAY=0 the decay's share of a free includes the
  // pages it gave back, so they go back at once. Otherwise not: a larger
  // share purges runs that the next allocation would have reused
  // (hugechurn: 53.5k page faults instead of 40.6k).
  maybe_purge(now, config_.purge_delay_ns == 0 ? npages : 0);
  validate_sometimes();
}

// ---- primitives of the relocation engine ----------------------------------
bool PageHeap::resize_in_place(Span* s, size_t new_pages, size_t new_size) {
  LockGuard g(lock_);
  RM_ASSERT(s->kind == kSpanLarge && new_pages > 0 && new_size <= (new_pages << kPageShift));
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  if (new_pages < s->npages) {
    // Shrink: the tail pages become a dirty free run (whole granules of a
    // block that may hold huge pages).
    new_pages = huge_keep_pages(s, new_pages);
    s->requested = new_size;
    if (new_pages == s->npages) {
      validate_sometimes();
      return true;
    }
    size_t tail = s->npages - new_pages;
    bool huge = s->flags & kLargeHugeAdv;
    huge_forget_locked(s);
    s->npages = new_pages;
    if (huge) {
      huge_blocks_++;
      huge_bytes_ += huge_advised_bytes(s);
    }
    account_large(0, -ptrdiff_t(tail << kPageShift));
    uint8_t flags = kFreeDirty | ((s->flags & kLargeMovedIn) ? kFreeSplit : 0) | (huge ? kFreeHuge : 0);
    uint64_t now = platform_->now_ns();
    Span* f = put(a, idx + new_pages, tail, flags, now);
    after_put(f, tail, now);
    validate_sometimes();
    return true;
  }
  // Grow: claim the start of the free run that follows.
  Span* r = run_at(a, idx + s->npages);
  size_t need = new_pages - s->npages;
  if (!r || r->npages < need) return false;
  if (!commit_locked(a, idx + new_pages)) return false;
  Span* claimed = carve(r, 0, need);
  if (claimed->flags & kFreeSplit) s->flags |= kLargeMovedIn;
  slot_drop(a, claimed);  // its pages are s's now
  uintptr_t advised_end = 0;
  if (s->flags & kLargeHugeAdv) {
    uintptr_t lo;
    huge_interior(s, s->npages, &lo, &advised_end);
  }
  s->npages = new_pages;
  s->requested = new_size;
  account_large(0, ptrdiff_t(need << kPageShift));
  huge_advise_locked(s, advised_end);
  validate_sometimes();
  return true;
}

Span* PageHeap::take_move_dst(size_t npages, size_t align, size_t phase, Region region, size_t new_size) {
  LockGuard g(lock_);
  Span* d = take_run(npages, align, region, true, phase);
  if (!d) return nullptr;
  init_large(d, npages, new_size, d->flags);
  account_large(1, ptrdiff_t(d->bytes()));
  return d;
}

void PageHeap::release_moved_locked(Span* s, bool clean, bool split) {
  RM_NEEDS_LOCK();
  RM_ASSERT(s->kind == kSpanLarge);
  account_large(-1, -ptrdiff_t(s->bytes()));
  uint8_t flags = (clean ? 0 : kFreeDirty) | (split || (s->flags & kLargeMovedIn) ? kFreeSplit : 0) |
                  ((s->flags & kLargeHugeAdv) ? kFreeHuge : 0);
  huge_forget_locked(s);
  give_back(s, flags, platform_->now_ns());
  validate_sometimes();
}

void PageHeap::release_moved(Span* s, bool clean, bool split) {
  LockGuard g(lock_);
  release_moved_locked(s, clean, split);
}

void PageHeap::finish_move(Span* src, Span* dst, bool src_clean, bool remapped) {
  LockGuard g(lock_);
  RM_ASSERT(dst->kind == kSpanLarge && dst->npages >= src->npages);
  // dst's flags are the page heap's (the span contract): written here,
  // under the lock, not by the engine while it holds none.
  if (remapped) dst->flags |= kLargeMovedIn;
  // The pages arrived (by mremap with the source's VMA flags, or by
  // UFFDIO_MOVE or a copy into the arena's own VMA): the interior gets
  // the advice now, the part a remapped interior already had included.
  huge_advise_locked(dst, 0);
  release_moved_locked(src, src_clean, remapped);
}

// ---- purge, fork, statistics -----------------------------------------------
size_t PageHeap::purge(bool all) {
  LockGuard g(lock_);
  size_t before = purged_bytes_;
  if (all)
    purge_all_locked();
  else
    maybe_purge(platform_->now_ns());
  return purged_bytes_ - before;
}

size_t PageHeap::trim_reservations() {
  LockGuard g(lock_);
  size_t n = trim_reservations_locked();
  validate_sometimes();
  return n;
}

void PageHeap::fork_child() {
  lock_.reset_in_child();
  // The child has no background thread.
  bg_active_ = false;
  bg_sleeping_ = false;
  in_bg_ = false;
}

void PageHeap::get_stats(Stats* out) {
  LockGuard g(lock_);
  out->mapped = mapped_bytes_;
  out->arenas = arena_count_;
  out->meta_bytes = meta_bytes_;
  out->large_live = large_live_;
  out->large_bytes = large_bytes_;
  out->slab_bytes = slab_bytes_;
  out->slabs = slabs_;
  out->peak_bytes = peak_bytes_;
  out->free_bytes = free_bytes_;
  out->dirty_bytes = dirty_bytes_;
  out->purged_bytes = purged_bytes_;
  out->heals = heals_;
  out->split_runs = split_.size();
  // Live blocks whose pages arrived by mremap (a walk over the runs: the
  // statistics only).
  size_t moved = 0;
  for (Arena* a = arenas_; a; a = a->next_arena)
    for (size_t idx = 0; idx < a->npages;) {
      const Span* r = &a->meta[a->back[idx]];
      if (r->npages == 0 || r->start != a->base + (idx << kPageShift)) break;  // the validator says why
      uint8_t kind = __atomic_load_n(&r->kind, __ATOMIC_RELAXED);
      if ((kind == kSpanLarge || kind == kSpanCached) && (r->flags & kLargeMovedIn)) moved++;
      idx += r->npages;
    }
  out->moved_blocks = moved;
  out->huge_blocks = huge_blocks_;
  out->huge_bytes = huge_bytes_;
  out->bg_purged_bytes = bg_purged_bytes_;
  out->bg_heals = bg_heals_;
  out->dirty_cap = dirty_cap();
  size_t meta = map_resident();
  for (Arena* a = arenas_; a; a = a->next_arena) meta += os::resident_in(a, a->meta_bytes);
  out->meta_resident = meta;
  for (int i = 0; i < kNumCounters; i++) out->counters[i] = counters_[i].load(std::memory_order_relaxed);
  out->prefault_pages = prefault_pages_.load(std::memory_order_relaxed);
}

static bool in_arenas(uintptr_t lo, uintptr_t hi) {
  Arena* a = map_entry(lo);
  return a && lo >= a->base && hi <= a->base + a->bytes();
}

// The arenas of every instance (those in the arena map); reads a file.
long huge_backed_bytes() { return os::anon_huge_bytes(in_arenas); }

void PageHeap::validate_locked() {
  RM_NEEDS_LOCK();
  ArenaTally t{};
  validate_arenas_locked(&t);
  size_t runs = validate_runs_locked();
  validate_purge_locked();
  if (runs != t.free_runs) fatal("page heap: binned free runs differ from the arenas' free runs", nullptr);
  if (t.free_bytes != free_bytes_) fatal("page heap: free bytes differ from the arenas' tally", nullptr);
  if (t.slab_bytes != slab_bytes_) fatal("page heap: slab bytes differ from the arenas' tally", nullptr);
  if (t.large_bytes + t.cached_bytes != large_bytes_)
    fatal("page heap: large bytes differ from the arenas' tally", nullptr);
  // The accounting sum the statistics print.
  if (large_bytes_ + slab_bytes_ + free_bytes_ != mapped_bytes_)
    fatal("page heap: held != live + free runs", nullptr);
}

void PageHeap::validate() {
  LockGuard g(lock_);
  validate_locked();
}

// ---- page_heap.h: the front door, over the process-wide instance ----------
void configure(const Config& c) { g_page_heap.configure(c); }
const Config& config() { return g_page_heap.config(); }
Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed) {
  return g_page_heap.alloc_large(npages, align_pages, requested, zeroed);
}
Span* alloc_slab(size_t npages) { return g_page_heap.alloc_slab(npages); }
void free_span(Span* s) { g_page_heap.free_span(s); }
void prefault(Span* s, uintptr_t from, uintptr_t to) { g_page_heap.prefault(s, from, to); }
void* realloc_large(Span* s, size_t new_size) { return g_page_heap.realloc_large(s, new_size); }
size_t purge(bool all) { return g_page_heap.purge(all); }
size_t trim_reservations() { return g_page_heap.trim_reservations(); }
uint64_t background_step(uint32_t* seq) { return g_page_heap.background_step(seq); }
std::atomic<uint32_t>* background_word() { return g_page_heap.background_word(); }
void set_background(bool active) { g_page_heap.set_background(active); }
bool purge_work_seen() { return g_page_heap.purge_work_seen(); }
void fork_prepare() { g_page_heap.fork_prepare(); }
void fork_parent() { g_page_heap.fork_parent(); }
void fork_child() { g_page_heap.fork_child(); }
void get_stats(Stats* out) { g_page_heap.get_stats(out); }
void validate() { g_page_heap.validate(); }

}  // namespace remalloc::pages
