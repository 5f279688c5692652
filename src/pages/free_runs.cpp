// page heap: free runs in bins, coalescing, searches (PageHeap's free-run
// functions; their invariants are written in internal.h). This part of the
// PageHeap owns the byte totals of free runs; purge.cpp owns the lists of
// dirty and split runs, which make_run()/unlink_run() keep in step.
#include "pages/internal.h"

namespace remalloc::pages {

static size_t bin_of(size_t n) {
  if (n <= kExactBins) return n - 1;
  unsigned l = log2_floor(n);
  size_t sub = (n >> (l - 2)) & 3;
  return kExactBins + size_t(l - 7) * 4 + sub;
}

void PageHeap::bin_insert(Span* f, Region r) {
  BinSet& b = bins_[r];
  size_t i = bin_of(f->npages);
  b.head[i].push_front(f);
  b.nonempty[i / 64] |= uint64_t{1} << (i % 64);
  f->in_list = uint8_t(1 + r);
}

void PageHeap::bin_remove(Span* f) {
  if (!f->in_list) return;
  BinSet& b = bins_[f->in_list - 1];
  size_t i = bin_of(f->npages);
  b.head[i].remove(f);
  if (b.head[i].empty()) b.nonempty[i / 64] &= ~(uint64_t{1} << (i % 64));
  f->in_list = 0;
}

static size_t hull_bytes(const Span* f) {
  return (f->flags & kFreeDirty) ? (f->maint_hi - f->maint_lo) << kPageShift : 0;
}

void PageHeap::unlink_run(Span* f) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL(f->kind == kSpanFree);
  bin_remove(f);
  untrack(f);
  RM_ASSERT_INTERNAL(free_bytes_ >= f->bytes() && dirty_bytes_ >= hull_bytes(f));
  free_bytes_ -= f->bytes();
  dirty_bytes_ -= hull_bytes(f);
  slot_drop(f->arena, f);
}

void PageHeap::mark_clean(Span* f) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL(f->kind == kSpanFree);
  dirty_bytes_ -= hull_bytes(f);
  f->flags &= uint8_t(~kFreeDirty);
  f->maint_lo = f->maint_hi = index_of(f->arena, f);
}

void PageHeap::shrink_hull(Span* f, size_t lo, size_t hi) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL((f->flags & kFreeDirty) && lo >= f->maint_lo && hi <= f->maint_hi && lo < hi);
  dirty_bytes_ -= hull_bytes(f);
  f->maint_lo = lo;
  f->maint_hi = hi;
  dirty_bytes_ += hull_bytes(f);
}

// The free run ending right before page idx, or nullptr. back[] of the
// page before may be stale (it is exact only at runs' ends): the run it
// leads to must really end at idx.
static Span* run_before(Arena* a, size_t idx) {
  if (idx == 0) return nullptr;
  Span* f = &a->meta[a->back[idx - 1]];
  // A neighbour's kind may be changed by its owner without the lock (large
  // cache: kSpanLarge <-> kSpanCached, never to or from kSpanFree).
  if (__atomic_load_n(&f->kind, __ATOMIC_RELAXED) == kSpanFree && f->start + f->bytes() == a->base + (idx << kPageShift))
    return f;
  return nullptr;
}

Span* PageHeap::run_at(Arena* a, size_t idx) {
  if (idx >= a->npages) return nullptr;
  Span* f = &a->meta[a->back[idx]];
  if (__atomic_load_n(&f->kind, __ATOMIC_RELAXED) == kSpanFree &&
      f->start == a->base + (idx << kPageShift))
    return f;
  return nullptr;
}

Span* PageHeap::make_run(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t t, size_t lo, size_t hi) {
  RM_NEEDS_LOCK();
  RM_ASSERT(n > 0 && idx + n <= a->npages);
  Span* f = slot_take(a);
  // Clip the hull to the run.
  if (lo < idx) lo = idx;
  if (hi > idx + n) hi = idx + n;
  if (!(flags & kFreeDirty) || lo >= hi) {
    lo = hi = idx;
    flags &= uint8_t(~kFreeDirty);
  }
  if (a->region != kRegionNormal) flags &= uint8_t(~(kFreeSplit | kFreeHuge));
  f->maint_lo = lo;
  f->maint_hi = hi;
  f->kind = kSpanFree;
  f->flags = flags;
  f->npages = n;
  f->start = a->base + (idx << kPageShift);
  f->arena = a;
  f->free_ns = t;
  a->back[idx] = a->back[idx + n - 1] = slot_of(a, f);
  bin_insert(f, Region(a->region));
  track(f);
  free_bytes_ += f->bytes();
  dirty_bytes_ += hull_bytes(f);
  return f;
}

Span* PageHeap::put(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t now) {
  RM_NEEDS_LOCK();
  RM_ASSERT(n > 0 && idx + n <= a->npages);
  size_t lo = idx, hi = idx + n;  // hull of dirty pages
  if (!(flags & kFreeDirty)) lo = hi = 0;
  auto absorb = [&](Span* o) {
    if (o->flags & kFreeDirty) {
      if (lo == hi) {
        lo = o->maint_lo;
        hi = o->maint_hi;
      } else {
        if (o->maint_lo < lo) lo = o->maint_lo;
        if (o->maint_hi > hi) hi = o->maint_hi;
      }
      if (o->free_ns > now) now = o->free_ns;
    }
    flags |= o->flags;
    unlink_run(o);
  };
  // Coalesce with free neighbours (same arena only).
  if (Span* l = run_before(a, idx)) {
    size_t lidx = index_of(a, l);
    n += idx - lidx;
    idx = lidx;
    absorb(l);
  }
  if (Span* r = run_at(a, idx + n)) {
    n += r->npages;
    absorb(r);
  }
  return make_run(a, idx, n, flags, now, lo, hi);
}

