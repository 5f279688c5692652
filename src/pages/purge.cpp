// page heap: purging with decay, the dirty cap, healing (PageHeap's purge
// functions; the lists' invariants are written in internal.h).
//
// Bounded work: no allocator call purges more than a fixed budget of pages
// (plus, past the cap, the pages it gave back or took itself) or heals more
// than two runs; a large run is purged a slice at a time, from the top of
// its dirty hull. The rest waits for the next call, or for the background
// thread (api/background.cpp), which calls background_step() in batches and
// then, while it runs, is the only one to do the decay and the heals.
#include "pages/internal.h"
#include "base/lock.h"

namespace remalloc::pages {

void PageHeap::track(Span* f) {
  RM_NEEDS_LOCK();
  // A new run goes to the head: the list is ordered by the time runs were
  // made, which is close to free_ns (the remainders of a carved run keep
  // its older free_ns), so decay may purge such a remainder a little late.
  if (f->flags & kFreeDirty) lru_.push_front(f);
  if (f->flags & kFreeSplit) {
    split_.push_front(f);
    f->on_split = 1;
  }
  if (f->flags & (kFreeDirty | kFreeSplit)) wake_background();
}

void PageHeap::untrack(Span* f) {
  RM_NEEDS_LOCK();
  lru_remove(f);
  split_remove(f);
}

// Per-call work bounds. An allocator call purges at most kCallPages pages
// (plus, past the dirty cap, as many pages as the call itself returned or
// took) in at most kCallRuns system calls, and heals at most kCallHeals
// runs; the background thread works in batches of kThreadPages/kThreadRuns
// per lock hold. MADV_DONTNEED costs a fraction of a microsecond per
// resident page and a system call per run, so a call's share stays far
// below a millisecond; what is left waits for the next call (or the thread).
constexpr size_t kCallPages = 256;  // 1 MiB
constexpr int kCallRuns = 16;
constexpr int kCallHeals = 2;
constexpr size_t kThreadPages = 4096;  // 16 MiB per lock hold
constexpr int kThreadRuns = 64;

// Gives back the memory of (part of) a free run's dirty hull
// (MADV_DONTNEED): at most `max_pages` pages, from the top of the hull.
// Returns the pages purged; the run leaves the decay list once clean.
size_t PageHeap::purge_run(Span* f, size_t max_pages) {
  RM_NEEDS_LOCK();
  if (!(f->flags & kFreeDirty)) {
    lru_remove(f);
    return 0;
  }
  Arena* a = f->arena;
  size_t pages = f->maint_hi - f->maint_lo;
  size_t lo = f->maint_lo;
  size_t charge = pages;
  if (pages > max_pages) {
    lo = f->maint_hi - max_pages;
    charge = max_pages;
    // A run that held a huge-page-advised block is purged in whole 2 MiB
    // granules: a slice ending inside a huge page would split it into
    // small pages (and keep the rest resident). Dropping a whole huge page
    // costs the kernel one page-table entry, less than the 256 small pages
    // the budget counts, so the slice is charged at the budget.
    if (f->flags & kFreeHuge) {
      constexpr size_t kGranulePages = kHugePageSize >> kPageShift;
      size_t down = align_down(lo, kGranulePages);
      lo = down > f->maint_lo ? down : f->maint_lo;
    }
    pages = f->maint_hi - lo;
  }
  size_t len = pages << kPageShift;
  if (!platform_->purge(reinterpret_cast<void*>(a->base + (lo << kPageShift)), len)) {
    // madvise refused (mlock'ed pages, say): keep the run dirty but take
    // it off the decay list, so the purge loops end.
    lru_remove(f);
    return charge;  // counts against the budget all the same
  }
  purged_bytes_ += len;
  if (in_bg_) bg_purged_bytes_ += len;
  if (lo == f->maint_lo) {
    mark_clean(f);
    lru_remove(f);
  } else {
    shrink_hull(f, f->maint_lo, lo);
  }
  return charge;
}

// Re-maps a split free run fresh (mmap MAP_FIXED), which also purges it, so
// it merges back into one VMA with its unmoved neighbours.
void PageHeap::heal_run(Span* f) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL(f->kind == kSpanFree && f->on_split);
  // Only the committed part: above the mark the arena stays inaccessible
  // (a read-write re-map there would be memory that mlockall populates).
  Arena* a = f->arena;
  uintptr_t mark = a->base + (a->committed << kPageShift);
  size_t len = f->end() <= mark ? f->bytes() : f->start < mark ? mark - f->start : 0;
  if (!platform_->remap_fresh(reinterpret_cast<void*>(f->start), len)) {
    split_remove(f);  // could not heal: forget it
    return;
  }
  if (f->flags & kFreeDirty) {
    size_t len = (f->maint_hi - f->maint_lo) << kPageShift;
    purged_bytes_ += len;
    if (in_bg_) bg_purged_bytes_ += len;
  }
  mark_clean(f);
  f->flags &= uint8_t(~(kFreeSplit | kFreeHuge));  // a fresh mapping: no advice left
  lru_remove(f);
  split_remove(f);
  heals_++;
  if (in_bg_) bg_heals_++;
}

