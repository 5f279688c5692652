// page heap: arena reservation and release, the arena map's writers, and
// the validators of arenas and of the span/slab contract.
//
// The arena map is process-wide (free's fast path reads it with no page
// heap at hand): every PageHeap registers its arenas there and takes them
// out in release_all(). Its leaves are reserved here with os::reserve, not
// through the instance's platform, and made under g_map_lock (taken only
// while an instance's lock is held, never the other way round, so a fork
// prepare handler that holds the process-wide instance's lock finds it free).
#include <cstring>
#include <utility>

#include "pages/internal.h"
#include "platform/os.h"

namespace remalloc::pages {

// The arena map's shared empty leaf (read-only: a lookup in a range without
// arenas finds null there) and its root, constant-initialised to it.
static Arena* const g_empty_leaf[kMapLeafSize] = {};
template <size_t... I>
static constexpr ArenaMapRoot make_root(std::index_sequence<I...>) {
  return ArenaMapRoot{{((void)I, &g_empty_leaf[0])...}};
}
constinit ArenaMapRoot g_arena_map = make_root(std::make_index_sequence<kMapRootSize>{});
static Mutex g_map_lock;  // guards the making of leaves

// The writable leaf for address a, made on first use (nullptr when the
// reservation fails); adds the bytes of a leaf it made to *meta_bytes.
static Arena** leaf_for(uintptr_t a, size_t* meta_bytes) {
  size_t r = a >> kMapRootShift;
  LockGuard g(g_map_lock);
  if (g_arena_map.leaf[r] != g_empty_leaf) return const_cast<Arena**>(g_arena_map.leaf[r]);
  Arena** leaf = static_cast<Arena**>(os::reserve(kMapLeafSize * sizeof(Arena*), kPageSize));
  if (!leaf) return nullptr;
  *meta_bytes += kMapLeafSize * sizeof(Arena*);
  // Published after its (zero) contents: readers without the lock follow it.
  __atomic_store_n(&g_arena_map.leaf[r], leaf, __ATOMIC_RELEASE);
  return leaf;
}

static void set_map_entry(uintptr_t granule, Arena* a) {
  Arena** leaf = const_cast<Arena**>(g_arena_map.leaf[granule >> kMapRootShift]);
  __atomic_store_n(&leaf[(granule >> kArenaMapShift) & (kMapLeafSize - 1)], a, __ATOMIC_RELEASE);
}

// Byte offsets inside the metadata reservation: the header, back[] (one
// entry per page of the arena's whole granules), the pool's bitmap (one
// bit per such page), then the descriptors.
static size_t back_offset() { return align_up(sizeof(Arena), 64); }
static size_t bits_offset(size_t back_pages) { return align_up(back_offset() + back_pages * sizeof(uint32_t), 64); }
static size_t meta_offset(size_t back_pages) {
  return align_up(bits_offset(back_pages) + (back_pages + 63) / 64 * sizeof(uint64_t), 64);
}
// Bytes of the metadata reservation that must be read-write for the first
// n descriptors to be usable.
static size_t meta_commit_bytes(const Arena* a, size_t n) {
  size_t end = size_t(reinterpret_cast<const char*>(a->meta + n) - reinterpret_cast<const char*>(a));
  end = align_up(end, kPageSize);
  return end < a->meta_bytes ? end : a->meta_bytes;
}
// Descriptors wholly inside the first `bytes` of the reservation.
static size_t meta_pages_in(const Arena* a, size_t bytes) {
  size_t off = size_t(reinterpret_cast<const char*>(a->meta) - reinterpret_cast<const char*>(a));
  size_t n = bytes > off ? (bytes - off) / sizeof(Span) : 0;
  return n < a->slots ? n : a->slots;
}

Span* slot_take(Arena* a) {
  size_t words = (a->slots + 63) / 64;
  for (size_t w = a->slot_hint; w < words; w++) {
    uint64_t used = a->slot_bits[w];
    if (used == ~uint64_t{0}) continue;
    size_t i = w * 64 + size_t(__builtin_ctzll(~used));
    // Never: a new slot is below the number of runs, which the committed
    // descriptors cover (Arena::slots).
    if (i >= a->meta_pages) fatal("arena: descriptor pool past its committed slots", reinterpret_cast<void*>(a->base));
    used |= uint64_t{1} << (i % 64);
    a->slot_bits[w] = used;
    // Every word below w is full (the scan passed them): the next search
    // starts at the first word that may have a free slot.
    a->slot_hint = used == ~uint64_t{0} ? w + 1 : w;
    if (i >= a->slot_high) a->slot_high = i + 1;
    Span* s = &a->meta[i];
    RM_ASSERT_INTERNAL(s->kind == kSpanNone && s->npages == 0 && s->in_list == 0 && !s->on_split);
    return s;
  }
  fatal("arena: descriptor pool full", reinterpret_cast<void*>(a->base));
}

void slot_drop(Arena* a, Span* s) {
  size_t i = slot_of(a, s);
  RM_ASSERT_INTERNAL(i < a->slot_high && slot_in_use(a, i));
  RM_ASSERT_INTERNAL(s->slab_bytes == 0 && s->heap == nullptr);
  // No run: a lookup through a stale back[] entry finds no start it checks
  // for, and no kind.
  __atomic_store_n(&s->kind, uint8_t(kSpanNone), __ATOMIC_RELAXED);
  s->start = 0;
  s->npages = 0;
  s->flags = 0;
  s->arena = nullptr;
  s->free_list = nullptr;
  s->requested = 0;
  s->in_list = s->on_split = 0;
  s->next = s->prev = s->lru_next = s->lru_prev = s->split_next = s->split_prev = nullptr;
  a->slot_bits[i / 64] &= ~(uint64_t{1} << (i % 64));
  if (i / 64 < a->slot_hint) a->slot_hint = i / 64;
}

// Makes descriptors meta[0, n) read-write.
bool PageHeap::commit_meta(Arena* a, size_t n) {
  RM_NEEDS_LOCK();
  if (n > a->slots) n = a->slots;
  if (n <= a->meta_pages) return true;
  size_t have = meta_commit_bytes(a, a->meta_pages);
  size_t want = meta_commit_bytes(a, n);
  if (want > have && !platform_->commit(reinterpret_cast<char*>(a) + have, want - have)) return false;
  a->meta_pages = meta_pages_in(a, want);
  return true;
}

Arena* PageHeap::make_arena(size_t bytes, Region region) {
  void* base = platform_->reserve_inaccessible(bytes, kArenaGranule);
  if (!base) return nullptr;
  size_t npages = bytes >> kPageShift;
  // `back` covers whole map granules even when the arena is smaller (under
  // RLIMIT_AS): span_of() indexes it for any address of the granule. Entries
  // past the arena are 0 and lead to the first descriptor, which contains no
  // such address, so a foreign pointer there is reported, never followed.
  size_t back_pages = align_up(bytes, kArenaGranule) >> kPageShift;
  size_t meta_bytes = align_up(meta_offset(back_pages) + npages * sizeof(Span), kPageSize);
  char* meta = static_cast<char*>(platform_->reserve_inaccessible(meta_bytes, kPageSize));
  // The header, back[], the bitmap and the first descriptors are read-write
  // from the start; the rest of the descriptors follow the arena's commits.
  size_t first = align_up(meta_offset(back_pages) + sizeof(Span), kPageSize);
  if (!meta || !platform_->commit(meta, first)) {
    if (meta) platform_->release(meta, meta_bytes);
    platform_->release(base, bytes);
    return nullptr;
  }
  Arena* a = reinterpret_cast<Arena*>(meta);
  a->base = reinterpret_cast<uintptr_t>(base);
  a->npages = npages;
  a->back = reinterpret_cast<uint32_t*>(meta + back_offset());
  a->slot_bits = reinterpret_cast<uint64_t*>(meta + bits_offset(back_pages));
  a->slot_hint = a->slot_high = 0;
  a->slots = npages;
  a->meta = reinterpret_cast<Span*>(meta + meta_offset(back_pages));
  a->meta_bytes = meta_bytes;
  a->committed = 0;
  a->meta_pages = meta_pages_in(a, first);
  a->region = region;
  a->uffd_gen = 0;
  if (region == kRegionUffd) {
    // The generation first: a registration made with a userfaultfd that
    // is replaced meanwhile is then seen as stale and made again.
    uint32_t gen = platform_->uffd_generation();
    if (!platform_->uffd_register(base, bytes)) {
      platform_->release(base, bytes);
      platform_->release(meta, meta_bytes);
      return nullptr;
    }
    a->uffd_gen = gen;
  }
  // The arena, and the metadata in two (read-write, inaccessible); the
  // arena's first commit splits it in two as well.
  platform_->vma_note_added(4);
  return a;
}

bool PageHeap::commit_locked(Arena* a, size_t end) {
  RM_NEEDS_LOCK();
  if (end <= a->committed) return true;
  size_t want = align_up(end, kCommitStep);
  if (want > a->npages) want = a->npages;
  // One descriptor a page below the mark, and one for the free run above
  // it: the most runs there can be.
  if (!commit_meta(a, want + 1)) return false;
  char* from = reinterpret_cast<char*>(a->base + (a->committed << kPageShift));
  if (!platform_->commit(from, (want - a->committed) << kPageShift)) return false;
  a->committed = want;
  return true;
}

Arena* PageHeap::new_arena_locked(size_t npages, size_t align_pages, Region region) {
  RM_NEEDS_LOCK();
  size_t need = (npages + (align_pages > 1 ? align_pages : 0)) << kPageShift;
  if (need >> kPageShift != npages + (align_pages > 1 ? align_pages : 0)) return nullptr;
  // Arenas are whole map granules (64 MiB) unless address space is short:
  // under RLIMIT_AS they go down to the request rounded to 2 MiB, one arena
  // per granule still (the reservation is granule-aligned).
  size_t min_bytes = align_up(need, kHugePageSize);
  size_t granule_bytes = align_up(need, kArenaGranule);
  // Room to grow: big blocks get an arena several times their size, so they
  // can grow in place; address space is cheap, VMAs and copies are not.
  size_t want = config_.arena_bytes;
  if (need >= want / 4) want = align_up(need * 4, kArenaGranule);
  if (want < granule_bytes) want = granule_bytes;
  Arena* a = nullptr;
  // Under RLIMIT_AS (or RLIMIT_MEMLOCK after mlockall(MCL_FUTURE), which
  // counts inaccessible reservations too) a big reservation may fail:
  // halve down to the minimum.
  for (size_t bytes = want;;) {
    a = make_arena(bytes, region);
    if (a || bytes == min_bytes) break;
    // Once a halved reservation failed too, address space is short: take
    // just what the request needs.
    size_t half = align_up(bytes / 2, kArenaGranule);
    bytes = bytes < want || half < min_bytes || half == bytes ? min_bytes : half;
  }
  if (!a) return nullptr;
  for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule) {
    if (!leaf_for(p, &meta_bytes_)) {
      for (uintptr_t q = a->base; q < p; q += kArenaGranule) set_map_entry(q, nullptr);
      platform_->release(reinterpret_cast<void*>(a->base), a->bytes());
      platform_->release(a, a->meta_bytes);
      return nullptr;
    }
    set_map_entry(p, a);
  }
  a->next_arena = arenas_;
  arenas_ = a;
  arena_count_++;
  mapped_bytes_ += a->bytes();
  meta_bytes_ += a->meta_bytes;
  // The whole arena is one clean free run.
  make_run(a, 0, a->npages, 0, 0, 0, 0);
  return a;
}

