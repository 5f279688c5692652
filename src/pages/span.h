// page heap: spans and arenas.
//
// An arena is a large reservation of address space (64 MiB aligned, a
// multiple of 64 MiB), reserved inaccessible (PROT_NONE, NORESERVE) and
// committed read-write from its start as runs are handed out (a high-water
// mark, `committed`), carved into runs of pages. Every run has a Span
// descriptor in a slot of the arena's descriptor pool (`meta`): the pool
// hands out its lowest free slot, so the descriptors in use stay packed at
// its start and only their pages are touched (one slot per page, at the
// run's first page, touched a page of descriptors for every 21 pages of
// small runs: 4.7% of the memory of small slabs). `back[i]` holds the slot
// of page i's run (set for every page of a slab, for the first and last
// page of a free run, for the first page only of a large block; 0 for
// pages never written). Lookups verify what `back` says (the run must
// contain the address: a slot freed or given to another run since has
// another start), so stale entries are harmless, and every entry leads to
// a committed descriptor.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace remalloc {

struct Heap;  // owner of a slab (small heaps layer); opaque here
struct Arena;

// kSpanCached: a freed large block a thread keeps for reuse (small heaps
// layer); the page heap still counts it as in use.
enum SpanKind : uint8_t {
  kSpanNone = 0, kSpanFree = 1, kSpanLarge = 2, kSpanSlab = 3, kSpanCached = 4
};

// Flags of free runs.
constexpr uint8_t kFreeDirty = 1;  // may hold touched pages
constexpr uint8_t kFreeSplit = 2;  // page moves may have split its VMA
// It held a huge-page-advised block: its pages may be on huge pages, so it
// is purged in whole 2 MiB granules (a partial MADV_DONTNEED would split a
// huge page into small ones); kept with kFreeSplit, so the decay heals it.
constexpr uint8_t kFreeHuge = 4;
// Flags of large blocks.
constexpr uint8_t kLargeMovedIn = 1;   // its pages arrived by mremap (own VMA)
constexpr uint8_t kLargeHugeAdv = 2;   // MADV_HUGEPAGE on its interior granules
                                       // (with kLargeMovedIn: a VMA of its own)

// The span/slab contract between pages/ (the page heap) and heap/ (the
// small heaps). Who may write each field, and how:
//
//   field                    | writer                     | how
//   -------------------------+----------------------------+---------------------------
//   start, npages, arena     | page heap                  | under the page lock (the
//                            |                            | relocation engine through
//                            |                            | the primitives that take it)
//   kind                     | page heap; the small heaps | page lock; the large cache
//                            | flip kSpanLarge <->        | flips a live block it owns
//                            | kSpanCached                | with a relaxed atomic store,
//                            |                            | never to or from kSpanFree,
//                            |                            | so the page heap reads
//                            |                            | neighbours' kind atomically
//   flags, in_list, on_split,| page heap                  | page lock (also a live
//   next/prev (free runs),   |                            | block's flags: finish_move)
//   lru_*, split_*, maint_*, |                            |
//   free_ns                  |                            |
//   requested                | owner of the large block   | no lock (pages::set_requested)
//   free_list, used, bump,   | owning heap's thread (or   | no lock: only the owner
//   is_full, next/prev       | the backstop lock holder)  |
//   (slab lists)             |                            |
//   heap, slab_bytes, recip, | small heaps, between       | before the slab is published
//   block_size, capacity,    | alloc_slab() and the first | to other threads; cleared
//   size_class               | block handed out           | (slab_bytes = 0) before
//                            |                            | free_span()
//   remote                   | any thread                 | atomic (CAS push, count
//                            |                            | +1; owner exchanges;
//                            |                            | bit 0 "full")
//
// validate_span() checks what can be checked of this contract for one span.
//
// Fields are ordered so that everything malloc and free touch for a slab
// (free_list, start, heap, slab_bytes, recip, block_size, used, is_full,
// remote) lies in the first cache line.
struct alignas(64) Span {
  // ---- line 0: the slab fast path
  void* free_list = nullptr;  // slab: free blocks for the owner, singly linked;
                              // each in [start, start + slab_bytes), on a block
                              // boundary; used + (length) + (remote) <= bump
  uintptr_t start = 0;        // address of the first page = arena base + index * page
  Heap* heap = nullptr;       // slab: owner; null for every other kind
  // Bytes of the slab; 0 for every span that is not a slab, so one compare
  // both checks the kind and that an address lies inside.
  uint32_t slab_bytes = 0;    // slab: npages * kPageSize, >= capacity * block_size
  uint32_t recip = 0;         // slab: ceil(2^32 / block_size), exact division check
  uint32_t block_size = 0;    // slab: the size of its class
  uint32_t used = 0;          // slab: blocks handed out, not yet freed to the owner; <= bump
  uint8_t is_full = 0;        // slab: on the owner heap's full list
  uint8_t kind = 0;           // SpanKind; valid at a run's first page only
  uint8_t flags = 0;          // kFree* or kLarge*
  uint8_t size_class = 0;     // slab: its class
  uint32_t bump = 0;          // slab: blocks ever linked into the free list; <= capacity
  // Remote frees: a list of blocks in the low 48 bits, its length in the
  // top 16 (heap/internal.h, kRemoteCountShift); the word 1 (bit 0) means
  // "the owner found this slab full: send frees to the heap's delayed list
  // instead".
  std::atomic<uintptr_t> remote{0};
  // ---- line 1: run bookkeeping
  size_t npages = 0;          // pages in the run, >= 1, within the arena
  Arena* arena = nullptr;     // the arena holding the run
  Span* next = nullptr;       // free: bin list; slab: the owner heap's list
  Span* prev = nullptr;
  uint32_t capacity = 0;      // slab: blocks in the slab
  uint8_t in_list = 0;        // free run: which bin set it is in (1 + region), 0 none
  uint8_t on_split = 0;       // free run: on the split list (iff kFreeSplit)
  size_t requested = 0;       // large: bytes asked for, <= npages * kPageSize
  uint64_t free_ns = 0;       // free run: when it became dirty
  // ---- line 2: free-run maintenance
  Span* lru_next = nullptr;   // purge list (dirty runs), oldest at tail
  Span* lru_prev = nullptr;
  // The pages that may be dirty lie in [maint_lo, maint_hi) (page indexes in
  // the arena), inside the run: purging touches only that hull. Empty
  // (lo == hi) iff the run is not dirty. A run in use keeps the hull it
  // had when carved (the page heap writes it under the lock before the run
  // is handed out; a slab's owner reads it to prefault, page_heap.h): the
  // pages outside it were not resident then.
  size_t maint_lo = 0;
  size_t maint_hi = 0;
  Span* split_next = nullptr;  // list of free runs with a split VMA
  Span* split_prev = nullptr;