// Does run f hold `npages` aligned to `align` pages plus `phase`? Sets the
// offset.
static bool fits(const Span* f, size_t npages, size_t align, size_t phase, size_t* skip) {
  if (f->npages < npages) return false;
  size_t s = 0;
  if (align > 1) {
    size_t page = f->start >> kPageShift;
    s = (phase + align - (page & (align - 1))) & (align - 1);
  }
  if (s + npages > f->npages) return false;
  *skip = s;
  return true;
}

Span* PageHeap::find(size_t npages, size_t align, size_t phase, Region region, size_t min_run, size_t* skip) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL(npages > 0 && is_pow2(align));
  BinSet& b = bins_[region];
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
    for (Span* f = b.head[i].front(); f && budget--; f = BinList::next(f)) {
      if (f->npages >= want && fits(f, npages, align, phase, skip)) return f;
    }
    i++;
  }
  return nullptr;
}

Span* PageHeap::carve(Span* f, size_t skip, size_t npages) {
  RM_NEEDS_LOCK();
  RM_ASSERT_INTERNAL(f->kind == kSpanFree && npages > 0);
  Arena* a = f->arena;
  size_t idx = index_of(a, f);
  size_t total = f->npages;
  RM_ASSERT_INTERNAL(skip + npages <= total);
  uint8_t flags = f->flags;
  uint64_t t = f->free_ns;
  size_t lo = f->maint_lo, hi = f->maint_hi;
  unlink_run(f);
  if (skip) make_run(a, idx, skip, flags, t, lo, hi);
  size_t tail = total - skip - npages;
  if (tail) make_run(a, idx + skip + npages, tail, flags, t, lo, hi);
  // The claimed part is dirty only where the hull covers it.
  if (lo < idx + skip) lo = idx + skip;
  if (hi > idx + skip + npages) hi = idx + skip + npages;
  if (lo >= hi) flags &= uint8_t(~kFreeDirty);
  Span* s = slot_take(a);  // reads as no run: kind kSpanNone, on no list
  s->flags = flags;
  // What a slab's first writes need to know (prefault): only pages in
  // this hull may be resident.
  s->maint_lo = lo < hi ? lo : idx + skip;
  s->maint_hi = lo < hi ? hi : idx + skip;
  s->npages = npages;
  s->start = a->base + ((idx + skip) << kPageShift);
  s->arena = a;
  a->back[idx + skip] = slot_of(a, s);
  return s;
}

size_t PageHeap::validate_runs_locked() {
  RM_NEEDS_LOCK();
  size_t runs = 0, bytes = 0, dirty = 0;
  for (int r = 0; r < kNumRegions; r++) {
    const BinSet& b = bins_[r];
    for (size_t i = 0; i < kBins; i++) {
      bool bit = (b.nonempty[i / 64] >> (i % 64)) & 1;
      if (bit != !b.head[i].empty()) fatal("free runs: bin bitmap disagrees with bin", b.head[i].front());
      auto error = [](const char* what, const void* at) {
        // The list's own message names the broken link.
        (void)what;
        fatal("free runs: broken bin links", at);
      };
      b.head[i].validate(error, [&](const Span* f) {
        const Arena* a = f->arena;
        size_t idx = index_of(a, f);
        if (f->kind != kSpanFree) fatal("free runs: a binned run is not free", f);
        if (bin_of(f->npages) != i || f->in_list != 1 + r || a->region != r)
          fatal("free runs: run in the wrong bin", reinterpret_cast<void*>(f->start));
        if (f->start != a->base + (idx << kPageShift) || idx + f->npages > a->npages)
          fatal("free runs: run outside its arena", reinterpret_cast<void*>(f->start));
        if (a->back[idx] != slot_of(a, f) || a->back[idx + f->npages - 1] != slot_of(a, f))
          fatal("free runs: back[] wrong at a run's ends", reinterpret_cast<void*>(f->start));
        if (run_at(const_cast<Arena*>(a), idx + f->npages) ||
            run_before(const_cast<Arena*>(a), idx))
          fatal("free runs: two adjacent free runs", reinterpret_cast<void*>(f->start));
        bool is_dirty = f->flags & kFreeDirty;
        if (f->maint_lo > f->maint_hi || f->maint_lo < idx || f->maint_hi > idx + f->npages ||
            is_dirty != (f->maint_lo < f->maint_hi))
          fatal("free runs: dirty hull outside the run", reinterpret_cast<void*>(f->start));
        runs++;
        bytes += f->bytes();
        dirty += hull_bytes(f);
      });
    }
  }
  if (bytes != free_bytes_) fatal("free runs: free byte total does not add up", nullptr);
  if (dirty != dirty_bytes_) fatal("free runs: dirty byte total does not add up", nullptr);
  return runs;
}

}  // namespace remalloc::pages
