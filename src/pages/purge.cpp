// page heap: purging with decay, the dirty cap, healing (see purge.h).
#include "pages/purge.h"

#include "pages/free_runs.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages::purging {

static Span* g_lru_head;  // newest dirty run
static Span* g_lru_tail;  // oldest
static Span* g_split_head;  // free runs whose VMAs page moves may have split, newest first
static Span* g_split_tail;  // the oldest of them
static size_t g_split_count;
// Heal only once this many split runs wait: when live moved blocks hold the
// VMAs, healing frees nothing, so the threshold doubles after such a heal.
static size_t g_heal_min = 1;
static uint64_t g_next_purge_ns = ~uint64_t{0};  // earliest due purge, or never
static size_t g_purged_bytes;
static size_t g_heals;

static bool on_lru(const Span* f) { return f->lru_prev || f->lru_next || g_lru_head == f; }

static void lru_remove(Span* f) {
  if (!on_lru(f)) return;
  if (f->lru_prev)
    f->lru_prev->lru_next = f->lru_next;
  else
    g_lru_head = f->lru_next;
  if (f->lru_next)
    f->lru_next->lru_prev = f->lru_prev;
  else
    g_lru_tail = f->lru_prev;
  f->lru_next = f->lru_prev = nullptr;
}

static void lru_push(Span* f) {
  f->lru_prev = nullptr;
  f->lru_next = g_lru_head;
  if (g_lru_head) g_lru_head->lru_prev = f;
  g_lru_head = f;
  if (!g_lru_tail) g_lru_tail = f;
}

static void split_push(Span* f) {
  f->split_prev = nullptr;
  f->split_next = g_split_head;
  if (g_split_head) g_split_head->split_prev = f;
  g_split_head = f;
  if (!g_split_tail) g_split_tail = f;
  f->on_split = 1;
  g_split_count++;
}

static void split_remove(Span* f) {
  if (!f->on_split) return;
  if (f->split_prev)
    f->split_prev->split_next = f->split_next;
  else
    g_split_head = f->split_next;
  if (f->split_next)
    f->split_next->split_prev = f->split_prev;
  else
    g_split_tail = f->split_prev;
  f->split_next = f->split_prev = nullptr;
  f->on_split = 0;
  g_split_count--;
}

static void wake_background();

void track(Span* f) {
  // A new run goes to the head: the list is ordered by the time runs were
  // made, which is close to free_ns (the remainders of a carved run keep
  // its older free_ns), so decay may purge such a remainder a little late.
  if (f->flags & kFreeDirty) lru_push(f);
  if (f->flags & kFreeSplit) split_push(f);
  if (f->flags & (kFreeDirty | kFreeSplit)) wake_background();
}