  size_t bytes() const { return npages << kPageShift; }
  uintptr_t end() const { return start + bytes(); }
};
static_assert(sizeof(Span) == 192, "three cache lines");

constexpr unsigned kArenaMapShift = 26;  // arenas are 64 MiB aligned
constexpr size_t kArenaGranule = size_t{1} << kArenaMapShift;
constexpr unsigned kAddressBits = 47;
constexpr size_t kArenaMapSize = size_t{1} << (kAddressBits - kArenaMapShift);
// The arena map has two levels: a root of kMapRootSize entries in .bss
// (4 KiB), each leading to a leaf of kMapLeafSize entries (32 KiB, one per
// 64 MiB granule: a leaf covers 256 GiB), made when an arena first lands in
// its range. Root entries without a leaf lead to one shared, all-null leaf,
// so a lookup is two loads and no branch. (A flat table was 16 MiB of .bss,
// which mlockall populated and which counted against RLIMIT_MEMLOCK.)
constexpr unsigned kMapLeafBits = 12;
constexpr unsigned kMapRootShift = kArenaMapShift + kMapLeafBits;
constexpr size_t kMapLeafSize = size_t{1} << kMapLeafBits;
constexpr size_t kMapRootSize = size_t{1} << (kAddressBits - kMapRootShift);
static_assert(kMapRootSize * kMapLeafSize == kArenaMapSize, "the two levels cover the address space");