// After the split list drained: recount the process's VMAs, and raise the
// heal threshold when healing did not bring the estimate down (the VMAs
// then belong to live moved blocks).
void PageHeap::after_heals() {
  platform_->vma_recount();
  if (platform_->vma_estimate() > platform_->vma_budget() / 2) {
    if (heal_min_ < 4096) heal_min_ *= 2;
  } else {
    heal_min_ = 1;
  }
}

// Heals up to `max_runs` split runs, purging the dirty hull of each first
// when it is larger than `*budget` pages (a heal costs what a purge of its
// resident pages costs). Returns true when the list drained.
bool PageHeap::heal_some(int max_runs, size_t* budget) {
  RM_NEEDS_LOCK();
  while (!split_.empty() && max_runs-- > 0) {
    Span* f = split_.front();
    size_t hull = (f->flags & kFreeDirty) ? f->maint_hi - f->maint_lo : 0;
    if (hull > *budget) {
      if (*budget) *budget -= purge_run(f, *budget);
      return false;
    }
    *budget -= hull;
    heal_run(f);
  }
  if (!split_.empty()) return false;
  after_heals();
  return true;
}

bool PageHeap::heal_due() {
  return split_.size() >= heal_min_ && platform_->vma_estimate() > platform_->vma_budget() / 2;
}

bool PageHeap::heal_for_budget() {
  // The relocation engine needs VMAs now: heal everything (rare; each heal
  // is one system call).
  LockGuard g(lock_);
  if (split_.empty() || split_.size() < heal_min_) return false;
  while (!split_.empty()) heal_run(split_.front());
  after_heals();
  return true;
}

void PageHeap::rearm() {
  next_purge_ns_ = !lru_.empty() ? lru_.back()->free_ns + config_.purge_delay_ns : ~uint64_t{0};
}

// ---- the dirty cap --------------------------------------------------------

// Bytes of the memory limit that free pages may use: past 7/8 of the limit
// (room for what is not the heap: code, stacks, the page cache charged to
// the group), none; below it, half the room left.
size_t PageHeap::limit_room() const {
  size_t limit = config_.memory_limit;
  if (!limit) return ~size_t{0};
  size_t thresh = limit - limit / 8;
  size_t held = held_bytes_locked();
  return thresh > held ? (thresh - held) / 2 : 0;
}

size_t PageHeap::dirty_cap() const {
  size_t held = held_bytes_locked();
  size_t cap = config_.dirty_max;
  size_t scaled = held / 100 * config_.dirty_ratio;
  if (scaled > cap) cap = scaled;
  size_t room = limit_room();
  return cap < room ? cap : room;
}

bool PageHeap::under_pressure() const {
  size_t limit = config_.memory_limit;
  return limit && held_bytes_locked() + dirty_bytes_ > limit / 2;
}

// Purges the oldest dirty pages, whatever their age, while the dirty bytes
// exceed the cap; at most `budget` pages. Returns pages left in the budget.
size_t PageHeap::enforce_cap(size_t budget, int runs) {
  RM_NEEDS_LOCK();
  size_t cap = dirty_cap();
  size_t dirty = dirty_bytes_;
  if (dirty <= cap) return budget;
  // Purge down below the cap (an eighth of it, or 1 MiB, lower), so that a
  // program hovering at the cap does not purge a little in every call.
  size_t target = cap - (cap / 8 < (size_t{1} << 20) ? cap / 8 : (size_t{1} << 20));
  while (!lru_.empty() && budget && runs-- > 0 && dirty_bytes_ > target)
    budget -= purge_run(lru_.back(), budget);
  rearm();
  return budget;
}

// Heals split runs whose delay passed, oldest first: a heal (one
// mmap(MAP_FIXED)) costs what the purge it replaces costs, and lets the
// run's VMAs merge back, so the VMAs that moves split go back to the
// kernel with the decay, not only when the budget runs short. A dirty run
// larger than the budget is purged a slice at a time first, like any other.
size_t PageHeap::decay_heals(uint64_t now, size_t budget, int runs) {
  RM_NEEDS_LOCK();
  uint64_t delay = config_.purge_delay_ns;
  while (!split_.empty() && budget && runs-- > 0 && split_.back()->free_ns + delay <= now) {
    Span* f = split_.back();
    size_t hull = (f->flags & kFreeDirty) ? f->maint_hi - f->maint_lo : 0;
    if (hull > budget) return budget - purge_run(f, budget);
    budget -= hull;
    heal_run(f);
  }
  return budget;
}

