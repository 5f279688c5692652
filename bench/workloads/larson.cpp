// larson: a server-style workload after Larson and Krishnan. THREADS lanes
// run at once. In each lane a thread keeps a table of live blocks and keeps
// replacing random ones; after a round it hands the whole table to a new
// thread and exits, so the successor frees blocks that a thread (now gone)
// allocated. Every few hundred steps a thread also hands a batch of blocks to
// the next lane's mailbox and adopts what arrived in its own, so blocks are
// freed by live threads that did not allocate them too. The RESULT line
// reports the share of frees that were remote.
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace {

struct Block {
  void* p = nullptr;
  size_t n = 0;
  long owner = -1;  // the thread that allocated it
};

struct alignas(64) Mailbox {
  std::mutex m;
  std::vector<Block> items;
};

// Checks and frees b; counts the free as remote when thread `self` did not
// allocate it.
void drop(Block& b, long self, long long& remote) {
  if (!b.p) return;
  wl::check(b.p, b.n);
  free(b.p);
  b.p = nullptr;
  if (b.owner != self) remote++;
}

struct Counters {
  std::atomic<long long> allocs{0}, remote{0}, handed{0};
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const int T = a.threads;
  const size_t slots = wl::pick<size_t>(a, 500, 5000, 20000);
  const size_t per_round = 2 * slots;
  const size_t rounds = wl::pick<size_t>(a, 20, 80, 250);
  const size_t batch = 64, every = 256;
  std::vector<Mailbox> box(static_cast<size_t>(T));
  Counters total;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};

  // One round of one lane, on a fresh thread.
  auto round = [&](std::vector<Block>& table, int lane, size_t rnd) {
    const long self = static_cast<long>(static_cast<size_t>(lane) * rounds + rnd);
    wl::Rng r(a.seed * 131 + static_cast<uint64_t>(self));
    std::vector<Block> in;
    long long allocs = 0, remote = 0, handed = 0;
    for (size_t s = 0; s < per_round; s++) {
      Block& b = table[r.below(slots)];
      drop(b, self, remote);
      b.n = r.range(16, 512);
      b.p = wl::xmalloc(b.n);
      b.owner = self;
      wl::fill(b.p, b.n);
      allocs++;
      if (T > 1 && s % every == every - 1) {
        // Hand a batch to the next lane, unless its mailbox is still full
        // (that lane is descheduled): live memory stays bounded however the
        // threads are scheduled, so peak RSS measures the allocator.
        Mailbox& nb = box[static_cast<size_t>((lane + 1) % T)];
        std::vector<Block> out;
        for (size_t k = 0; k < batch; k++) {
          Block& x = table[r.below(slots)];
          if (x.p) { out.push_back(x); x.p = nullptr; }
        }
        {
          std::lock_guard<std::mutex> g(nb.m);
          if (nb.items.size() < 4 * batch) {
            nb.items.insert(nb.items.end(), out.begin(), out.end());
            handed += static_cast<long long>(out.size());
            out.clear();
          }
        }
        for (Block& x : out) drop(x, self, remote);  // no room: free them here
        // Adopt what the previous lane handed over into empty slots; the
        // blocks that find none are freed at once.
        {
          std::lock_guard<std::mutex> g(box[static_cast<size_t>(lane)].m);
          in.swap(box[static_cast<size_t>(lane)].items);
        }
        for (Block& x : in) {
          size_t slot = r.below(slots);
          for (int tries = 0; table[slot].p && tries < 8; tries++) slot = r.below(slots);
          if (!table[slot].p) table[slot] = x;
          else drop(x, self, remote);
        }
        in.clear();
      }
    }
    total.allocs.fetch_add(allocs);
    total.remote.fetch_add(remote);
    total.handed.fetch_add(handed);
  };

  auto lane_fn = [&](int lane) {
    std::vector<Block> table(slots);
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (size_t rnd = 0; rnd < rounds; rnd++) {
      std::thread th(round, std::ref(table), lane, rnd);
      th.join();
    }
    long long remote = 0;
    for (Block& b : table) drop(b, -1, remote);
    total.remote.fetch_add(remote);
  };

  std::vector<std::thread> lanes;
  for (int t = 0; t < T; t++) lanes.emplace_back(lane_fn, t);
  while (ready.load() < T) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& x : lanes) x.join();
  double t1 = wl::now();
  long long remote = 0;
  for (auto& b : box)
    for (Block& x : b.items) drop(x, -1, remote);
  total.remote.fetch_add(remote);

  long long allocs = total.allocs.load();
  wl::Result("larson", a)
      .num("region_seconds", t1 - t0)
      .integer("allocations", allocs)
      .integer("threads_created", static_cast<long long>(T) * static_cast<long long>(rounds))
      .integer("handed_over", total.handed.load())
      .num("remote_free_share", static_cast<double>(total.remote.load()) / static_cast<double>(allocs))
      .num("mallocs_per_second", static_cast<double>(allocs) / (t1 - t0))
      .print();
  return 0;
}
