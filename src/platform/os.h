// platform: the only place that makes memory system calls.
//
// Contract shared by every function here: addresses and lengths are
// multiples of kPageSize unless said otherwise; a length of 0 is a no-op;
// none of them allocates, and none calls libc's allocator. Failures are
// reported by return value (nullptr / false) with errno left as the kernel
// set it, never by aborting.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace remalloc::os {

// Reserves `size` bytes of address space aligned to `align` (a power of two,
// at least a page), mapped read-write, private, anonymous and not charged
// against commit (MAP_NORESERVE): pages cost memory only once touched.
void* reserve(size_t size, size_t align);
// The same, but inaccessible (PROT_NONE): the pages cannot be touched, so
// nothing (mlockall, prefaulting) makes them resident, until commit() makes
// them read-write. Address space reserved this way still counts in the
// process's total_vm (which mlockall(MCL_CURRENT) compares with
// RLIMIT_MEMLOCK) and, under MCL_FUTURE, in its locked_vm.
void* reserve_inaccessible(size_t size, size_t align);
// Makes reserved pages read-write (mprotect). Merges with a read-write
// neighbour into one VMA where the kernel can. Under mlockall(MCL_FUTURE)
// the kernel populates (and locks) the range, and may refuse it (ENOMEM,
// EAGAIN) past RLIMIT_MEMLOCK: callers fail cleanly.
bool commit(void* p, size_t size);
void release(void* p, size_t size);
// Gives the pages' memory back (MADV_DONTNEED): the range stays mapped and
// reads as zeros afterwards.
bool purge(void* p, size_t size);
// Replaces the range with a fresh anonymous mapping (mmap MAP_FIXED): purges
// like purge() and also lets the range merge back into one VMA with its
// neighbours after page moves split it.
bool remap_fresh(void* p, size_t size);
// Transparent huge page advice (2 MiB aligned ranges).
bool advise_hugepage(void* p, size_t size, bool on);

// The system's transparent huge page settings: the word in brackets of
// /sys/kernel/mm/transparent_hugepage/{enabled,defrag} ("always",
// "madvise", "never", "defer+madvise", ...), "unknown" when unreadable
// (no THP in the kernel). Read on each call (configure time only).
enum ThpMode : int { kThpUnknown = 0, kThpAlways = 1, kThpMadvise = 2, kThpNever = 3 };
int thp_mode();
const char* thp_mode_name(int mode);
// Writes the defrag setting's word into out (NUL-terminated).
void thp_defrag(char* out, size_t cap);
// prctl(PR_GET_THP_DISABLE): the process (or an ancestor, through fork and
// exec) asked that none of its memory get huge pages.
bool thp_disabled_for_process();
// Test hook: make thp_mode() report `mode` (>= 0) instead of the system's
// setting; -1 reads the system again.
void thp_mode_override(int mode);
// Sums the AnonHugePages of the VMAs of /proc/self/smaps that lie inside
// [lo, hi) ranges the callback accepts (it gets each VMA's bounds), in
// bytes; -1 when smaps cannot be read. Reads with a stack buffer, no
// allocation; opens and closes one descriptor of its own.
long anon_huge_bytes(bool (*in_heap)(uintptr_t lo, uintptr_t hi));

// Guard pages (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE, Linux 6.13): page-table
// markers that make any access to the range raise SIGSEGV, without splitting
// the VMA. Installing wipes the pages' contents. guards_available() probes
// once (EINVAL on older kernels: the feature is off and guard_install()
// returns false without a system call); guard_remove() makes the pages
// ordinary zero-fill pages again.
bool guards_available();
// Makes guards_available() say no, as on a kernel without them (the secure
// build's REMALLOC_GUARD_INSTALL=0); only before anything asked.
void disable_guards();
bool guard_install(void* p, size_t size);
bool guard_remove(void* p, size_t size);
// MADV_POPULATE_WRITE (Linux 5.14): maps the pages of the range writable,
// as a write to each would, in one system call and without a page fault per
// page (measured on this project's VMs: 7.3 us for one page against 10.2 us
// for the fault, 5.5-5.9 us a page from four pages up; src/README.md). A
// kernel without it answers EINVAL the first time, and every later call
// returns false without a system call. False on any failure (the pages
// then fault in as usual when written).
bool populate_write(void* p, size_t size);
// Page protection (mprotect): read-write, or no access at all. Splits the
// VMA where the protection changes; the secure build's sampled pool uses it
// only on kernels without guards, inside its own mapping.
bool protect(void* p, size_t size, bool accessible);

// 64 random bits from the kernel (getrandom, non-blocking), or from the
// clock and an address when it refuses.
uint64_t random_u64();

// Failure injection for the fault tests: the next `count` reservations
// (reserve()) fail with ENOMEM as if the kernel refused them.
void inject_reserve_failure(int count);

// The CPUs this process may run on (sched_getaffinity; 1 if unknown). A
// system call, no descriptor.
unsigned cpu_count();

// Monotonic time in nanoseconds (vDSO, cheap).
uint64_t now_ns();
// Resident set size of the process in bytes (from /proc/self/statm), 0 if
// unknown.
size_t resident_bytes();
// Bytes of [p, p+size) that are resident (mincore); p need not be aligned.
size_t resident_in(const void* p, size_t size);
// Reads a small decimal integer from a file such as /proc/sys/vm/max_map_count;
// returns `fallback` on failure.
long read_long_file(const char* path, long fallback);
// Counts the lines of /proc/self/maps (the process's VMAs); -1 on failure.
long count_maps();
// Environment lookup from `environ` without getenv (usable while preloading).
const char* env_lookup(const char* name);

}  // namespace remalloc::os