// Takes arena a out of the map and gives its address space back.
void PageHeap::unmap_arena(Arena* a) {
  for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule)
    if (map_entry(p) == a) set_map_entry(p, nullptr);
  platform_->release(reinterpret_cast<void*>(a->base), a->bytes());
  platform_->release(a, a->meta_bytes);
}

void PageHeap::release_all() {
  LockGuard g(lock_);
  while (Arena* a = arenas_) {
    arenas_ = a->next_arena;
    unmap_arena(a);
  }
  arena_count_ = mapped_bytes_ = meta_bytes_ = 0;
  large_live_ = large_bytes_ = slab_bytes_ = slabs_ = peak_bytes_ = 0;
  for (BinSet& b : bins_) b = BinSet{};
  free_bytes_ = dirty_bytes_ = 0;
  lru_.reset();
  split_.reset();
  heal_min_ = 1;
  next_purge_ns_ = ~uint64_t{0};
  platform_->vma_note_changed();
}

size_t map_resident() {
  size_t n = os::resident_in(&g_arena_map, sizeof g_arena_map);
  for (size_t r = 0; r < kMapRootSize; r++)
    if (g_arena_map.leaf[r] != g_empty_leaf) n += os::resident_in(g_arena_map.leaf[r], kMapLeafSize * sizeof(Arena*));
  return n;
}

