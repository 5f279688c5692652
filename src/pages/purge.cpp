// page heap: purging with decay, the dirty cap, healing (see purge.h).
#include "pages/purge.h"

#include "pages/free_runs.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages::purging {

static Span* g_lru_head;  // newest dirty run
static Span* g_lru_tail;  // oldest
static Span* g_split_head;  // free runs whose VMAs page moves may have split
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
  f->on_split = 1;
  g_split_count++;
}

static void split_remove(Span* f) {
  if (!f->on_split) return;
  if (f->split_prev)
    f->split_prev->split_next = f->split_next;
  else
    g_split_head = f->split_next;
  if (f->split_next) f->split_next->split_prev = f->split_prev;
  f->split_next = f->split_prev = nullptr;
  f->on_split = 0;
  g_split_count--;
}

void track(Span* f) {
  // A new run goes to the head: the list is ordered by the time runs were
  // made, which is close to free_ns (the remainders of a carved run keep
  // its older free_ns), so decay may purge such a remainder a little late.
  if (f->flags & kFreeDirty) lru_push(f);
  if (f->flags & kFreeSplit) split_push(f);
}

void untrack(Span* f) {
  lru_remove(f);
  split_remove(f);
}

// Gives back the memory of a free run's dirty hull (MADV_DONTNEED).
static void purge_run(Span* f) {
  if (f->flags & kFreeDirty) {
    Arena* a = f->arena;
    size_t len = (f->maint_hi - f->maint_lo) << kPageShift;
    if (!os::purge(reinterpret_cast<void*>(a->base + (f->maint_lo << kPageShift)), len)) {
      // madvise refused (mlock'ed pages, say): keep the run dirty but take
      // it off the decay list, so the purge loops end.
      lru_remove(f);
      return;
    }
    g_purged_bytes += len;
    free_runs::mark_clean(f);
  }
  lru_remove(f);
}

// Re-maps a split free run fresh (mmap MAP_FIXED), which also purges it, so
// it merges back into one VMA with its unmoved neighbours.
static void heal_run(Span* f) {
  if (!os::remap_fresh(reinterpret_cast<void*>(f->start), f->bytes())) {
    split_remove(f);  // could not heal: forget it
    return;
  }
  if (f->flags & kFreeDirty) g_purged_bytes += (f->maint_hi - f->maint_lo) << kPageShift;
  free_runs::mark_clean(f);
  f->flags &= uint8_t(~kFreeSplit);
  lru_remove(f);
  split_remove(f);
  g_heals++;
}

// Heals every split free run and recounts the process's VMAs. Healing costs
// a system call per run, so it waits until the estimate nears the budget.
static void heal_all() {
  while (g_split_head) heal_run(g_split_head);
  vma::recount();
  if (vma::estimate() > vma::budget() / 2) {
    if (g_heal_min < 4096) g_heal_min *= 2;
  } else {
    g_heal_min = 1;
  }
}

static bool heal_due() { return g_split_count >= g_heal_min && vma::estimate() > vma::budget() / 2; }

bool heal_for_budget() {
  LockGuard g(g_lock);
  if (!g_split_count || g_split_count < g_heal_min) return false;
  heal_all();
  return true;
}

static void rearm() {
  g_next_purge_ns = g_lru_tail ? g_lru_tail->free_ns + g_config.purge_delay_ns : ~uint64_t{0};
}

void after_put(Span* f, uint64_t now) {
  // Past half the VMA budget, heal split runs.
  if ((f->flags & kFreeSplit) && heal_due()) heal_all();
  if ((f->flags & kFreeDirty) && g_next_purge_ns == ~uint64_t{0})
    g_next_purge_ns = now + g_config.purge_delay_ns;
  // Past the cap on memory held by free runs, purge the oldest at once (down
  // to half the cap) instead of waiting. The cap grows with the program's
  // peak footprint: a program that held 1 GiB may keep up to 1 GiB of freed
  // pages for reuse, for the purge delay.
  size_t peak = peak_bytes_locked();
  size_t cap = g_config.dirty_max > peak ? g_config.dirty_max : peak;
  if (free_runs::dirty_bytes() > cap) {
    while (g_lru_tail && free_runs::dirty_bytes() > cap / 2) purge_run(g_lru_tail);
    rearm();
  }
}

void maybe_purge(uint64_t now) {
  if (now < g_next_purge_ns) return;
  uint64_t delay = g_config.purge_delay_ns;
  while (g_lru_tail && g_lru_tail->free_ns + delay <= now) purge_run(g_lru_tail);
  rearm();
}

void purge_all() {
  while (g_lru_tail) purge_run(g_lru_tail);
  if (g_split_head) heal_all();
  g_next_purge_ns = ~uint64_t{0};
}

Span* find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip) {
  int budget = 32;
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
  return n;
}

}  // namespace remalloc::pages::purging
