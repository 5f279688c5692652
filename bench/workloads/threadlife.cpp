// threadlife: short-lived threads. Waves of W threads (the rows use 8 and
// 32, on any number of cores) start, each makes 4,000 allocations of mixed
// sizes (16 B .. 4 KiB, log-uniform) into a table of 256 live blocks,
// replacing a random one each time, and exits leaving its table to a thread
// of the next wave (of another lane each wave), which frees those blocks as
// it replaces them: most frees are of blocks a thread that has exited
// allocated. 400 threads in all (full 4,000, tiny 16). Every block is
// checked before it is freed, and the counts must match.
#include <thread>
#include <vector>

#include "xfree.h"

namespace {

constexpr size_t kTable = 256;
constexpr size_t kAllocs = 4000;

struct alignas(64) Tally {
  uint64_t alloc_blocks = 0, alloc_bytes = 0, freed_blocks = 0, freed_bytes = 0, inherited = 0;
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t W = static_cast<size_t>(a.threads);
  const size_t threads = wl::pick<size_t>(a, 16, 400, 4000);
  const size_t waves = (threads + W - 1) / W;
  // tables[lane]: what the lane's last thread left.
  std::vector<std::vector<xf::Block*>> tables(W, std::vector<xf::Block*>(kTable, nullptr));
  std::vector<Tally> tally(W);

  auto body = [&](size_t lane, size_t wave) {
    wl::Rng r(a.seed * 977 + wave * W + lane);
    Tally& t = tally[lane];
    // Wave w's lane l takes slot (l + w) mod W: one thread per slot per
    // wave, and the slot was left by another lane's thread, now exited.
    const size_t slot = (lane + wave) % W;
    std::vector<xf::Block*> table;
    table.swap(tables[slot]);
    for (size_t s = 0; s < kAllocs; s++) {
      size_t k = r.below(kTable);
      if (table[k]) {
        t.freed_bytes += xf::check_free(table[k]);
        t.freed_blocks++;
      }
      size_t n = xf::mixed_size(r);
      table[k] = xf::make(n);
      t.alloc_blocks++;
      t.alloc_bytes += n;
    }
    tables[slot].swap(table);  // for the next wave
  };

  double t0 = wl::now();
  size_t started = 0;
  for (size_t w = 0; w < waves; w++) {
    std::vector<std::thread> wave;
    for (size_t lane = 0; lane < W && started < threads; lane++, started++)
      wave.emplace_back(body, lane, w);
    for (auto& th : wave) th.join();
  }
  Tally sum;
  for (auto& table : tables)
    for (xf::Block* b : table)
      if (b) {
        sum.freed_bytes += xf::check_free(b);
        sum.freed_blocks++;
      }
  double t1 = wl::now();

  for (const Tally& t : tally) {
    sum.alloc_blocks += t.alloc_blocks;
    sum.alloc_bytes += t.alloc_bytes;
    sum.freed_blocks += t.freed_blocks;
    sum.freed_bytes += t.freed_bytes;
  }
  if (sum.alloc_blocks != sum.freed_blocks || sum.alloc_bytes != sum.freed_bytes) {
    fprintf(stderr, "FAILED: allocated %llu blocks (%llu bytes), freed %llu (%llu bytes)\n",
            (unsigned long long)sum.alloc_blocks, (unsigned long long)sum.alloc_bytes,
            (unsigned long long)sum.freed_blocks, (unsigned long long)sum.freed_bytes);
    return 3;
  }
  wl::Result("threadlife", a)
      .num("region_seconds", t1 - t0)
      .integer("threads_created", static_cast<long long>(started))
      .integer("blocks", static_cast<long long>(sum.alloc_blocks))
      .integer("bytes", static_cast<long long>(sum.alloc_bytes))
      .print();
  return 0;
}