size_t PageHeap::trim_reservations_locked() {
  RM_NEEDS_LOCK();
  size_t released = 0;
  for (Arena* a = arenas_; a; a = a->next_arena) {
    // The free run that ends the arena (every page at or above the commit
    // mark is free, so there is one unless the arena is committed whole
    // and full to its end).
    Span* f = &a->meta[a->back[a->npages - 1]];
    size_t first = index_of(a, f);
    if (f->kind != kSpanFree || first + f->npages != a->npages) {
      if (a->committed < a->npages)
        fatal("arena: the pages above the commit mark are not free", reinterpret_cast<void*>(a->base));
      continue;
    }
    // Keep the pages in use, rounded up to 64 KiB: the free pages above
    // them, committed or not, go back to the kernel. (The arena is then no
    // longer a multiple of 2 MiB; it is committed to its end.)
    size_t keep = align_up(first > 0 ? first : 1, kTrimStep);
    if (keep >= a->npages) continue;
    uint8_t flags = f->flags;
    uint64_t t = f->free_ns;
    size_t lo = f->maint_lo, hi = f->maint_hi;
    unlink_run(f);
    size_t old_pages = a->npages;
    // Entries of back[] past the new end that a lookup may still read
    // (those of the granule the new end lies in) must lead to meta[0].
    size_t granule_end = align_up(keep, kArenaGranule >> kPageShift);
    for (size_t i = keep; i < granule_end && i < old_pages; i++) a->back[i] = 0;
    for (uintptr_t p = a->base + align_up(keep << kPageShift, kArenaGranule); p < a->base + (old_pages << kPageShift);
         p += kArenaGranule)
      set_map_entry(p, nullptr);
    a->npages = keep;
    if (a->committed > keep) a->committed = keep;
    // The pool keeps every slot a stale back[] entry may name.
    size_t slots = keep > a->slot_high ? keep : a->slot_high;
    if (a->slots > slots) a->slots = slots;
    if (a->meta_pages > a->slots) a->meta_pages = a->slots;
    if (first < keep) make_run(a, first, keep - first, flags, t, lo, hi > keep ? keep : hi);
    platform_->release(reinterpret_cast<void*>(a->base + (keep << kPageShift)), (old_pages - keep) << kPageShift);
    size_t meta_keep = meta_commit_bytes(a, a->slots);
    if (meta_keep < a->meta_bytes) {
      platform_->release(reinterpret_cast<char*>(a) + meta_keep, a->meta_bytes - meta_keep);
      meta_bytes_ -= a->meta_bytes - meta_keep;
      released += a->meta_bytes - meta_keep;
      a->meta_bytes = meta_keep;
    }
    mapped_bytes_ -= (old_pages - keep) << kPageShift;
    released += (old_pages - keep) << kPageShift;
  }
  platform_->vma_note_changed();
  return released;
}

