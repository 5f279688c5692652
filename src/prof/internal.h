// prof: what the files of prof/ share. Not included from outside prof/.
//
// One lock (g_lock) guards the stack table, the records of live sampled
// blocks, the pool they come from and the marks' radix tree's growth. It is
// taken only on sampled allocations, frees of sampled blocks, reallocs of
// sampled blocks and dumps, never while capturing a stack, and nothing that
// holds it calls into another layer that takes a lock of its own (the pool
// maps its chunks with os::reserve, a system call).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/lock.h"
#include "prof/prof.h"

namespace remalloc::prof {

extern Mutex g_lock;

// One distinct stack and its counts (raw, unscaled: the viewers scale them).
// Made once, never freed (a program has a bounded number of allocation
// sites); `all_next` links them in the order they were made, for dumps.
struct Stack {
  Stack* next;      // hash chain
  Stack* all_next;  // every stack, newest first
  uint64_t hash;
  uint64_t live_objs, live_bytes;    // sampled blocks still live
  uint64_t alloc_objs, alloc_bytes;  // every sample taken here
  uint32_t depth;
  uintptr_t frames[];  // return addresses, innermost first
};

// A live sampled block.
struct Record {
  Record* next;  // hash chain, or the free list
  uintptr_t addr;
  size_t size;   // bytes asked for
  Stack* stack;
};

// Under g_lock.
extern Stack* g_all_stacks;
extern size_t g_stack_count, g_live_records;
Stack* intern_locked(const uintptr_t* frames, uint32_t depth);
void add_record_locked(uintptr_t addr, size_t size, Stack* st);
// Takes the record of `addr` out of the table (nullptr when there is none);
// the caller puts it back or frees it.
Record* take_record_locked(uintptr_t addr);
void put_record_locked(Record* r);  // back in, under r->addr
void free_record_locked(Record* r);

// The side bitmap: one bit per page, set on the first page of a sampled
// large block. set_mark takes g_lock to grow the tree when it must.
void set_mark_locked(uintptr_t addr);
void clear_mark(uintptr_t addr);

// Stack capture (capture.cpp): up to `max` return addresses of the
// program's frames, remalloc's dropped. `unwinder` tells which walk gave
// them.
int capture(uintptr_t* out, int max, bool* unwinder);

// Counters (relaxed atomics).
extern std::atomic<size_t> g_samples, g_dumps, g_fp_walks, g_unwinder_walks, g_nested, g_dump_failures;

// The thread is inside the sampler or a dump: its allocations are not
// sampled (they are counted as nested).
extern __thread bool tl_busy;

// The fork child numbers its profiles from 0 (their names carry its pid).
void reset_seq_in_child();

// Natural logarithm and exponential without libm (the library links only
// libc): relative error below 1e-9 over the ranges used here.
double ln(double x);
double exp_(double x);

}  // namespace remalloc::prof