struct Arena {
  uintptr_t base;      // aligned to kArenaGranule
  size_t npages;       // pages of the arena (a multiple of 512; of 16 once
                       // trimmed for mlockall)
  // The descriptor pool: `slots` descriptors reserved; meta[0, meta_pages)
  // are committed (read-write), the rest inaccessible.
  Span* meta;
  // The slot of the descriptor of the run holding each page, one per page
  // of the arena's granules (entries past npages, and entries never
  // written, are 0 and lead to meta[0], which is always committed). Exact
  // for every page of a slab, for both ends of a free run and the first
  // page of a large block; other entries may be stale (< slot_high), so
  // readers check the run they lead to. Committed whole (4 bytes a page).
  uint32_t* back;
  // Slot i of the pool is in use (a run's descriptor) iff bit i is set;
  // one bit per page of the arena's granules, committed whole. A free slot
  // reads as no run (kind kSpanNone, npages 0, start 0), or as zeros once
  // purge_free_descriptors gave its page back.
  uint64_t* slot_bits;
  // The pool's capacity: npages when made; a trim keeps max(new npages,
  // slot_high), since stale back[] entries may name any slot used so far.
  // Runs <= committed + 1 (every run but the one above the commit mark has
  // a page below it) and the pool hands out its lowest free slot, so a new
  // slot is always < committed + 1 <= meta_pages: taking one never fails.
  size_t slots;
  size_t meta_bytes;   // size of the metadata reservation (header, back, bits, meta)
  // Pages [0, committed) of the arena are read-write, the rest PROT_NONE:
  // every run that is not free lies below it, and committed <= npages.
  // Only rises (commit_locked), in steps of kCommitStep pages, except when
  // mlockall trims the reservation (trim_reservations_locked).
  size_t committed;
  // Descriptors meta[0, meta_pages) are committed; meta_pages >= committed
  // + 1 (the most runs the committed pages can hold) unless it covers the
  // pool, and <= slots.
  size_t meta_pages;
  Arena* next_arena;
  uint8_t region;      // 0: normal (mremap moves), 1: uffd-registered
  uint32_t uffd_gen;   // registration generation
  // Written under the page lock at every run made or ended: a cache line of
  // their own, away from base, meta and back, which every free() reads
  // (a precaution: manyprod-8's time was within its spread either way).
  alignas(64) size_t slot_hint;  // no free slot in words [0, slot_hint) of slot_bits
  size_t slot_high;              // 1 + the highest slot ever handed out; <= meta_pages
  size_t bytes() const { return npages << kPageShift; }
};
static_assert(offsetof(Arena, slot_hint) >= 64 && offsetof(Arena, uffd_gen) < 128, "the pool's counters on a line of their own");

namespace pages {
// The arena map: one entry per 64 MiB of address space, in two levels.
// Root entries are never null: a range without arenas leads to the shared
// empty leaf. Entries are written under the lock of the PageHeap that owns
// the arena (every instance registers its arenas here; leaves are made
// under the map's own lock) and only ever gain entries for new arenas, or
// lose them when mlockall trims an arena or a test's instance is released.
struct ArenaMapRoot {
  Arena* const* leaf[kMapRootSize];
};
extern ArenaMapRoot g_arena_map;

RM_INLINE Arena* arena_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (RM_UNLIKELY(a >> kAddressBits)) return nullptr;
  return g_arena_map.leaf[a >> kMapRootShift][(a >> kArenaMapShift) & (kMapLeafSize - 1)];
}
// The map entry of the granule holding address a (nullptr: none).
RM_INLINE Arena* map_entry(uintptr_t a) { return arena_of(reinterpret_cast<const void*>(a)); }

// The run holding p according to the metadata, or nullptr. For a slab the
// result contains p; for other kinds the caller checks what it needs.
RM_INLINE Span* span_of(const void* p) {
  Arena* a = arena_of(p);
  if (RM_UNLIKELY(!a)) return nullptr;
  size_t idx = (reinterpret_cast<uintptr_t>(p) - a->base) >> kPageShift;
  Span* s = &a->meta[a->back[idx]];
  return s;
}
// Free-list links of small blocks (the first word of a free block). The
// secure build stores them encoded: next ^ key ^ (slot address >> 4), with a
// random key per process, so a link overwritten by a use after free or an
// overflow decodes to an address outside the slab and is caught when the
// block is handed out, and an attacker cannot forge a link without the key.
// Every list of free blocks (slab free lists, remote lists, delayed lists)
// uses these two functions.
extern uintptr_t g_link_key;  // set once before the first slab (secure build)
RM_INLINE void* link_load(const void* slot) {
  uintptr_t v = *static_cast<const uintptr_t*>(slot);
  if constexpr (kSecure) v ^= g_link_key ^ (reinterpret_cast<uintptr_t>(slot) >> 4);
  return reinterpret_cast<void*>(v);
}
RM_INLINE void link_store(void* slot, const void* next) {
  uintptr_t v = reinterpret_cast<uintptr_t>(next);
  if constexpr (kSecure) v ^= g_link_key ^ (reinterpret_cast<uintptr_t>(slot) >> 4);
  *static_cast<uintptr_t*>(slot) = v;
}

// Guard pages (secure build, kernels with MADV_GUARD_INSTALL): every large
// block and every slab has one more page than it uses, its last, holding a
// guard (guards.cpp). 0 in the normal build or when the kernel lacks guards;
// the answer never changes within a process.
size_t guard_tail_pages_slow();
RM_INLINE size_t guard_tail_pages() {
  if constexpr (!kSecure) return 0;
  return guard_tail_pages_slow();
}
// The bytes of a large block the program may use (the span less its guard).
RM_INLINE size_t block_bytes(const Span* s) { return s->bytes() - (guard_tail_pages() << kPageShift); }

// Checks the span/slab contract for the run whose first page is `s`: kind
// and geometry, and for a slab its free list (in range, on block
// boundaries, no longer than the blocks not in use) when the caller owns it.
// Aborts with a message on the first violation.
void validate_span(const Span* s, bool owner);
}  // namespace pages

}  // namespace remalloc
