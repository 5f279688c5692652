// prof: the sampler: each thread's exponential countdown, the sampled path
// (begin .. end), frees and reallocs of sampled blocks, the dump triggers.
//
// The countdown (Heap::prof_left, or tl_left for a thread without a heap):
// while profiling is on it holds an exponentially distributed number of bytes
// of mean config().sample, drawn with a per-thread xorshift generator; the
// allocation that takes it below zero is sampled and a new count is drawn
// (counts are memoryless, so starting afresh after each sample leaves every
// allocation's chance at 1 - exp(-size/mean)). While it is off the count is
// kProfIdleBytes, after which begin() looks at the switch again: a thread
// notices that profiling was turned on within its next MiB of allocations (the
// thread that turns it on at once). A count drawn for an earlier generation
// (profiling turned off and on, or a heap adopted from an exited thread) is
// drawn again without sampling.
#include <atomic>

#include "platform/os.h"
#include "prof/internal.h"

namespace remalloc::prof {

static Config g_cfg;
static std::atomic<uint32_t> g_gen{1};  // bumped whenever profiling is turned on

__thread int64_t tl_left = 0;
__thread uint32_t tl_gen;
__thread bool tl_busy;
static __thread uint64_t tl_rng;
static __thread uint64_t tl_last_draw;  // the count drawn at this thread's previous sample

std::atomic<size_t> g_samples, g_dumps, g_fp_walks, g_unwinder_walks, g_nested, g_dump_failures;

// Bytes allocated (as the samples account for them) since the last interval
// dump, and the memory-limit trigger's state.
static std::atomic<uint64_t> g_since_interval{0};
static std::atomic<uint64_t> g_next_rss_check_ns{0};
static std::atomic<bool> g_limit_armed{true};

void configure(const Config& c) {
  bool was = g_cfg.active;
  g_cfg = c;
  if (g_cfg.sample == 0) g_cfg.sample = 1;
  if (c.active && !was) g_gen.fetch_add(1, std::memory_order_relaxed);
  // The caller's own count takes the new settings at once.
  uint32_t* gen;
  int64_t* left = count_word(&gen);
  if (!tl_busy) {
    *left = 0;  // its next allocation looks at the switch
    *gen = 0;
  }
}

const Config& config() { return g_cfg; }

void heap_attached() {
  Heap* h = heap::tl_heap;
  if (h == &heap::g_empty_heap) return;
  h->prof_left = tl_left;
  h->prof_gen = tl_gen;
}

static uint64_t rng_next() {
  uint64_t x = tl_rng;
  if (RM_UNLIKELY(x == 0)) x = os::random_u64() | 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tl_rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

// An exponentially distributed count of bytes, mean `mean`, at least 1.
static int64_t draw(size_t mean) {
  // u in (0, 1]: 53 random bits, never 0.
  double u = double((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0);
  double v = -ln(u) * double(mean);
  if (v < 1) v = 1;
  if (v > 4e18) v = 4e18;
  return int64_t(v);
}

bool begin(Ticket* t) {
  uint32_t* gen;
  int64_t* left = count_word(&gen);
  if (RM_UNLIKELY(tl_busy)) {
    // An allocation made by the sampler or a dump: counted, never sampled;
    // the count stays negative so the next one is seen too.
    g_nested.fetch_add(1, std::memory_order_relaxed);
    *left = -1;
    return false;
  }
  if (!g_cfg.active) {
    *left = kProfIdleBytes;
    return false;
  }
  uint32_t g = g_gen.load(std::memory_order_relaxed);
  int64_t next = draw(g_cfg.sample);
  if (*gen != g) {
    *gen = g;
    *left = next;
    tl_last_draw = uint64_t(next);
    return false;
  }
  t->next = next;
  // The bytes since the previous sample: that count, plus how far this
  // allocation took it below zero.
  t->covered = tl_last_draw + uint64_t(-*left);
  tl_last_draw = uint64_t(next);
  tl_busy = true;
  *left = -1;  // allocations until end() reach a slow path: nested ones are seen
  return true;
}

static void triggers(uint64_t covered);

RM_PROF_ENTRY void end(const Ticket& t, void* p, size_t size) {
  if (p) {
    uintptr_t frames[kMaxDepth];
    bool unwinder;
    int n = capture(frames, kMaxDepth, &unwinder);
    LockGuard g(g_lock);
    if (Stack* st = intern_locked(frames, uint32_t(n))) {
      st->alloc_objs++;
      st->alloc_bytes += size;
      add_record_locked(reinterpret_cast<uintptr_t>(p), size, st);
      g_samples.fetch_add(1, std::memory_order_relaxed);
    }
  }
  triggers(t.covered);
  uint32_t* gen;
  int64_t* left = count_word(&gen);
  *left = t.next;
  tl_busy = false;
}

void forget(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  clear_mark(a);
  LockGuard g(g_lock);
  if (Record* r = take_record_locked(a)) free_record_locked(r);
}

bool realloc_before(const void* p) {
  if (!is_marked(p)) return false;
  clear_mark(reinterpret_cast<uintptr_t>(p));
  return true;
}

// p(s) = 1 - exp(-s / mean): the chance that a block of s bytes is sampled.
static double p_sampled(size_t s) { return 1 - exp_(-double(s) / double(g_cfg.sample)); }

RM_PROF_ENTRY void realloc_after(bool was_sampled, const void* p, void* q, size_t old_size, size_t new_size) {
  uintptr_t from = reinterpret_cast<uintptr_t>(p);
  if (!q) {  // the block stays where it was, as it was
    if (was_sampled) {
      LockGuard g(g_lock);
      set_mark_locked(from);
    }
    return;
  }
  uintptr_t to = reinterpret_cast<uintptr_t>(q);
  if (was_sampled) {
    bool keep = true;
    if (new_size < old_size) {
      // Thinning: kept with probability p(new) / p(old), so a block of
      // new_size bytes is sampled with probability p(new) overall.
      double u = double((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0);
      keep = u * p_sampled(old_size) <= p_sampled(new_size);
    }
    LockGuard g(g_lock);
    Record* r = take_record_locked(from);
    if (!r) return;
    if (!keep) {
      free_record_locked(r);
      return;
    }
    // The record moves with the block: same stack, new address and size.
    r->stack->live_bytes += new_size - r->size;
    if (new_size > r->size) r->stack->alloc_bytes += new_size - r->size;
    r->size = new_size;
    r->addr = to;
    put_record_locked(r);
    set_mark_locked(to);
    return;
  }
  // Not sampled: the bytes it gained are allocated now, and may be sampled
  // (the block then counts from the realloc's stack, with its new size).
  if (new_size <= old_size || !due(new_size - old_size)) return;
  Ticket t;
  if (!begin(&t)) return;
  end(t, q, new_size);
}

// ---- dump triggers -----------------------------------------------------------------
static void triggers(uint64_t covered) {
  if (g_cfg.interval) {
    // One dump per interval crossed, by the thread whose sample crossed it.
    uint64_t total = g_since_interval.fetch_add(covered, std::memory_order_relaxed) + covered;
    if (total >= g_cfg.interval &&
        g_since_interval.compare_exchange_strong(total, total - g_cfg.interval, std::memory_order_relaxed))
      dump(nullptr, nullptr);
  }
  if (g_cfg.memory_limit && g_cfg.limit_percent) {
    // Resident memory is read at most every 10 ms (one read of /proc/self/statm).
    uint64_t now = os::now_ns();
    uint64_t due_ns = g_next_rss_check_ns.load(std::memory_order_relaxed);
    if (now >= due_ns &&
        g_next_rss_check_ns.compare_exchange_strong(due_ns, now + 10'000'000, std::memory_order_relaxed)) {
      size_t rss = os::resident_bytes();
      size_t threshold = g_cfg.memory_limit / 100 * g_cfg.limit_percent;
      if (rss >= threshold) {
        // Once per approach: armed again when resident memory falls back
        // below the threshold less 1/16 of the limit.
        if (g_limit_armed.exchange(false, std::memory_order_relaxed)) dump(nullptr, nullptr);
      } else if (rss + g_cfg.memory_limit / 16 < threshold) {
        g_limit_armed.store(true, std::memory_order_relaxed);
      }
    }
  }
}

void fork_prepare() { g_lock.fork_acquire(); }
void fork_parent() { g_lock.fork_release(); }
void fork_child() {
  g_lock.reset_in_child();
  reset_seq_in_child();
  g_since_interval.store(0, std::memory_order_relaxed);
}

Counters counters() {
  Counters c{};
  c.samples = g_samples.load(std::memory_order_relaxed);
  c.dumps = g_dumps.load(std::memory_order_relaxed);
  c.fp_walks = g_fp_walks.load(std::memory_order_relaxed);
  c.unwinder_walks = g_unwinder_walks.load(std::memory_order_relaxed);
  c.nested_allocs = g_nested.load(std::memory_order_relaxed);
  c.dump_failures = g_dump_failures.load(std::memory_order_relaxed);
  LockGuard g(g_lock);
  c.live_samples = g_live_records;
  c.stacks = g_stack_count;
  return c;
}

}  // namespace remalloc::prof
