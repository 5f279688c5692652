// small heaps: sampled guarded allocations of the secure build (sampled.h).
//
// The pool: page 0 is a guard, slot i is page 2i+1, page 2i+2 a guard. Every
// page that holds no live block is guarded (guarded when the pool is made,
// re-guarded when its block is freed), so a live slot always has a guard page
// on both sides and a freed one is itself inaccessible. Slots that hold no
// live block wait in a FIFO (`g_fifo`, never-used slots first, then freed
// ones in the order they were freed); alloc takes the oldest only while more
// than kQuarantineMin are waiting, so each freed slot stays guarded until at
// least kQuarantineMin slots freed after it are waiting behind it.
//
// Invariants (under g_lock): every slot is either live (`live`, its block at
// `block`, its page open) or in the FIFO exactly once (its page guarded, or
// purged if the kernel refused the guard); g_live + g_count == kSlots.
#include "heap/sampled.h"

#include <atomic>

#include "base/lock.h"
#include "heap/heap.h"
#include "platform/os.h"
#include "platform/vma.h"

namespace remalloc::sampled {

__thread uint32_t tl_countdown = 1;
static __thread bool tl_armed;  // the first countdown was drawn
static __thread uint64_t tl_rng;

std::atomic<uintptr_t> g_lo{0};

static std::atomic<long> g_rate{0};
static std::atomic<uint64_t> g_seed{0};

struct Slot {
  uintptr_t block;  // the block's address while live, or its last one; 0 never used
  bool live;
};

static Mutex g_lock;
static Slot g_slots[kSlots];
static uint16_t g_fifo[kSlots];
static size_t g_head, g_count;  // the FIFO: g_count slots from g_head
static int g_mech;              // 0 not made, 1 guards, 2 mprotect, -1 could not be made
static size_t g_total, g_live, g_live_bytes;


static void* slot_page(size_t i) {
  return reinterpret_cast<void*>(g_lo.load(std::memory_order_relaxed) + (2 * i + 1) * kPageSize);
}

static void rearm();

void configure(long rate) { g_rate.store(rate, std::memory_order_relaxed); }

void rearm_thread() {
  tl_armed = true;
  rearm();
}

static void rearm() {
  long rate = g_rate.load(std::memory_order_relaxed);
  if (rate <= 0) {
    tl_countdown = UINT32_MAX;
    return;
  }
  if (rate == 1) {
    tl_countdown = 1;
    return;
  }
  uint64_t x = tl_rng;
  if (RM_UNLIKELY(x == 0)) {
    uint64_t seed = g_seed.load(std::memory_order_relaxed);
    if (seed == 0) {
      seed = os::random_u64() | 1;  // two threads may both draw one: either will do
      g_seed.store(seed, std::memory_order_relaxed);
    }
    x = (seed ^ reinterpret_cast<uintptr_t>(&tl_rng)) * 0x9e3779b97f4a7c15ull | 1;
  }
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  tl_rng = x;
  // Uniform in [1, 2 * rate - 1]: one in `rate` on average, at no fixed stride.
  tl_countdown = uint32_t(1 + (x >> 32) % uint64_t(2 * rate - 1));
}

// Under g_lock: reserves the pool and guards all of it.
static bool make_pool() {
  if (g_mech) return g_mech > 0;
  g_mech = -1;
  void* p = os::reserve(kPoolBytes, kPageSize);
  if (!p) return false;
  if (os::guards_available() && os::guard_install(p, kPoolBytes)) {
    g_mech = 1;
  } else if (os::protect(p, kPoolBytes, false)) {
    g_mech = 2;
  } else {
    os::release(p, kPoolBytes);
    return false;
  }
  for (size_t i = 0; i < kSlots; i++) g_fifo[i] = uint16_t(i);
  g_head = 0;
  g_count = kSlots;
  g_lo.store(reinterpret_cast<uintptr_t>(p), std::memory_order_release);
  return true;
}

// Makes a slot's page accessible (zero-filled).
static bool open_page(void* page) {
  if (g_mech == 1) return os::guard_remove(page, kPageSize);
  // mprotect splits the pool's VMA: at most two more.
  if (!vma::can_add(2)) return false;
  if (!os::protect(page, kPageSize, true)) return false;
  vma::note_added(2);
  return true;
}

// Makes a freed slot's page inaccessible again, and gives its memory back.
static void close_page(void* page) {
  if (g_mech == 1) {
    // Installing a guard wipes the page. If the kernel refuses (ENOMEM for a
    // page table), the page is at least emptied; a use after free then reads
    // zeros instead of faulting.
    if (!os::guard_install(page, kPageSize)) os::purge(page, kPageSize);
    return;
  }
  os::purge(page, kPageSize);
  os::protect(page, kPageSize, false);
  vma::note_changed();
}

void* alloc(size_t size) {
  if (RM_UNLIKELY(!tl_armed)) {
    // A thread's first small malloc: draw its first countdown, no sample.
    tl_armed = true;
    rearm();
    return nullptr;
  }
  rearm();
  if (size > kMaxSize || g_rate.load(std::memory_order_relaxed) <= 0) return nullptr;
  LockGuard g(g_lock);
  if (!make_pool() || g_count <= kQuarantineMin) return nullptr;
  size_t i = g_fifo[g_head];
  void* page = slot_page(i);
  if (!open_page(page)) return nullptr;
  g_head = (g_head + 1) % kSlots;
  g_count--;
  size_t n = align_up(size ? size : 1, kMinAlign);
  uintptr_t b = reinterpret_cast<uintptr_t>(page) + kPageSize - n;
  g_slots[i] = Slot{b, true};
  g_total++;
  g_live++;
  g_live_bytes += n;
  return reinterpret_cast<void*>(b);
}

// The slot whose page holds p, or -1 (a guard page or outside the pool).
static long slot_of(const void* p) {
  if (!in_pool(p)) return -1;
  size_t page = (reinterpret_cast<uintptr_t>(p) - g_lo.load(std::memory_order_relaxed)) >> kPageShift;
  if (page % 2 == 0 || page / 2 >= kSlots) return -1;
  return long(page / 2);
}

void free(void* p) {
  long i = slot_of(p);
  bool freed = false;
  if (i >= 0) {
    LockGuard g(g_lock);
    Slot& s = g_slots[i];
    if (s.block == reinterpret_cast<uintptr_t>(p)) {
      if (s.live) {
        s.live = false;
        close_page(slot_page(size_t(i)));
        g_fifo[(g_head + g_count) % kSlots] = uint16_t(i);
        g_count++;
        g_live--;
        g_live_bytes -= reinterpret_cast<uintptr_t>(slot_page(size_t(i))) + kPageSize - s.block;
        return;
      }
      freed = true;
    }
  }
  heap::g_on_invalid(p, freed ? "free(): double free detected"
                              : "free(): invalid pointer (not allocated by remalloc, or freed twice)");
}

size_t usable(const void* p, const char* what_freed, const char* what_invalid) {
  long i = slot_of(p);
  bool freed = false;
  if (i >= 0) {
    LockGuard g(g_lock);
    const Slot& s = g_slots[i];
    if (s.block == reinterpret_cast<uintptr_t>(p)) {
      if (s.live) return reinterpret_cast<uintptr_t>(slot_page(size_t(i))) + kPageSize - s.block;
      freed = true;
    }
  }
  heap::g_on_invalid(p, freed ? what_freed : what_invalid);
  return 0;
}

bool owns(const void* p) {
  long i = slot_of(p);
  if (i < 0) return false;
  LockGuard g(g_lock);
  return g_slots[i].live && g_slots[i].block == reinterpret_cast<uintptr_t>(p);
}

void fork_prepare() { g_lock.fork_acquire(); }
void fork_parent() { g_lock.fork_release(); }
void fork_child() { g_lock.reset_in_child(); }

void get_stats(Stats* out) {
  LockGuard g(g_lock);
  out->total = g_total;
  out->live = g_live;
  out->live_bytes = g_live_bytes;
  out->pool_bytes = g_mech > 0 ? kPoolBytes : 0;
  out->mechanism = g_mech > 0 ? g_mech : 0;
}

const char* mechanism_name() {
  if (g_rate.load(std::memory_order_relaxed) <= 0) return "off";
  return os::guards_available() ? "MADV_GUARD_INSTALL" : "mprotect";
}

}  // namespace remalloc::sampled