// Purges runs whose delay passed, oldest first, within the budget; a run
// whose VMAs moves split is healed instead.
size_t PageHeap::decay(uint64_t now, size_t budget, int runs) {
  RM_NEEDS_LOCK();
  if (now < next_purge_ns_) return budget;
  uint64_t delay = config_.purge_delay_ns;
  while (!lru_.empty() && budget && runs-- > 0 && lru_.back()->free_ns + delay <= now) {
    Span* f = lru_.back();
    size_t hull = f->maint_hi - f->maint_lo;
    if (f->on_split && hull <= budget) {
      heal_run(f);
      budget -= hull;
    } else {
      budget -= purge_run(f, budget);
    }
  }
  rearm();
  return budget;
}

void PageHeap::after_put(Span* f, size_t credit_pages, uint64_t now) {
  RM_NEEDS_LOCK();
  if ((f->flags & kFreeDirty) && next_purge_ns_ == ~uint64_t{0})
    next_purge_ns_ = now + config_.purge_delay_ns;
  // Past the cap on memory held by free runs, purge the oldest at once
  // instead of waiting, as much as this call gave back plus a fixed budget:
  // the cap holds without any call paying for another's frees.
  size_t budget = enforce_cap(kCallPages + credit_pages, kCallRuns);
  // Past half the VMA budget, heal split runs (a few per call; the
  // background thread, when running, does it).
  if (!bg_active_ && (f->flags & kFreeSplit) && heal_due()) heal_some(kCallHeals, &budget);
}

void PageHeap::maybe_purge(uint64_t now, size_t credit_pages) {
  RM_NEEDS_LOCK();
  size_t budget = enforce_cap(kCallPages + credit_pages, kCallRuns);
  if (bg_active_) return;  // the thread does the decay
  // The decay's share: the fixed budget, plus as many pages as the call
  // takes (purging them costs less than the caller's first touch of its
  // new pages), so that the decay keeps pace with a program allocating
  // large blocks fast.
  size_t share = kCallPages + credit_pages;
  share = decay(now, budget < share ? budget : share, kCallRuns);
  if (!split_.empty() && share) decay_heals(now, share, kCallHeals);
}

// The pages of the descriptor pool that hold only free slots go back too:
// after many runs were freed and coalesced (the slabs of exited threads),
// their descriptors are most of what stays resident of the metadata. A
// purged slot reads as zeros, which is what a free slot reads as (no run),
// and slot_take() writes every field of the one it hands out.
void PageHeap::purge_free_descriptors() {
  for (Arena* a = arenas_; a; a = a->next_arena) {
    const uintptr_t pool = reinterpret_cast<uintptr_t>(a->meta);
    uintptr_t lo = 0, hi = 0;  // whole pages of free slots, purged together
    auto flush = [&] {
      if (hi > lo) platform_->purge(reinterpret_cast<void*>(lo), hi - lo);
    };
    for (uintptr_t p = align_up(pool, kPageSize); p < reinterpret_cast<uintptr_t>(a->meta + a->slot_high); p += kPageSize) {
      size_t first = (p - pool) / sizeof(Span), last = (p + kPageSize - 1 - pool) / sizeof(Span);
      bool free_page = true;
      for (size_t i = first; i <= last && i < a->slot_high && free_page; i++) free_page = !slot_in_use(a, i);
      if (!free_page) continue;
      if (hi != p) {
        flush();
        lo = p;
      }
      hi = p + kPageSize;
    }
    flush();
  }
}

void PageHeap::purge_all_locked() {
  RM_NEEDS_LOCK();
  while (!lru_.empty()) purge_run(lru_.back());
  if (!split_.empty()) {
    while (!split_.empty()) heal_run(split_.front());
    after_heals();
  }
  purge_free_descriptors();
  next_purge_ns_ = ~uint64_t{0};
}

// Before a fork (the prepare handler, the lock held for the forking
// thread): the decay's dirty free pages go back now. They are garbage that
// fork would copy the page-table entries of into the child (and write-
// protect), and that the parent would then copy on write when it reuses
// them while the child lives (Redis's BGSAVE child, for seconds). Measured
// on `bench_forklat short` (fork + exit + wait after reallocs and frees),
// 6 alternating runs, quiet machine: 13.3 ms per fork with the dirty pages
// kept, 7.4 ms with REMALLOC_PURGE_DELAY=0, glibc 6.3 ms. The purge costs
// what the decay would have paid later; the heals and descriptors wait.
void PageHeap::purge_before_fork_locked() {
  RM_NEEDS_LOCK();
  if (lru_.empty()) return;
  while (!lru_.empty()) purge_run(lru_.back());
  next_purge_ns_ = ~uint64_t{0};
}

