// platform: VMA estimate and budget.
#include "platform/vma.h"

#include <atomic>

#include "platform/os.h"

namespace remalloc::vma {

static std::atomic<size_t> g_budget{0};
static std::atomic<size_t> g_counted{0};   // lines of /proc/self/maps at the last count
static std::atomic<size_t> g_added{0};     // VMAs added by remalloc since that count
static std::atomic<bool> g_stale{true};
static std::atomic<uint64_t> g_last_recount_ns{0};     // something changed since the last count

size_t budget() {
  size_t b = g_budget.load(std::memory_order_relaxed);
  if (b) return b;
  long limit = os::read_long_file("/proc/sys/vm/max_map_count", 65530);
  if (limit < 64) limit = 65530;
  b = size_t(limit) / 4;
  g_budget.store(b, std::memory_order_relaxed);
  return b;
}

void set_budget(size_t b) {
  g_budget.store(b, std::memory_order_relaxed);
  if (b == 0) budget();
}

void recount() {
  long n = os::count_maps();
  if (n < 0) return;
  g_counted.store(size_t(n), std::memory_order_relaxed);
  g_added.store(0, std::memory_order_relaxed);
}

size_t estimate() {
  if (g_counted.load(std::memory_order_relaxed) == 0) recount();
  return g_counted.load(std::memory_order_relaxed) + g_added.load(std::memory_order_relaxed);
}

void note_added(size_t n) {
  g_added.fetch_add(n, std::memory_order_relaxed);
  g_stale.store(true, std::memory_order_relaxed);
}

void note_changed() { g_stale.store(true, std::memory_order_relaxed); }

bool can_add(size_t n) {
  size_t b = budget();
  if (estimate() + n <= b) return true;
  // The estimate over-counts (merges, unmaps by others); recount, but not on
  // every call when we are really at the limit: when something remalloc did
  // may have changed the count, or every 100 ms (the program may have
  // unmapped its own mappings, which remalloc does not see).
  uint64_t now = os::now_ns();
  uint64_t last = g_last_recount_ns.load(std::memory_order_relaxed);
  if (g_stale.exchange(false, std::memory_order_relaxed) || now - last > 100'000'000ull) {
    g_last_recount_ns.store(now, std::memory_order_relaxed);
    recount();
  }
  return estimate() + n <= b;
}

}  // namespace remalloc::vma
