// page heap internals: the PageHeap object, shared by the files of pages/
// and the unit tests (never included from outside pages/ otherwise: other
// layers use page_heap.h, whose free functions forward to the process-wide
// instance, and span.h).
//
// One PageHeap owns everything the page heap had as file-scope globals: its
// lock, its settings, its arenas, the free-run bins, the purge lists and
// decay state, the byte accounting and the relocation counters. Its
// constructor is constexpr, so the process-wide instance (g_page_heap) is
// constant-initialised and needs no static constructor; a test builds a
// fresh one on a fake Platform, uses it and gives everything back with
// release_all(). Every instance registers its arenas in the one
// process-wide arena map (span.h), which is how free's fast path and the
// tests find a span from an address.
//
// Its member functions are defined across the files of pages/, one concept
// each:
//   arena.cpp      arenas: reservation, commit, trim, release_all, the
//                  arena map's writers, the validators of arenas and spans
//   free_runs.cpp  free runs: bins, coalescing, searches, byte totals
//   purge.cpp      purging: decay list, dirty cap, healing of split VMAs,
//                  the background thread's batches
//   page_heap.cpp  allocation and free of spans, the accounting of live
//                  bytes, the relocation engine's primitives, statistics,
//                  validate, and the process-wide instance with the free
//                  functions of page_heap.h
//   relocate.cpp   the relocation engine: policy only (which primitive,
//                  which mover)
//   guards.cpp     the secure build's guard pages
//
// Lock discipline: `lock_` guards every member below it unless said
// otherwise. The public operations (alloc_large, free_span, realloc_large,
// purge, get_stats, ...) take it themselves; every function whose name ends
// in _locked, and the free-run and purge-list functions, need it held and
// assert so (RM_NEEDS_LOCK: a tier-2 assertion, on in the checked, ASan and
// TSan builds). Page moves run without it: the mover's source and
// destination runs belong to the caller.
#pragma once
#include <atomic>

#include "base/list.h"
#include "base/lock.h"
#include "pages/page_heap.h"
#include "pages/platform.h"

// Rare paths (validators, trims, release, purge-all, heal-all): optimised
// for size, away from the hot text. Every process maps the library's text
// and mlockall locks it all, so bytes count here.
#define RM_RARE __attribute__((cold))

// The caller holds the page heap's lock (tier 2: REMALLOC_DEBUG >= 2).
#define RM_NEEDS_LOCK() RM_ASSERT_INTERNAL(lock_.held_by_me())

namespace remalloc::pages {

// The page index in a of the first page of run s.
RM_INLINE size_t index_of(const Arena* a, const Span* s) { return (s->start - a->base) >> kPageShift; }
// The pool slot of descriptor s (what back[] holds for its pages).
RM_INLINE uint32_t slot_of(const Arena* a, const Span* s) { return uint32_t(s - a->meta); }
// The descriptor pool (arena.cpp; the owner's page lock held): the lowest
// free slot of a's pool, reading as no run (never fails: see Arena::slots),
// and the return of one, which leaves it reading as no run.
RM_INLINE bool slot_in_use(const Arena* a, size_t i) { return (a->slot_bits[i / 64] >> (i % 64)) & 1; }
Span* slot_take(Arena* a);
void slot_drop(Arena* a, Span* s);

// Arenas are committed (made read-write) from their start in steps of
// kCommitStep pages (2 MiB, so a huge block's interior is never split
// between committed and not), as runs are handed out.
constexpr size_t kCommitStep = kHugePageSize >> kPageShift;
// An arena trimmed for mlockall ends at a multiple of this many pages.
constexpr size_t kTrimStep = 16;

// Free-run bins: exact for 1..128 pages, then four per power of two.
constexpr size_t kExactBins = 128;
constexpr size_t kBins = kExactBins + 4 * 40;

// The three lists of free runs, each through its own pair of Span links.
// A bin keeps only its head (576 of them live in the object).
using BinList = IntrusiveList<Span, &Span::next, &Span::prev, false>;
using LruList = IntrusiveList<Span, &Span::lru_next, &Span::lru_prev>;
using SplitList = IntrusiveList<Span, &Span::split_next, &Span::split_prev>;

// Totals that the arena validator gathers (validate_arenas_locked).
struct ArenaTally {
  size_t free_bytes, large_bytes, slab_bytes, cached_bytes, runs, free_runs;
};

class PageHeap {
 public:
  explicit constexpr PageHeap(Platform* platform) : platform_(platform) {}
  // No destructor: the process-wide instance must never be torn down (and
  // a destructor would make it need a static initialiser to register it).
  // Tests call release_all() before the instance goes away.
  PageHeap(const PageHeap&) = delete;
  PageHeap& operator=(const PageHeap&) = delete;