void PageHeap::validate_arenas_locked(ArenaTally* t) {
  RM_NEEDS_LOCK();
  size_t count = 0, mapped = 0;
  for (Arena* a = arenas_; a; a = a->next_arena) {
    count++;
    mapped += a->bytes();
    if (a->base & (kArenaGranule - 1)) fatal("arena: base not aligned to the map granule", reinterpret_cast<void*>(a->base));
    for (uintptr_t p = a->base; p < a->base + a->bytes(); p += kArenaGranule)
      if (map_entry(p) != a) fatal("arena: map entry does not lead to its arena", reinterpret_cast<void*>(p));
    if (a->committed > a->npages || (a->committed % kCommitStep && a->committed != a->npages))
      fatal("arena: commit mark out of range or off its step", reinterpret_cast<void*>(a->base));
    if (a->meta_pages < (a->committed < a->slots ? a->committed + 1 : a->slots))
      fatal("arena: descriptors below the commit mark are not committed", reinterpret_cast<void*>(a->base));
    if (a->slot_high > a->meta_pages || a->meta_pages > a->slots || a->slots < a->npages)
      fatal("arena: descriptor pool bounds inconsistent", reinterpret_cast<void*>(a->base));
    size_t in_use = 0;
    for (size_t w = 0; w < (a->slots + 63) / 64; w++) {
      uint64_t bits = a->slot_bits[w];
      if (w < a->slot_hint && bits != ~uint64_t{0}) fatal("arena: a free descriptor slot below the pool's hint", reinterpret_cast<void*>(a->base));
      in_use += size_t(__builtin_popcountll(bits));
    }
    // The runs tile the arena: from each run's first page, its npages lead
    // to the next run's first page; back[] of that page leads to its
    // descriptor, a slot in use below the high mark. With as many slots in
    // use as runs (checked after), no other slot is in use.
    size_t runs = 0;
    for (size_t idx = 0; idx < a->npages;) {
      uint32_t slot = a->back[idx];
      if (slot >= a->slot_high || !slot_in_use(a, slot))
        fatal("arena: back[] of a run's first page leads to no descriptor in use", reinterpret_cast<void*>(a->base + (idx << kPageShift)));
      Span* s = &a->meta[slot];
      uint8_t kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED);
      if (s->npages == 0 || idx + s->npages > a->npages || s->arena != a ||
          s->start != a->base + (idx << kPageShift))
        fatal("arena: runs do not tile the arena", reinterpret_cast<void*>(a->base + (idx << kPageShift)));
      runs++;
      if (kind != kSpanFree && idx + s->npages > a->committed)
        fatal("arena: a block or slab above the commit mark", reinterpret_cast<void*>(s->start));
      switch (kind) {
        case kSpanFree: t->free_bytes += s->bytes(); t->free_runs++; break;
        case kSpanLarge: t->large_bytes += s->bytes(); break;
        case kSpanCached: t->cached_bytes += s->bytes(); break;
        case kSpanSlab:
          t->slab_bytes += s->bytes();
          for (size_t i = 1; i < s->npages; i++)
            if (a->back[idx + i] != slot) fatal("arena: back[] wrong inside a slab", reinterpret_cast<void*>(s->start));
          break;
        default:
          // A run in transit: carved by a thread that has not set its kind
          // yet cannot be seen here (that happens under the lock).
          fatal("arena: a run of no kind", reinterpret_cast<void*>(s->start));
      }
      validate_span(s, false);
      t->runs++;
      idx += s->npages;
    }
    if (runs != in_use) fatal("arena: descriptor slots in use differ from its runs", reinterpret_cast<void*>(a->base));
  }
  if (count != arena_count_ || mapped != mapped_bytes_) fatal("arena: arena count or bytes do not add up", nullptr);
}

