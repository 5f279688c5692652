// larson: a server-style workload after Larson and Krishnan. Every thread
// keeps a table of live blocks and keeps replacing random ones; every few
// hundred steps it hands a batch of its blocks to the next thread's mailbox
// and adopts whatever arrived in its own. Most frees therefore free a block
// that another thread allocated.
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Block {
  void* p = nullptr;
  size_t n = 0;
};

struct alignas(64) Mailbox {
  std::mutex m;
  std::vector<Block> items;
};

void drop(Block& b, long long& remote, int self) {
  if (!b.p) return;
  wl::check(b.p, b.n);
  (void)self;
  free(b.p);
  b.p = nullptr;
  remote++;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const int T = a.threads;
  const size_t slots = wl::pick<size_t>(a, 500, 5000, 20000);
  const size_t steps = wl::pick<size_t>(a, 20000, 1000000, 10000000);  // per thread
  const size_t batch = 64, every = 256;
  std::vector<Mailbox> box(static_cast<size_t>(T));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<long long> total_ops{0}, total_handed{0};

  auto worker = [&](int t) {
    wl::Rng r(a.seed * 131 + static_cast<uint64_t>(t));
    std::vector<Block> table(slots);
    std::vector<Block> in;
    long long ops = 0, handed = 0, frees = 0;
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (size_t s = 0; s < steps; s++) {
      Block& b = table[r.below(slots)];
      drop(b, frees, t);
      b.n = r.range(16, 512);
      b.p = wl::xmalloc(b.n);
      wl::fill(b.p, b.n);
      ops++;
      if (s % every == every - 1) {
        // Hand a batch to the next thread...
        std::vector<Block> out;
        out.reserve(batch);
        for (size_t k = 0; k < batch; k++) {
          Block& x = table[r.below(slots)];
          if (x.p) { out.push_back(x); x.p = nullptr; }
        }
        handed += static_cast<long long>(out.size());
        Mailbox& nb = box[static_cast<size_t>((t + 1) % T)];
        {
          std::lock_guard<std::mutex> g(nb.m);
          nb.items.insert(nb.items.end(), out.begin(), out.end());
        }
        // ...and adopt what others handed to us into empty slots (the
        // blocks that find no empty slot are freed at once).
        {
          std::lock_guard<std::mutex> g(box[static_cast<size_t>(t)].m);
          in.swap(box[static_cast<size_t>(t)].items);
        }
        size_t slot = r.below(slots);
        for (Block& x : in) {
          size_t tries = 0;
          while (table[slot].p && tries < 8) { slot = r.below(slots); tries++; }
          if (!table[slot].p) table[slot] = x;
          else drop(x, frees, t);
        }
        in.clear();
      }
    }
    for (Block& b : table) drop(b, frees, t);
    total_ops.fetch_add(ops);
    total_handed.fetch_add(handed);
  };

  std::vector<std::thread> th;
  for (int t = 0; t < T; t++) th.emplace_back(worker, t);
  while (ready.load() < T) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& x : th) x.join();
  double t1 = wl::now();
  long long leftovers = 0, dummy = 0;
  for (auto& b : box)
    for (Block& x : b.items) { drop(x, dummy, -1); leftovers++; }

  wl::Result("larson", a)
      .num("region_seconds", t1 - t0)
      .integer("allocations", total_ops.load())
      .integer("handed_over", total_handed.load())
      .num("mallocs_per_second", static_cast<double>(total_ops.load()) / (t1 - t0))
      .print();
  return 0;
}