  Platform& platform() const { return *platform_; }

  // ---- operations (each takes the lock; see page_heap.h) -----------------
  void configure(const Config& c);
  const Config& config() const { return config_; }
  Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed = nullptr);
  Span* alloc_slab(size_t npages);
  // The span of npages pages as is (no guard page added or installed; the
  // lock inside): what alloc_large and alloc_slab wrap.
  Span* alloc_large_unguarded(size_t npages, size_t align_pages, size_t requested, bool* zeroed);
  Span* alloc_slab_unguarded(size_t npages);
  void prefault(Span* s, uintptr_t from, uintptr_t to);
  void free_span(Span* s);
  void* realloc_large(Span* s, size_t new_size);  // relocate.cpp; lock inside
  size_t purge(bool all);
  RM_RARE size_t trim_reservations();
  uint64_t background_step(uint32_t* seq);
  std::atomic<uint32_t>* background_word() { return &bg_seq_; }
  void set_background(bool active);
  bool purge_work_seen() const { return work_seen_.load(std::memory_order_relaxed); }
  void fork_prepare() {
    lock_.fork_acquire();
    purge_before_fork_locked();
  }
  void fork_parent() { lock_.fork_release(); }
  void fork_child();
  void get_stats(Stats* out);
  RM_RARE void validate();
  // Gives every arena back to the platform and takes it out of the arena
  // map; the instance is empty afterwards, as constructed (settings kept).
  // For tests: every span it handed out is gone.
  RM_RARE void release_all();

  // Secure build (guards.cpp): the guard on the last page of a span that
  // has guard_tail_pages() extra pages. The page heap's own: alloc_large,
  // alloc_slab, free_span and realloc_large put it on and take it off.
  void guard_install_tail(Span* s);
  void guard_remove_tail(Span* s);

  // ---- the relocation engine's primitives (page_heap.cpp; take the lock)
  // Grows (claiming the free run that follows) or shrinks (returning the
  // tail) a live large block to `new_pages`; false when growth finds no room.
  bool resize_in_place(Span* s, size_t new_pages, size_t new_size);
  // A run of `npages` for a block moving in (a live large block already, so
  // the accounting holds), aligned to `align` plus `phase` pages, in
  // `region`, preferring a place with free pages after it. nullptr if none.
  Span* take_move_dst(size_t npages, size_t align, size_t phase, Region region, size_t new_size);
  // Gives back a live large block whose pages were moved away (`clean`: they
  // read as zeros now; `split`: a page move may have split its VMA).
  void release_moved(Span* s, bool clean, bool split);
  // A move from src to dst finished: dst is the block now (`remapped`: its
  // pages arrived by mremap, in a VMA of their own; the huge page policy
  // advises its interior), src goes back. One hold of the lock.
  void finish_move(Span* src, Span* dst, bool src_clean, bool remapped);
  // Heals all split free runs if enough wait; false if none.
  RM_RARE bool heal_for_budget();

  // ---- arenas (arena.cpp; lock held) -------------------------------------
  // A new arena with room for `npages` aligned to `align_pages`, in `region`;
  // registered in the arena map, its pages one clean free run.
  Arena* new_arena_locked(size_t npages, size_t align_pages, Region region);
  // Makes pages [0, end) of `a` read-write (rounded up to the step) and their
  // descriptors usable; false when the kernel refuses (under
  // mlockall(MCL_FUTURE), past RLIMIT_MEMLOCK): the caller fails cleanly.
  // Call before carving a run that ends above a->committed.
  bool commit_locked(Arena* a, size_t end);
  // Releases the reserved, never-committed tail of every arena and of its
  // descriptors (see page_heap.h's trim_reservations).
  RM_RARE size_t trim_reservations_locked();
  // Checks every arena: alignment, map entries, and that its runs tile it
  // (each run's `back` entries and kinds). Returns bytes by kind.
  RM_RARE void validate_arenas_locked(ArenaTally* out);
  Arena* arenas() const { return arenas_; }
  size_t arena_count() const { return arena_count_; }

