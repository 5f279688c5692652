// xthread: many threads (the rows use 8 and 32, on any number of cores)
// allocating blocks of mixed sizes (16 B .. 4 KiB, log-uniform) and freeing
// a share of each other's. Each thread keeps a table of 512 live blocks and
// replaces a random one per step; the block it replaces is freed by the
// thread itself, or (half the time) handed to a random other thread's inbox
// in batches of 32, which that thread frees the next time it looks (every
// 64 steps, and at the end); when 1,024 blocks already wait for that thread
// (it has not run for a while: 32 threads on 2 cores), the block is freed
// here instead, which bounds the backlog. Every block is checked before it is freed, and
// the counts of blocks and bytes allocated and freed must match.
// Total steps are the same for any thread count: the rows compare how an
// allocator bears more threads, not more work.
#include <thread>
#include <vector>

#include "xfree.h"

namespace {

constexpr size_t kTable = 512;
constexpr size_t kBatch = 32;
constexpr long kBacklog = 1024;

struct alignas(64) Tally {
  uint64_t alloc_blocks = 0, alloc_bytes = 0, freed_blocks = 0, freed_bytes = 0, remote = 0;
};

void drain(xf::Inbox& in, Tally& t) {
  uint64_t before = t.freed_blocks;
  xf::free_chain(in.take(), t.freed_blocks, t.freed_bytes);
  if (t.freed_blocks != before)
    in.pending.fetch_sub(static_cast<long>(t.freed_blocks - before), std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const int T = a.threads;
  const size_t total = wl::pick<size_t>(a, 40000, 1000000, 20000000);
  const size_t steps = total / static_cast<size_t>(T);
  std::vector<xf::Inbox> inbox(static_cast<size_t>(T));
  std::vector<Tally> tally(static_cast<size_t>(T));
  std::atomic<int> ready{0}, done{0};
  std::atomic<bool> go{false};

  auto body = [&](int self) {
    wl::Rng r(a.seed * 131 + static_cast<uint64_t>(self));
    Tally& t = tally[static_cast<size_t>(self)];
    std::vector<xf::Block*> table(kTable, nullptr);
    // Per target, a batch being gathered: first and last block, count.
    std::vector<xf::Block*> first(static_cast<size_t>(T), nullptr), last(first);
    std::vector<size_t> count(static_cast<size_t>(T), 0);
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (size_t s = 0; s < steps; s++) {
      size_t k = r.below(kTable);
      if (xf::Block* old = table[k]) {
        size_t to = T > 1 && r.below(2) ? r.below(static_cast<uint64_t>(T - 1)) : SIZE_MAX;
        if (to != SIZE_MAX && to >= static_cast<size_t>(self)) to++;  // any thread but this one
        if (to != SIZE_MAX && inbox[to].pending.load(std::memory_order_relaxed) >= kBacklog)
          to = SIZE_MAX;
        if (to == SIZE_MAX) {
          t.freed_bytes += xf::check_free(old);
          t.freed_blocks++;
        } else {
          old->next = first[to];
          if (!first[to]) last[to] = old;
          first[to] = old;
          if (++count[to] == kBatch) {
            inbox[to].pending.fetch_add(kBatch, std::memory_order_relaxed);
            inbox[to].push_chain(first[to], last[to]);
            first[to] = nullptr;
            count[to] = 0;
          }
          t.remote++;
        }
      }
      size_t n = xf::mixed_size(r);
      table[k] = xf::make(n);
      t.alloc_blocks++;
      t.alloc_bytes += n;
      if ((s & 63) == 63) drain(inbox[static_cast<size_t>(self)], t);
    }
    for (size_t to = 0; to < static_cast<size_t>(T); to++)
      if (first[to]) inbox[to].push_chain(first[to], last[to]);
    for (xf::Block* b : table)
      if (b) {
        t.freed_bytes += xf::check_free(b);
        t.freed_blocks++;
      }
    // Nobody hands anything on once every thread is past its loop.
    done.fetch_add(1, std::memory_order_acq_rel);
    while (done.load(std::memory_order_acquire) < T) std::this_thread::yield();
    drain(inbox[static_cast<size_t>(self)], t);
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < T; i++) threads.emplace_back(body, i);
  while (ready.load() < T) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  double t1 = wl::now();

  Tally sum;
  for (const Tally& t : tally) {
    sum.alloc_blocks += t.alloc_blocks;
    sum.alloc_bytes += t.alloc_bytes;
    sum.freed_blocks += t.freed_blocks;
    sum.freed_bytes += t.freed_bytes;
    sum.remote += t.remote;
  }
  if (sum.alloc_blocks != sum.freed_blocks || sum.alloc_bytes != sum.freed_bytes) {
    fprintf(stderr, "FAILED: allocated %llu blocks (%llu bytes), freed %llu (%llu bytes)\n",
            (unsigned long long)sum.alloc_blocks, (unsigned long long)sum.alloc_bytes,
            (unsigned long long)sum.freed_blocks, (unsigned long long)sum.freed_bytes);
    return 3;
  }
  wl::Result("xthread", a)
      .num("region_seconds", t1 - t0)
      .integer("blocks", static_cast<long long>(sum.alloc_blocks))
      .integer("bytes", static_cast<long long>(sum.alloc_bytes))
      .integer("remote_frees", static_cast<long long>(sum.remote))
      .print();
  return 0;
}
