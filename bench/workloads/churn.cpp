// churn: one thread, small objects of random sizes and random lifetimes, the
// way an interpreter allocates. A table of live objects is kept at a steady
// size; each step replaces a random one (most objects die young: a small
// "nursery" part of the table is replaced far more often), and a burst of
// short-lived temporaries is made and freed every few steps.
#include <vector>

#include "common.h"

namespace {

size_t object_size(wl::Rng& r) {
  uint64_t x = r.below(100);
  if (x < 55) return r.range(8, 64);
  if (x < 85) return r.range(65, 256);
  if (x < 97) return r.range(257, 1024);
  return r.range(1025, 8192);
}

struct Obj {
  void* p = nullptr;
  size_t n = 0;
};

void release(Obj& o) {
  if (!o.p) return;
  wl::check(o.p, o.n);
  free(o.p);
  o.p = nullptr;
}

void make(Obj& o, wl::Rng& r) {
  o.n = object_size(r);
  o.p = wl::xmalloc(o.n);
  wl::fill(o.p, o.n);
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t live = wl::pick<size_t>(a, 2000, 50000, 200000);
  const size_t nursery = live / 16;
  const size_t steps = wl::pick<size_t>(a, 50000, 800000, 20000000);
  wl::Rng r(a.seed);
  std::vector<Obj> table(live);
  std::vector<Obj> temps(16);

  double t0 = wl::now();
  for (auto& o : table) make(o, r);
  size_t allocs = live;
  for (size_t s = 0; s < steps; s++) {
    // 3 of 4 replacements hit the nursery: short lifetimes dominate.
    size_t i = r.below(4) ? r.below(nursery) : r.below(live);
    release(table[i]);
    make(table[i], r);
    allocs++;
    if ((s & 15) == 0) {
      size_t k = 1 + r.below(temps.size());
      for (size_t j = 0; j < k; j++) make(temps[j], r);
      for (size_t j = k; j-- > 0;) release(temps[j]);
      allocs += k;
    }
  }
  for (auto& o : table) release(o);
  double t1 = wl::now();

  wl::Result("churn", a)
      .num("region_seconds", t1 - t0)
      .integer("allocations", static_cast<long long>(allocs))
      .num("mallocs_per_second", static_cast<double>(allocs) / (t1 - t0))
      .print();
  return 0;
}