  // ---- free runs (free_runs.cpp; lock held) ------------------------------
  // Every run of free pages has a Span (kind kSpanFree)
  // and sits in one of kBins bins of its region, with a bitmap of non-empty
  // bins. Runs coalesce with free neighbours of the same arena.
  //
  // Invariants (validate_runs_locked checks them):
  //  - no two free runs are adjacent (coalescing is complete);
  //  - a run is in the bin of its size in the bin set of its arena's
  //    region, and a bin's bitmap bit is set iff the bin is non-empty;
  //  - back[first] == back[last] == the slot of its descriptor;
  //  - the dirty hull [maint_lo, maint_hi) lies in the run, empty iff clean;
  //  - free_bytes() is the sum of run bytes, dirty_bytes() the sum of hulls.
  //
  // Makes pages [idx, idx+n) of `a` one free run, without coalescing. Dirty
  // pages lie within [lo, hi) (clipped to the run); `flags` kFree*.
  Span* make_run(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t t, size_t lo, size_t hi);
  // Takes run f off every list (to claim it); its descriptor goes back to
  // the pool (read what is needed of it first).
  void unlink_run(Span* f);
  // Returns pages [idx, idx+n) to the free pool, coalescing with free
  // neighbours; returns the resulting run.
  Span* put(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t now);
  // The free run starting at page idx of a, or nullptr.
  static Span* run_at(Arena* a, size_t idx);
  // Searches the bins of `region` for a run holding npages aligned to
  // `align` pages plus `phase`, of at least `min_run` pages when possible;
  // sets *skip to the offset of the aligned start in the run.
  Span* find(size_t npages, size_t align, size_t phase, Region region, size_t min_run, size_t* skip);
  // Claims npages of run f from `skip`: the pages before and after stay
  // free. Returns a new descriptor of the claimed pages (kind kSpanNone),
  // whose `flags` keep kFreeSplit of the run, and kFreeDirty when the
  // dirty hull covers any of them.
  Span* carve(Span* f, size_t skip, size_t npages);
  // The dirty hull of f was purged: it holds no memory now.
  void mark_clean(Span* f);
  // Part of the hull was purged: the dirty pages now lie in [lo, hi), a
  // non-empty part of the old hull.
  void shrink_hull(Span* f, size_t lo, size_t hi);
  size_t free_bytes() const { return free_bytes_; }
  size_t dirty_bytes() const { return dirty_bytes_; }
  // Checks the invariants above over every bin; returns the number of runs.
  RM_RARE size_t validate_runs_locked();

