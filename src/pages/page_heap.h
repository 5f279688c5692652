// page heap: the front door of pages/. Runs of pages for slabs and large
// blocks, the relocation engine for large blocks, purging, statistics and
// the checked build's validator. Nothing outside pages/ includes another
// pages/ header except span.h (the span/slab contract).
//
// Every function here forwards to the process-wide PageHeap (internal.h),
// one constant-initialised object that owns the page heap's lock, settings,
// arenas, free runs, purge lists, accounting and counters, on the real
// platform. Tests build other instances on a fake platform.
//
// Thread safety: each function takes the page heap's lock itself when it
// needs it; callers hold no page-heap lock. Page moves run outside it: the
// mover's source and destination runs belong to the caller.
#pragma once
#include <cstddef>
#include <cstdint>
#include <atomic>

#include "pages/span.h"
#include "remalloc/remalloc.h"

namespace remalloc::pages {

enum Region : uint8_t { kRegionNormal = 0, kRegionUffd = 1, kNumRegions = 2 };

// Settings from the api layer's options, passed in with configure().
struct Config {
  uint64_t purge_delay_ns = 100'000'000;      // 100 ms
  size_t arena_bytes = size_t{256} << 20;     // default reservation
  size_t move_threshold = size_t{128} << 10;  // copy below this size
  size_t huge_threshold = size_t{2} << 20;    // 2 MiB-aligned at or above
  size_t mremap_threshold = size_t{8} << 20;  // mremap before UFFDIO_MOVE at or above
  int mover = -1;                             // -1 auto, else movers::Kind
  // Transparent huge pages (page_heap.cpp, "the huge page policy"): large
  // blocks from hugepage_threshold get MADV_HUGEPAGE on their whole 2 MiB
  // granules, which are then kept whole. Set only where the system's mode
  // is madvise and the process did not disable THP.
  bool hugepage = false;
  size_t hugepage_threshold = size_t{2} << 20;
  size_t shrink_slack_pages = 0;              // shrink only when freeing more
  bool grow_inplace = true;                   // claim following free pages
  size_t dirty_max = size_t{128} << 20;       // dirty cap: at least this...
  size_t dirty_ratio = 25;                    // ...or this % of bytes held for blocks
  size_t memory_limit = 0;                    // cgroup (or option) limit, 0 none
  bool grow_headroom = true;                  // moved blocks get room to grow
  bool prefault = true;                       // populate fresh slab pages (prefault)
};
// Takes effect for later operations; may be called at any time.
void configure(const Config& c);
const Config& config();

// A large block of `npages` pages whose start is aligned to `align_pages`
// (power of two). Returns nullptr when address space runs out. With
// `zeroed`, tells whether the pages are known to read as zeros. The secure
// build's span is one page longer, its last page a guard (guards.cpp).
Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed = nullptr);
// A slab of `npages` pages (every page's `back` set; plus the secure
// build's guard page, as for alloc_large).
Span* alloc_slab(size_t npages);
// Slab s is about to write bytes [from, to) of its own (page-aligned) for
// the first time: its owner, linking fresh blocks (heap/slabs.cpp, extend).
// Populates those of the pages that were not resident when the slab was
// carved (outside its hull: maint_lo/maint_hi) with one system call
// (MADV_POPULATE_WRITE) instead of a page fault each, which costs more
// on virtual machines (os.h). Pages that may be resident are left alone
// (a call on them would cost a microsecond for nothing). Does nothing with
// config().prefault off or on a kernel without the call; a failed call
// leaves the pages to fault in as usual. No lock: the hull does not change
// while the slab lives.
void prefault(Span* s, uintptr_t from, uintptr_t to);
// Gives a large block or a slab back; it coalesces with free neighbours.
void free_span(Span* s);
// Records the bytes asked for a live large block (the owner only).
RM_INLINE void set_requested(Span* s, size_t n) { s->requested = n; }

// Is p the start of a live large block? (for free/realloc validation)
RM_INLINE bool is_large_start(const Span* s, const void* p) {
  return s->kind == kSpanLarge && s->start == reinterpret_cast<uintptr_t>(p);
}

// realloc of a large block (relocate.cpp): returns the block's new address
// (maybe the same), or nullptr with ENOMEM and the block untouched. In the
// secure build `new_size` excludes the guard page: realloc_large takes the
// guard off the old block and puts it on the result (or back).
void* realloc_large(Span* s, size_t new_size);

// Runs the purge of runs whose delay passed; `all` purges every dirty run
// and heals every split one. Returns bytes purged.
size_t purge(bool all);
// Releases the reserved, never-committed tails of the arenas and their
// descriptors (each arena ends at its commit mark afterwards, keeping at
// least 2 MiB); returns the bytes of address space released. For
// mlockall(MCL_CURRENT), which fails for an unprivileged process whose
// mapped address space (inaccessible reservations included) exceeds
// RLIMIT_MEMLOCK.
size_t trim_reservations();

// The background thread's side (purge.cpp). background_step takes the
// lock for one bounded batch of due work; set_background tells calls to
// leave the decay to the thread; purge_work_seen says (without the lock)
// whether a dirty or split run was ever made.
uint64_t background_step(uint32_t* seq);
std::atomic<uint32_t>* background_word();
void set_background(bool active);
bool purge_work_seen();

// fork: hold the lock for the forking thread, release in the parent, reset
// in the child.
void fork_prepare();
void fork_parent();
void fork_child();

// The relocation engine's counters (relaxed atomics), in the order of
// REMALLOC_RELOC_COUNTERS in the public header.
enum Counter : int {
#define RM_COUNTER_ENUM(name, label, doc) kCount_##name,
  REMALLOC_RELOC_COUNTERS(RM_COUNTER_ENUM)
#undef RM_COUNTER_ENUM
  kNumCounters
};

// One consistent snapshot, taken under the lock.
struct Stats {
  size_t mapped, arenas, meta_bytes;            // arenas and their descriptors
  size_t large_live, large_bytes, slab_bytes, slabs, peak_bytes;  // held for blocks
  size_t free_bytes, dirty_bytes;               // free runs, and their dirty part
  size_t purged_bytes, heals;                   // done so far
  size_t bg_purged_bytes, bg_heals;             // of which by the background thread
  size_t dirty_cap;                             // the dirty cap now
  size_t meta_resident;                         // resident metadata (arenas, map)
  size_t moved_blocks, split_runs;              // live moved-in blocks, split free runs
  size_t huge_blocks, huge_bytes;               // live huge-page-advised blocks, their interiors
  size_t prefault_pages;                        // pages populated by prefault so far
  size_t counters[kNumCounters];
};
void get_stats(Stats* out);
// Bytes of the arenas on transparent huge pages now (AnonHugePages of their
// VMAs in /proc/self/smaps); -1 when unknown. Takes no lock (reads a
// file): for the statistics only.
long huge_backed_bytes();


// Checks every structure of the page heap (free runs, bins, purge lists,
// arenas and their `back` entries, the byte accounting); aborts with a
// message on the first inconsistency. Takes the lock.
void validate();

}  // namespace remalloc::pages
