// page heap: free runs in size bins, coalescing, purging with decay, and the
// allocation of slabs and large blocks.
//
// Free runs of each region sit in bins: exact bins for 1..128 pages, then
// four bins per power of two. A bitmap tells which bins hold runs. Runs that
// may hold memory (dirty) or whose VMA may be split by page moves sit also on
// an LRU list; purge() gives their memory back once they have been free for
// the purge delay (with MADV_DONTNEED, or a fresh mmap for split runs so
// their VMAs merge back).
#include <cstring>

#include "pages/internal.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::pages {

Config g_config;
Mutex g_lock;
size_t g_large_live, g_large_bytes, g_slab_bytes, g_slabs, g_peak_bytes;
std::atomic<size_t> g_reloc[12];
static size_t g_free_bytes, g_dirty_bytes, g_purged_bytes, g_heals;
static uint64_t g_next_purge_ns = ~uint64_t{0};

constexpr size_t kExactBins = 128;
constexpr size_t kBins = kExactBins + 4 * 40;

struct BinSet {
  Span* head[kBins];
  uint64_t nonempty[(kBins + 63) / 64];
};
static BinSet g_bins[kNumRegions];
static Span* g_lru_head;  // newest
static Span* g_lru_tail;  // oldest
static Span* g_split_head;  // free runs whose VMAs page moves may have split
static size_t g_split_count;
// Heal only once this many split runs wait: when live moved blocks hold the
// VMAs, healing frees nothing, so the threshold doubles after such a heal.
static size_t g_heal_min = 1;

static size_t bin_of(size_t n) {
  if (n <= kExactBins) return n - 1;
  unsigned l = log2_floor(n);
  size_t sub = (n >> (l - 2)) & 3;
  return kExactBins + size_t(l - 7) * 4 + sub;
}

static void bin_insert(Span* f, Region r) {
  BinSet& b = g_bins[r];
  size_t i = bin_of(f->npages);
  f->prev = nullptr;
  f->next = b.head[i];
  if (f->next) f->next->prev = f;
  b.head[i] = f;
  b.nonempty[i / 64] |= uint64_t{1} << (i % 64);
  f->in_list = uint8_t(1 + r);
}

static void bin_remove(Span* f) {
  if (!f->in_list) return;
  BinSet& b = g_bins[f->in_list - 1];
  size_t i = bin_of(f->npages);
  if (f->prev)
    f->prev->next = f->next;
  else
    b.head[i] = f->next;
  if (f->next) f->next->prev = f->prev;
  if (!b.head[i]) b.nonempty[i / 64] &= ~(uint64_t{1} << (i % 64));
  f->in_list = 0;
  f->next = f->prev = nullptr;
}

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

void unlink_free_locked(Span* f) {
  bin_remove(f);
  lru_remove(f);
  split_remove(f);
  g_free_bytes -= f->bytes();
  if (f->flags & kFreeDirty) g_dirty_bytes -= (f->maint_hi - f->maint_lo) << kPageShift;
}

static void clear_head(Span* s) {
  s->kind = kSpanNone;
  s->flags = 0;
  s->in_list = 0;
  s->next = s->prev = s->lru_next = s->lru_prev = nullptr;
  s->split_next = s->split_prev = nullptr;
  s->on_split = 0;
}

// The free run ending right before page idx, or nullptr.
static Span* free_run_before(Arena* a, size_t idx) {
  if (idx == 0) return nullptr;
  size_t last = idx - 1;
  size_t head = last - a->back[last];
  Span* f = &a->meta[head];
  // A neighbour's kind may be changed by its owner without the lock (large
  // cache: kSpanLarge <-> kSpanCached, never to or from kSpanFree).
  if (__atomic_load_n(&f->kind, __ATOMIC_RELAXED) == kSpanFree && head + f->npages == idx) return f;
  return nullptr;
}

Span* free_run_at(Arena* a, size_t idx) {
  if (idx >= a->npages) return nullptr;
  Span* f = &a->meta[idx];
  if (__atomic_load_n(&f->kind, __ATOMIC_RELAXED) == kSpanFree &&
      f->start == a->base + (idx << kPageShift))
    return f;
  return nullptr;
}