  // ---- purging (purge.cpp; lock held unless said otherwise) --------------
  // Free runs that may hold memory (dirty) sit on the decay list, newest
  // first; they are purged (MADV_DONTNEED of their dirty hull) once free
  // for the purge delay, or at once, oldest first, while the dirty bytes
  // exceed the cap. Free runs whose VMA page moves may have split sit on
  // the split list and are healed (a fresh mmap over the run, so it merges
  // back into one VMA) with the decay, and all at once past half the VMA
  // budget. Bounded work per call (purge.cpp).
  //
  // Invariants (validate_purge_locked checks them):
  //  - a run on the decay list is free and dirty (a dirty run is off it
  //    only after a failed purge); newest at the head;
  //  - a run is on the split list iff on_split, iff it has kFreeSplit and
  //    is in the normal region; split_count() is the list's length.
  void track(Span* f);    // a new free run: onto the lists its flags ask for
  void untrack(Span* f);  // a run being claimed or coalesced: off every list
  // After pages came back as run f at `now`: heals when due, arms the decay
  // timer, and enforces the dirty cap. `credit_pages`: pages the call gave
  // back (they may be purged at once past the cap, on top of the budget).
  void after_put(Span* f, size_t credit_pages, uint64_t now);
  // A bounded share of the due purges (none while the thread runs) and of
  // the dirty cap (credit_pages: pages the call takes).
  void maybe_purge(uint64_t now, size_t credit_pages = 0);
  // Purges every dirty run and heals every split run.
  RM_RARE void purge_all_locked();
  void purge_before_fork_locked();
  // A recently freed run whose memory is still resident and that can hold
  // the request, and the offset in it that lands on its dirty pages; looks
  // at the kResidentLook newest dirty runs.
  static constexpr int kResidentLook = 1024;
  Span* find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip);
  // The dirty cap now, and whether the footprint is past half the memory
  // limit (then fresh blocks search further for resident pages).
  size_t dirty_cap() const;
  bool under_pressure() const;
  size_t purged_bytes() const { return purged_bytes_; }
  size_t heals() const { return heals_; }
  size_t split_count() const { return split_.size(); }
  // Checks the invariants above; returns the length of the decay list.
  RM_RARE size_t validate_purge_locked();

  // ---- accounting (page_heap.cpp; lock held) -----------------------------
  size_t peak_bytes_locked() const { return peak_bytes_; }
  size_t held_bytes_locked() const { return large_bytes_ + slab_bytes_; }
  void count(Counter c, size_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }
  size_t counter(Counter c) const { return counters_[c].load(std::memory_order_relaxed); }

  // The lock, for tests that call the _locked functions directly.
  Mutex& lock() { return lock_; }

 private:
  struct BinSet {
    BinList head[kBins];
    uint64_t nonempty[(kBins + 63) / 64];  // bit i set iff head[i] is not empty
  };

  // page_heap.cpp
  Span* take_run(size_t npages, size_t align, Region region, bool room_after, size_t phase);
  void init_large(Span* s, size_t npages, size_t requested, uint8_t run_flags);
  void give_back(Span* s, uint8_t flags, uint64_t now);
  void account_large(ptrdiff_t blocks, ptrdiff_t bytes);
  void note_peak();
  RM_RARE void validate_locked();
  void validate_sometimes();
  void release_moved_locked(Span* s, bool clean, bool split);
  // The huge page policy (page_heap.cpp).
  bool huge_policy_applies(const Span* s) const;
  void huge_advise_locked(Span* s, uintptr_t from);
  void huge_forget_locked(Span* s);
  // arena.cpp
  Arena* make_arena(size_t bytes, Region region);
  bool commit_meta(Arena* a, size_t n);
  void unmap_arena(Arena* a);
  // free_runs.cpp
  void bin_insert(Span* f, Region r);
  void bin_remove(Span* f);
  // purge.cpp
  size_t purge_run(Span* f, size_t max_pages = ~size_t{0});
  void heal_run(Span* f);
  void after_heals();
  bool heal_some(int max_runs, size_t* budget);
  bool heal_due();
  void rearm();
  size_t limit_room() const;
  size_t enforce_cap(size_t budget, int runs);
  size_t decay_heals(uint64_t now, size_t budget, int runs);
  size_t decay(uint64_t now, size_t budget, int runs);
  RM_RARE void purge_free_descriptors();
  void wake_background();
  void lru_remove(Span* f) {
    if (lru_.contains(f)) lru_.remove(f);
  }
  void split_remove(Span* f) {
    if (!f->on_split) return;
    split_.remove(f);
    f->on_split = 0;
  }
  // relocate.cpp
  void* realloc_large_unguarded(Span* s, size_t new_size);
  bool uffd_ready(Arena* a);

  Platform* const platform_;
  Config config_;  // written by configure() under the lock; read without it
  mutable Mutex lock_;

  // ---- arenas
  Arena* arenas_ = nullptr;  // all arenas, newest first
  size_t arena_count_ = 0;
  size_t mapped_bytes_ = 0;  // sum of arena bytes
  size_t meta_bytes_ = 0;    // sum of their metadata reservations and map leaves

  // ---- accounting: mapped_bytes_ = large_bytes_ + slab_bytes_ + free_bytes_
  size_t large_live_ = 0;   // live large blocks (cached ones included)
  size_t large_bytes_ = 0;  // their bytes
  size_t slab_bytes_ = 0;   // bytes of all slabs
  size_t slabs_ = 0;        // number of slabs
  size_t peak_bytes_ = 0;   // peak of large_bytes_ + slab_bytes_
  size_t huge_blocks_ = 0;  // live blocks with kLargeHugeAdv
  size_t huge_bytes_ = 0;   // the bytes of their advised interiors
  size_t ops_ = 0;          // operations, for the checked build's validation
  std::atomic<size_t> counters_[kNumCounters] = {};  // relaxed; no lock

  // ---- free runs
  BinSet bins_[kNumRegions] = {};
  size_t free_bytes_ = 0;   // sum of the bytes of every free run
  size_t dirty_bytes_ = 0;  // sum of the dirty hulls of every free run

  // ---- purging
  LruList lru_;      // dirty runs, newest at the head
  SplitList split_;  // free runs whose VMAs page moves may have split, newest first
  // Heal only once this many split runs wait: when live moved blocks hold
  // the VMAs, healing frees nothing, so the threshold doubles after such a heal.
  size_t heal_min_ = 1;
  uint64_t next_purge_ns_ = ~uint64_t{0};  // earliest due purge, or never
  size_t purged_bytes_ = 0;
  size_t heals_ = 0;
  // The background thread's share.
  bool bg_active_ = false;    // a background thread does the decay and heals
  bool bg_sleeping_ = false;  // it waits for work (wake it when some comes)
  bool in_bg_ = false;        // the current purge runs on the background thread
  std::atomic<uint32_t> bg_seq_{0};      // futex word; no lock
  std::atomic<bool> work_seen_{false};   // a dirty or split run was made; no lock
  std::atomic<size_t> prefault_pages_{0};  // pages prefault populated; no lock
  // config_.prefault, for prefault(), which runs without the lock while
  // configure() may write config_ (options applied by another thread).
  std::atomic<bool> prefault_on_{true};
  size_t bg_purged_bytes_ = 0;
  size_t bg_heals_ = 0;
};

// Resident bytes of the arena map (root and leaves; process-wide).
size_t map_resident();

// The process-wide page heap, on the real platform (page_heap.cpp).
extern PageHeap g_page_heap;

}  // namespace remalloc::pages