// ---- the background thread's share ------------------------------------------
void PageHeap::set_background(bool active) {
  LockGuard g(lock_);
  bg_active_ = active;
}

uint64_t PageHeap::background_step(uint32_t* seq) {
  LockGuard g(lock_);
  uint64_t now = platform_->now_ns();
  in_bg_ = true;
  size_t budget = enforce_cap(kThreadPages, kThreadRuns);
  budget = decay(now, budget, kThreadRuns);
  // Heal split runs once their delay passed (an mmap each): the thread has
  // the time, and merged VMAs make later moves and faults cheaper.
  bool healed_all = true;
  if (!split_.empty() && budget) {
    Span* f = split_.front();
    if (f->free_ns + config_.purge_delay_ns <= now) healed_all = heal_some(kThreadRuns, &budget);
  }
  in_bg_ = false;
  uint64_t next;
  if (!budget || !healed_all || dirty_bytes_ > dirty_cap()) {
    next = 0;  // more to do now
  } else {
    next = next_purge_ns_;
    if (!split_.empty()) {
      uint64_t h = split_.front()->free_ns + config_.purge_delay_ns;
      if (h < next) next = h;
    }
    if (next != ~uint64_t{0}) next = next <= now ? 1 : next - now;
  }
  // Nothing pending at all: the thread waits until a run becomes dirty or
  // split (track() wakes it). A timed wait needs no wake: newer runs are
  // due later than the one it waits for.
  bg_sleeping_ = next == ~uint64_t{0};
  *seq = bg_seq_.load(std::memory_order_relaxed);
  return next;
}

// A new dirty or split run while the thread waits for work: wake it.
void PageHeap::wake_background() {
  if (!work_seen_.load(std::memory_order_relaxed)) work_seen_.store(true, std::memory_order_relaxed);
  if (!bg_sleeping_) return;
  bg_sleeping_ = false;
  bg_seq_.fetch_add(1, std::memory_order_release);
  futex_wake(&bg_seq_);
}

Span* PageHeap::find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip) {
  RM_NEEDS_LOCK();
  // The newest first. They are often smaller than the request (the holes
  // of small slabs, freed one page or a few at a time), and a run this
  // walk misses is left to find(), which takes the best fit by size,
  // purged or not: with 32 looked at, bench_manyprod short 8 held 42 MiB
  // at its peak, 14-21 MiB of it free dirty runs, while fresh slabs
  // touched new pages; with 1024, 35 MiB and 18% fewer faults. (The walk
  // holds the page lock; the decay takes runs off this list as it purges
  // them, so it holds what was freed within the purge delay.) Near the
  // memory limit, look further still: every reused resident page is a page
  // the group is not charged for twice.
  int budget = under_pressure() ? 4096 : kResidentLook;
  for (Span* f = lru_.front(); f && budget-- > 0; f = LruList::next(f)) {
    if (f->arena->region != region || f->npages < npages) continue;
    size_t run = index_of(f->arena, f);
    size_t end = run + f->npages;
    size_t want = f->maint_lo;  // start on the dirty pages...
    if (want + npages > end) want = end - npages;  // ...as far as the run allows
    if (align > 1) {
      size_t page = (f->arena->base >> kPageShift) + want;
      size_t down = (page + align - (phase & (align - 1))) & (align - 1);
      if (want >= run + down) {
        want -= down;
      } else {
        want += (align - down) & (align - 1);
        if (want + npages > end) continue;
      }
    }
    *skip = want - run;
    return f;
  }
  return nullptr;
}

size_t PageHeap::validate_purge_locked() {
  RM_NEEDS_LOCK();
  lru_.validate([](const char*, const void* at) { fatal("purge: broken decay list links", at); },
                [](const Span* f) {
                  if (f->kind != kSpanFree || !(f->flags & kFreeDirty))
                    fatal("purge: clean or non-free run on the decay list", f);
                });
  split_.validate([](const char*, const void* at) { fatal("purge: broken split list links", at); },
                  [](const Span* f) {
                    if (f->kind != kSpanFree || !f->on_split || !(f->flags & kFreeSplit) ||
                        f->arena->region != kRegionNormal)
                      fatal("purge: wrong run on the split list", f);
                  });
  return lru_.size();
}

}  // namespace remalloc::pages