Span* make_free(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t t, size_t lo,
                size_t hi) {
  Span* f = &a->meta[idx];
  // Clip the hull to the run.
  if (lo < idx) lo = idx;
  if (hi > idx + n) hi = idx + n;
  if (!(flags & kFreeDirty) || lo >= hi) {
    lo = hi = idx;
    flags &= uint8_t(~kFreeDirty);
  }
  if (a->region != kRegionNormal) flags &= uint8_t(~kFreeSplit);
  f->maint_lo = lo;
  f->maint_hi = hi;
  f->kind = kSpanFree;
  f->flags = flags;
  f->npages = n;
  f->start = a->base + (idx << kPageShift);
  f->arena = a;
  f->free_ns = t;
  f->next = f->prev = f->lru_next = f->lru_prev = nullptr;
  f->split_next = f->split_prev = nullptr;
  f->on_split = 0;
  f->in_list = 0;
  a->back[idx] = 0;
  a->back[idx + n - 1] = uint32_t(n - 1);
  bin_insert(f, Region(a->region));
  if (flags & kFreeDirty) lru_push(f);
  if (flags & kFreeSplit) split_push(f);
  g_free_bytes += f->bytes();
  if (flags & kFreeDirty) g_dirty_bytes += (hi - lo) << kPageShift;
  return f;
}

// Gives back the memory of a free run's dirty hull (MADV_DONTNEED).
static void purge_run_locked(Span* f) {
  Arena* a = f->arena;
  if (f->flags & kFreeDirty) {
    size_t len = (f->maint_hi - f->maint_lo) << kPageShift;
    if (!os::purge(reinterpret_cast<void*>(a->base + (f->maint_lo << kPageShift)), len)) return;
    g_dirty_bytes -= len;
    g_purged_bytes += len;
  }
  f->flags &= uint8_t(~kFreeDirty);
  f->maint_lo = f->maint_hi = index_of(a, f);
  lru_remove(f);
}

// Re-maps a split free run fresh (mmap MAP_FIXED), which also purges it, so
// it merges back into one VMA with its unmoved neighbours.
static void heal_run_locked(Span* f) {
  Arena* a = f->arena;
  if (!os::remap_fresh(reinterpret_cast<void*>(f->start), f->bytes())) return;
  if (f->flags & kFreeDirty) {
    size_t dirty = (f->maint_hi - f->maint_lo) << kPageShift;
    g_dirty_bytes -= dirty;
    g_purged_bytes += dirty;
  }
  f->flags = 0;
  f->maint_lo = f->maint_hi = index_of(a, f);
  lru_remove(f);
  split_remove(f);
  g_heals++;
}

// Heals every split free run and recounts the process's VMAs. Healing costs
// a system call per run, so it waits until the estimate nears the budget.
static void heal_all_locked() {
  while (g_split_head) {
    Span* f = g_split_head;
    heal_run_locked(f);
    if (f->on_split) split_remove(f);  // could not heal: forget it
  }
  vma::recount();
  if (vma::estimate() > vma::budget() / 2) {
    if (g_heal_min < 4096) g_heal_min *= 2;
  } else {
    g_heal_min = 1;
  }
}

static bool heal_due_locked() {
  return g_split_count >= g_heal_min && vma::estimate() > vma::budget() / 2;
}

bool heal_for_budget() {
  LockGuard g(g_lock);
  if (!g_split_count || g_split_count < g_heal_min) return false;
  heal_all_locked();
  return true;
}

void put_run_locked(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t now) {
  size_t lo = idx, hi = idx + n;  // hull of dirty pages
  if (!(flags & kFreeDirty)) lo = hi = 0;
  auto join = [&](const Span* o) {
    if (!(o->flags & kFreeDirty)) return;
    if (lo == hi) {
      lo = o->maint_lo;
      hi = o->maint_hi;
    } else {
      if (o->maint_lo < lo) lo = o->maint_lo;
      if (o->maint_hi > hi) hi = o->maint_hi;
    }
  };
  // Coalesce with free neighbours (same arena only).
  if (Span* l = free_run_before(a, idx)) {
    join(l);
    size_t lidx = index_of(a, l);
    uint8_t lflags = l->flags;
    uint64_t lt = l->free_ns;
    unlink_free_locked(l);
    clear_head(l);
    n += idx - lidx;
    idx = lidx;
    if (lflags & kFreeDirty) now = now > lt ? now : lt;
    flags |= lflags;
  }
  if (Span* r = free_run_at(a, idx + n)) {
    join(r);
    uint8_t rflags = r->flags;
    uint64_t rt = r->free_ns;
    unlink_free_locked(r);
    clear_head(r);
    n += r->npages;
    if (rflags & kFreeDirty) now = now > rt ? now : rt;
    flags |= rflags;
  }
  Span* f = make_free(a, idx, n, flags, now, lo, hi);
  // Past half the VMA budget, heal split runs.
  if ((f->flags & kFreeSplit) && heal_due_locked()) heal_all_locked();
  if ((f->flags & kFreeDirty) && g_next_purge_ns == ~uint64_t{0})
    g_next_purge_ns = now + g_config.purge_delay_ns;
  // Past the cap on memory held by free runs, purge the oldest at once (down
  // to half the cap) instead of waiting: a program that frees a big block
  // and goes idle gets its RSS back.
  // The cap grows with the program's peak footprint: a program that held
  // 1 GiB may keep up to 1 GiB of freed pages for reuse, for the purge delay.
  size_t cap = g_config.dirty_max > g_peak_bytes ? g_config.dirty_max : g_peak_bytes;
  if (g_dirty_bytes > cap) {
    while (g_lru_tail && g_dirty_bytes > cap / 2) purge_run_locked(g_lru_tail);
    g_next_purge_ns = g_lru_tail ? g_lru_tail->free_ns + g_config.purge_delay_ns : ~uint64_t{0};
  }
}