void untrack(Span* f) {
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

static bool g_bg_active;    // a background thread does the decay and heals
static bool g_bg_sleeping;  // it waits for work (wake it when some comes)
static std::atomic<uint32_t> g_bg_seq{0};
static size_t g_bg_purged_bytes;
static size_t g_bg_heals;
static bool g_in_bg;  // the current purge runs on the background thread

// Gives back the memory of (part of) a free run's dirty hull
// (MADV_DONTNEED): at most `max_pages` pages, from the top of the hull.
// Returns the pages purged; the run leaves the decay list once clean.
static size_t purge_run(Span* f, size_t max_pages = ~size_t{0}) {
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
  if (!os::purge(reinterpret_cast<void*>(a->base + (lo << kPageShift)), len)) {
    // madvise refused (mlock'ed pages, say): keep the run dirty but take
    // it off the decay list, so the purge loops end.
    lru_remove(f);
    return charge;  // counts against the budget all the same
  }
  g_purged_bytes += len;
  if (g_in_bg) g_bg_purged_bytes += len;
  if (lo == f->maint_lo) {
    free_runs::mark_clean(f);
    lru_remove(f);
  } else {
    free_runs::shrink_hull(f, f->maint_lo, lo);
  }
  return charge;
}

// Re-maps a split free run fresh (mmap MAP_FIXED), which also purges it, so
// it merges back into one VMA with its unmoved neighbours.
static void heal_run(Span* f) {
  // Only the committed part: above the mark the arena stays inaccessible
  // (a read-write re-map there would be memory that mlockall populates).
  Arena* a = f->arena;
  uintptr_t mark = a->base + (a->committed << kPageShift);
  size_t len = f->end() <= mark ? f->bytes() : f->start < mark ? mark - f->start : 0;
  if (!os::remap_fresh(reinterpret_cast<void*>(f->start), len)) {
    split_remove(f);  // could not heal: forget it
    return;
  }
  if (f->flags & kFreeDirty) {
    size_t len = (f->maint_hi - f->maint_lo) << kPageShift;
    g_purged_bytes += len;
    if (g_in_bg) g_bg_purged_bytes += len;
  }
  free_runs::mark_clean(f);
  f->flags &= uint8_t(~(kFreeSplit | kFreeHuge));  // a fresh mapping: no advice left
  lru_remove(f);
  split_remove(f);
  g_heals++;
  if (g_in_bg) g_bg_heals++;
}

// After the split list drained: recount the process's VMAs, and raise the
// heal threshold when healing did not bring the estimate down (the VMAs
// then belong to live moved blocks).
static void after_heals() {
  vma::recount();
  if (vma::estimate() > vma::budget() / 2) {
    if (g_heal_min < 4096) g_heal_min *= 2;
  } else {
    g_heal_min = 1;
  }
}

// Heals up to `max_runs` split runs, purging the dirty hull of each first
// when it is larger than `*budget` pages (a heal costs what a purge of its
// resident pages costs). Returns true when the list drained.
static bool heal_some(int max_runs, size_t* budget) {
  while (g_split_head && max_runs-- > 0) {
    Span* f = g_split_head;
    size_t hull = (f->flags & kFreeDirty) ? f->maint_hi - f->maint_lo : 0;
    if (hull > *budget) {
      if (*budget) *budget -= purge_run(f, *budget);
      return false;
    }
    *budget -= hull;
    heal_run(f);
  }
  if (g_split_head) return false;
  after_heals();
  return true;
}

static bool heal_due() { return g_split_count >= g_heal_min && vma::estimate() > vma::budget() / 2; }

bool heal_for_budget() {
  // The relocation engine needs VMAs now: heal everything (rare; each heal
  // is one system call).
  LockGuard g(g_lock);
  if (!g_split_count || g_split_count < g_heal_min) return false;
  while (g_split_head) heal_run(g_split_head);
  after_heals();
  return true;
}

static void rearm() {
  g_next_purge_ns = g_lru_tail ? g_lru_tail->free_ns + g_config.purge_delay_ns : ~uint64_t{0};
}

// ---- the dirty cap --------------------------------------------------------
static size_t held_bytes() { return held_bytes_locked(); }

// Bytes of the memory limit that free pages may use: past 7/8 of the limit
// (room for what is not the heap: code, stacks, the page cache charged to
// the group), none; below it, half the room left.
static size_t limit_room() {
  size_t limit = g_config.memory_limit;
  if (!limit) return ~size_t{0};
  size_t thresh = limit - limit / 8;
  size_t held = held_bytes();
  return thresh > held ? (thresh - held) / 2 : 0;
}

size_t dirty_cap() {
  size_t held = held_bytes();
  size_t cap = g_config.dirty_max;
  size_t scaled = held / 100 * g_config.dirty_ratio;
  if (scaled > cap) cap = scaled;
  size_t room = limit_room();
  return cap < room ? cap : room;
}

bool under_pressure() {
  size_t limit = g_config.memory_limit;
  return limit && held_bytes() + free_runs::dirty_bytes() > limit / 2;
}

// Purges the oldest dirty pages, whatever their age, while the dirty bytes
// exceed the cap; at most `budget` pages. Returns pages left in the budget.
static size_t enforce_cap(size_t budget, int runs) {
  size_t cap = dirty_cap();
  size_t dirty = free_runs::dirty_bytes();
  if (dirty <= cap) return budget;
  // Purge down below the cap (an eighth of it, or 1 MiB, lower), so that a
  // program hovering at the cap does not purge a little in every call.
  size_t target = cap - (cap / 8 < (size_t{1} << 20) ? cap / 8 : (size_t{1} << 20));
  while (g_lru_tail && budget && runs-- > 0 && free_runs::dirty_bytes() > target)
    budget -= purge_run(g_lru_tail, budget);
  rearm();
  return budget;
}

// Heals split runs whose delay passed, oldest first: a heal (one
// mmap(MAP_FIXED)) costs what the purge it replaces costs, and lets the
// run's VMAs merge back, so the VMAs that moves split go back to the
// kernel with the decay, not only when the budget runs short. A dirty run
// larger than the budget is purged a slice at a time first, like any other.
static size_t decay_heals(uint64_t now, size_t budget, int runs) {
  uint64_t delay = g_config.purge_delay_ns;
  while (g_split_tail && budget && runs-- > 0 && g_split_tail->free_ns + delay <= now) {
    Span* f = g_split_tail;
    size_t hull = (f->flags & kFreeDirty) ? f->maint_hi - f->maint_lo : 0;
    if (hull > budget) return budget - purge_run(f, budget);
    budget -= hull;
    heal_run(f);
  }
  return budget;
}

// Purges runs whose delay passed, oldest first, within the budget; a run
// whose VMAs moves split is healed instead.
static size_t decay(uint64_t now, size_t budget, int runs) {
  if (now < g_next_purge_ns) return budget;
  uint64_t delay = g_config.purge_delay_ns;
  while (g_lru_tail && budget && runs-- > 0 && g_lru_tail->free_ns + delay <= now) {
    Span* f = g_lru_tail;
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

void after_put(Span* f, size_t credit_pages, uint64_t now) {
  if ((f->flags & kFreeDirty) && g_next_purge_ns == ~uint64_t{0})
    g_next_purge_ns = now + g_config.purge_delay_ns;
  // Past the cap on memory held by free runs, purge the oldest at once
  // instead of waiting, as much as this call gave back plus a fixed budget:
  // the cap holds without any call paying for another's frees.
  size_t budget = enforce_cap(kCallPages + credit_pages, kCallRuns);
  // Past half the VMA budget, heal split runs (a few per call; the
  // background thread, when running, does it).
  if (!g_bg_active && (f->flags & kFreeSplit) && heal_due()) heal_some(kCallHeals, &budget);
}

void maybe_purge(uint64_t now, size_t credit_pages) {
  size_t budget = enforce_cap(kCallPages + credit_pages, kCallRuns);
  if (g_bg_active) return;  // the thread does the decay
  // The decay's share: the fixed budget, plus as many pages as the call
  // takes (purging them costs less than the caller's first touch of its
  // new pages), so that the decay keeps pace with a program allocating
  // large blocks fast.
  size_t share = kCallPages + credit_pages;
  share = decay(now, budget < share ? budget : share, kCallRuns);
  if (g_split_tail && share) decay_heals(now, share, kCallHeals);
}

// The descriptors of the pages inside free runs (only a run's first page
// has one in use) go back too: after many small runs were freed (the slabs
// of exited threads), those descriptors, 192 bytes a page of the runs, are
// most of what stays resident. Nothing reads an inner page's descriptor
// without checking it (a zeroed one is no run's), and carving writes the
// one it hands out.
static void purge_free_descriptors() {
  for (Arena* a = g_arenas; a; a = a->next_arena) {
    for (size_t idx = 0; idx < a->npages;) {
      const Span* f = &a->meta[idx];
      size_t n = f->npages;
      if (n == 0) break;  // not a run: the validator says so
      if (__atomic_load_n(&f->kind, __ATOMIC_RELAXED) == kSpanFree) {
        // Descriptors past meta_pages were never committed.
        size_t end = idx + n < a->meta_pages ? idx + n : a->meta_pages;
        uintptr_t lo = align_up(reinterpret_cast<uintptr_t>(f + 1), kPageSize);
        uintptr_t hi = reinterpret_cast<uintptr_t>(a->meta + end) & ~uintptr_t(kPageSize - 1);
        if (hi > lo) os::purge(reinterpret_cast<void*>(lo), hi - lo);
      }
      idx += n;
    }
  }
}

void purge_all() {
  while (g_lru_tail) purge_run(g_lru_tail);
  if (g_split_head) {
    while (g_split_head) heal_run(g_split_head);
    after_heals();
  }
  purge_free_descriptors();
  g_next_purge_ns = ~uint64_t{0};
}

// ---- the background thread's share ------------------------------------------
void set_background(bool active) { g_bg_active = active; }
bool background_active() { return g_bg_active; }

uint64_t background_step(uint64_t now, uint32_t* seq) {
  g_in_bg = true;
  size_t budget = enforce_cap(kThreadPages, kThreadRuns);
  budget = decay(now, budget, kThreadRuns);
  // Heal split runs once their delay passed (an mmap each): the thread has
  // the time, and merged VMAs make later moves and faults cheaper.
  bool healed_all = true;
  if (g_split_head && budget) {
    Span* f = g_split_head;
    if (f->free_ns + g_config.purge_delay_ns <= now) healed_all = heal_some(kThreadRuns, &budget);
  }
  g_in_bg = false;
  uint64_t next;
  if (!budget || !healed_all || free_runs::dirty_bytes() > dirty_cap()) {
    next = 0;  // more to do now
  } else {
    next = g_next_purge_ns;
    if (g_split_head) {
      uint64_t h = g_split_head->free_ns + g_config.purge_delay_ns;
      if (h < next) next = h;
    }
    if (next != ~uint64_t{0}) next = next <= now ? 1 : next - now;
  }
  // Nothing pending at all: the thread waits until a run becomes dirty or
  // split (track() wakes it). A timed wait needs no wake: newer runs are
  // due later than the one it waits for.
  g_bg_sleeping = next == ~uint64_t{0};
  *seq = g_bg_seq.load(std::memory_order_relaxed);
  return next;
}

std::atomic<uint32_t>* background_word() { return &g_bg_seq; }

// A new dirty or split run while the thread waits for work: wake it.
static std::atomic<bool> g_work_seen{false};
bool work_seen() { return g_work_seen.load(std::memory_order_relaxed); }

static void wake_background() {
  if (!g_work_seen.load(std::memory_order_relaxed)) g_work_seen.store(true, std::memory_order_relaxed);
  if (!g_bg_sleeping) return;
  g_bg_sleeping = false;
  g_bg_seq.fetch_add(1, std::memory_order_release);
  futex_wake(&g_bg_seq);
}

void background_fork_child() {
  g_bg_active = false;
  g_bg_sleeping = false;
  g_in_bg = false;
}

size_t background_purged_bytes() { return g_bg_purged_bytes; }
size_t background_heals() { return g_bg_heals; }

Span* find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip) {
  // Near the memory limit, look further: every reused resident page is a
  // page the group is not charged for twice.
  int budget = under_pressure() ? 512 : 32;
  for (Span* f = g_lru_head; f && budget-- > 0; f = f->lru_next) {
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

size_t purged_bytes() { return g_purged_bytes; }
size_t heals() { return g_heals; }
size_t split_count() { return g_split_count; }

size_t validate_locked() {
  size_t n = 0;
  const Span* prev = nullptr;
  for (const Span* f = g_lru_head; f; prev = f, f = f->lru_next) {
    if (f->kind != kSpanFree || !(f->flags & kFreeDirty)) fatal("purge: clean or non-free run on the decay list", f);
    if (f->lru_prev != prev) fatal("purge: broken decay list links", f);
    n++;
  }
  if (prev != g_lru_tail) fatal("purge: decay list tail wrong", g_lru_tail);
  size_t splits = 0;
  prev = nullptr;
  for (const Span* f = g_split_head; f; prev = f, f = f->split_next) {
    if (f->kind != kSpanFree || !f->on_split || !(f->flags & kFreeSplit) || f->arena->region != kRegionNormal)
      fatal("purge: wrong run on the split list", f);
    if (f->split_prev != prev) fatal("purge: broken split list links", f);
    splits++;
  }
  if (splits != g_split_count) fatal("purge: split count does not add up", nullptr);
  if (prev != g_split_tail) fatal("purge: split list tail wrong", g_split_tail);
  return n;
}

}  // namespace remalloc::pages::purging
