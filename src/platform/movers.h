// platform: the three page movers behind one interface, each probed at run
// time, and the userfaultfd registration they need.
//
// Contract of every mover: move(dst, src, len) with page-aligned, disjoint,
// mapped, read-write private anonymous ranges, dst free for the taking.
//  - true:  all len bytes are at dst. `out` says how many were moved by
//           remapping and how many copied, and whether src was left empty.
//  - false: all len bytes are still at src; dst holds nothing that matters.
// A mover that fails part-way finishes the move by copying (it never leaves
// the contents split between src and dst). The mremap mover moves VMA by VMA
// for that reason: since Linux 6.17 one call may move several VMAs and fail
// after the first (movers.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace remalloc::movers {

enum Kind : int { kMremap = 0, kUffd = 1, kCopy = 2, kNumKinds = 3 };
const char* kind_name(int kind);

struct Outcome {
  size_t moved = 0;       // bytes relocated by remapping page tables
  size_t copied = 0;      // bytes relocated by memcpy
  bool src_clean = false; // src now reads as zeros (no memory held)
  bool fork_busy = false; // uffd refused pages shared with a fork child
  bool partial = false;   // a mover failed part-way and copying finished it
  int calls = 0;          // mremap calls that moved pages (one per VMA)
  int err = 0;            // errno of the failure, if any
};

// Feature probes (run once, lazily, thread-safe; real syscalls, never the
// kernel version).
bool mremap_dontunmap_available();
// How the mremap mover works here, for verbose mode: "no", or "yes" and
// whether it moves VMA by VMA (see movers.cpp).
const char* mremap_mode();
bool uffd_move_available();

bool move_mremap(void* dst, void* src, size_t len, Outcome* out);
// dst must lie inside a region registered with uffd_register() in the
// current generation.
bool move_uffd(void* dst, void* src, size_t len, Outcome* out);
// Copies, then purges src when `purge_src` (otherwise src keeps its bytes).
bool move_copy(void* dst, void* src, size_t len, bool purge_src, Outcome* out);

// Registers [base, base+len) with the process's userfaultfd in write-protect
// mode (nothing is ever write-protected; it only authorises UFFDIO_MOVE).
bool uffd_register(void* base, size_t len);
// Changes whenever registrations are lost (after fork in the child).
uint32_t uffd_generation();

// fork: the prepare handler holds the userfaultfd and /proc/self/maps locks
// for the forking thread; the parent handler releases them.
void fork_prepare();
void fork_parent();
// fork: the child loses the parent's registrations and may not use its
// userfaultfd; call in the child, with no other thread alive.
void after_fork_child();

// Failure injection for tests: the next `count` calls of mover `kind` fail
// at `step` (0 first, 1 middle, 2 last).
void inject_failure(int kind, int step, int count);

}  // namespace remalloc::movers