void validate_span(const Span* s, bool owner) {
  const void* at = reinterpret_cast<const void*>(s->start);
  uint8_t kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED);
  if (kind != kSpanSlab) {
    // Not a slab: slab_bytes must be 0 (free() relies on it to tell kinds).
    if (s->slab_bytes != 0) fatal("span: slab_bytes set on a span that is not a slab", at);
    if ((kind == kSpanLarge || kind == kSpanCached) && s->requested > s->bytes())
      fatal("span: a large block asked for more than it holds", at);
    return;
  }
  // Other threads' slabs: their owner writes the slab fields without a
  // lock, so only what never changes while slab_bytes is set is read.
  uint32_t slab_bytes = __atomic_load_n(&s->slab_bytes, __ATOMIC_RELAXED);
  if (slab_bytes == 0) return;  // a slab being set up or let go by its heap
  if (slab_bytes != s->bytes() - (guard_tail_pages() << kPageShift)) fatal("span: slab_bytes differs from the slab's pages", at);
  if (!owner) return;
  if (s->block_size == 0 || size_t(s->capacity) * s->block_size > s->slab_bytes || s->bump > s->capacity)
    fatal("span: slab geometry inconsistent", at);
  // The free list: in range, on block boundaries, no longer than the blocks
  // linked in and not handed out.
  // Blocks on the owner's list = blocks linked in - blocks handed out (a
  // block freed remotely counts as handed out until the owner collects it).
  if (s->used > s->bump) fatal("span: slab hands out more blocks than it linked in", at);
  size_t n = 0, limit = s->bump - s->used;
  for (void* b = s->free_list; b; b = link_load(b)) {
    uintptr_t off = reinterpret_cast<uintptr_t>(b) - s->start;
    if (off >= s->slab_bytes || off % s->block_size) fatal("span: slab free list leaves the slab", b);
    if (++n > limit) fatal("span: slab free list longer than its free blocks (a cycle?)", b);
  }
  if (n != limit) fatal("span: slab free list shorter than its free blocks", at);
}

}  // namespace remalloc::pages