// Does run f hold `npages` aligned to `align` pages? Returns the offset.
static bool fits(const Span* f, size_t npages, size_t align, size_t phase, size_t* skip) {
  if (f->npages < npages) return false;
  size_t s = 0;
  if (align > 1) {
    // Start at `phase` pages past an `align` boundary of the address.
    size_t page = f->start >> kPageShift;
    s = (phase + align - (page & (align - 1))) & (align - 1);
  }
  if (s + npages > f->npages) return false;
  *skip = s;
  return true;
}

static Span* find_locked(size_t npages, size_t align, size_t phase, Region region,
                         size_t min_run, size_t* skip) {
  BinSet& b = g_bins[region];
  size_t want = npages > min_run ? npages : min_run;
  size_t i = bin_of(want);
  // The first bin may hold runs smaller than asked; later bins never do.
  // Alignment can still make a run unfit, so look at a few per bin.
  while (i < kBins) {
    uint64_t word = b.nonempty[i / 64] >> (i % 64);
    if (!word) {
      i = (i / 64 + 1) * 64;
      continue;
    }
    i += size_t(__builtin_ctzll(word));
    if (i >= kBins) break;
    int budget = 16;
    for (Span* f = b.head[i]; f && budget--; f = f->next) {
      if (f->npages >= want && fits(f, npages, align, phase, skip)) return f;
    }
    i++;
  }
  return nullptr;
}

// A recently freed run whose memory is still resident and that can hold the
// request, placed over its dirty pages: reusing them saves page faults and
// keeps RSS down (a block freed and another allocated, as in churn of huge
// blocks). Looks at the newest few dirty runs only.
static Span* find_dirty_locked(size_t npages, size_t align, size_t phase, Region region,
                               size_t* skip) {
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

Span* take_run_locked(size_t npages, size_t align, Region region, bool room_after,
                      size_t phase) {
  size_t skip = 0;
  Span* f = nullptr;
  // Fresh allocations reuse resident memory first; realloc destinations
  // (room_after) want clean runs, since movers overwrite or clear them.
  if (!room_after) f = find_dirty_locked(npages, align, phase, region, &skip);
  if (room_after) f = find_locked(npages, align, phase, region, npages * 2, &skip);
  if (!f) f = find_locked(npages, align, phase, region, npages, &skip);
  if (!f) {
    if (!new_arena_locked(npages + phase, align, region)) return nullptr;
    if (room_after) f = find_locked(npages, align, phase, region, npages * 2, &skip);
    if (!f) f = find_locked(npages, align, phase, region, npages, &skip);
    if (!f) return nullptr;
  }
  Arena* a = f->arena;
  size_t idx = index_of(a, f);
  size_t total = f->npages;
  uint8_t flags = f->flags;
  uint64_t t = f->free_ns;
  unlink_free_locked(f);
  clear_head(f);
  size_t lo = f->maint_lo, hi = f->maint_hi;
  if (skip) make_free(a, idx, skip, flags, t, lo, hi);
  size_t tail = total - skip - npages;
  if (tail) make_free(a, idx + skip + npages, tail, flags, t, lo, hi);
  // The taken part is dirty only where the hull covers it.
  if (lo < idx + skip) lo = idx + skip;
  if (hi > idx + skip + npages) hi = idx + skip + npages;
  if (lo >= hi) flags &= uint8_t(~kFreeDirty);
  Span* s = &a->meta[idx + skip];
  s->kind = kSpanNone;
  s->flags = flags;
  s->npages = npages;
  s->start = a->base + ((idx + skip) << kPageShift);
  s->arena = a;
  s->in_list = 0;
  s->next = s->prev = s->lru_next = s->lru_prev = nullptr;
  a->back[idx + skip] = 0;
  return s;
}

void init_large(Span* s, size_t npages, size_t requested) {
  s->kind = kSpanLarge;
  s->npages = npages;
  s->requested = requested;
}

void note_peak_locked() {
  size_t live = g_large_bytes + g_slab_bytes;
  if (live > g_peak_bytes) g_peak_bytes = live;
}

void maybe_purge_locked(uint64_t now) {
  if (now < g_next_purge_ns) return;
  uint64_t delay = g_config.purge_delay_ns;
  while (g_lru_tail && g_lru_tail->free_ns + delay <= now) purge_run_locked(g_lru_tail);
  g_next_purge_ns = g_lru_tail ? g_lru_tail->free_ns + delay : ~uint64_t{0};
}

Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed) {
  bool huge = (npages << kPageShift) >= g_config.huge_threshold;
  if (huge && align_pages < (kHugePageSize >> kPageShift)) align_pages = kHugePageSize >> kPageShift;
  LockGuard g(g_lock);
  uint64_t now = os::now_ns();
  maybe_purge_locked(now);
  Span* s = take_run_locked(npages, align_pages, kRegionNormal, false);
  if (!s) return nullptr;
  uint8_t flags = s->flags;
  if (zeroed) *zeroed = !(flags & kFreeDirty);
  init_large(s, npages, requested);
  s->flags = (flags & kFreeSplit) ? kLargeMovedIn : 0;
  if (huge && g_config.hugepage && vma::can_add(2) &&
      os::advise_hugepage(reinterpret_cast<void*>(s->start), s->bytes(), true)) {
    s->flags |= kLargeHugeAdv | kLargeMovedIn;
    vma::note_added(2);
  }
  g_large_live++;
  g_large_bytes += s->bytes();
  note_peak_locked();
  return s;
}

Span* alloc_slab(size_t npages) {
  LockGuard g(g_lock);
  uint64_t now = os::now_ns();
  maybe_purge_locked(now);
  Span* s = take_run_locked(npages, 1, kRegionNormal, false);
  if (!s) return nullptr;
  Arena* a = s->arena;
  size_t idx = index_of(a, s);
  for (size_t i = 1; i < npages; i++) a->back[idx + i] = uint32_t(i);
  s->kind = kSpanSlab;
  s->flags = 0;
  g_slabs++;
  g_slab_bytes += s->bytes();
  note_peak_locked();
  return s;
}

void free_span(Span* s) {
  LockGuard g(g_lock);
  uint64_t now = os::now_ns();
  Arena* a = s->arena;
  uint8_t flags = kFreeDirty;
  if (s->kind == kSpanLarge) {
    g_large_live--;
    g_large_bytes -= s->bytes();
    if (s->flags & kLargeMovedIn) flags |= kFreeSplit;
  } else {
    g_slabs--;
    g_slab_bytes -= s->bytes();
  }
  size_t idx = index_of(a, s);
  size_t n = s->npages;
  clear_head(s);
  put_run_locked(a, idx, n, flags, now);
  maybe_purge_locked(now);
}

size_t purge(bool all) {
  LockGuard g(g_lock);
  size_t before = g_purged_bytes;
  if (all) {
    while (g_lru_tail) purge_run_locked(g_lru_tail);
    if (g_split_head) heal_all_locked();
    g_next_purge_ns = ~uint64_t{0};
  } else {
    maybe_purge_locked(os::now_ns());
  }
  return g_purged_bytes - before;
}

void fork_prepare() { g_lock.lock(); }
void fork_parent() { g_lock.unlock(); }
void fork_child() { g_lock.reset_in_child(); }

void get_stats(Stats* out) {
  LockGuard g(g_lock);
  out->mapped = g_mapped_bytes;
  out->arenas = g_arena_count;
  out->large_live = g_large_live;
  out->large_bytes = g_large_bytes;
  out->slab_bytes = g_slab_bytes;
  out->slabs = g_slabs;
  out->free_bytes = g_free_bytes;
  out->dirty_bytes = g_dirty_bytes;
  out->purged_bytes = g_purged_bytes;
  out->peak_bytes = g_peak_bytes;
  out->heals = g_heals;
}

void get_reloc_stats(RelocStats* out) {
  size_t* o = &out->realloc_inplace;
  for (int i = 0; i < 12; i++) o[i] = g_reloc[i].load(std::memory_order_relaxed);
}

}  // namespace remalloc::pages
