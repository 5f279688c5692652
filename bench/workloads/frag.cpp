// frag: fragmentation. Allocate a big heap of small blocks, free most of
// them at random, then allocate blocks of other (larger) sizes. Reports RSS
// after each phase (VmRSS) and the peak (VmHWM), and how much RSS the
// process holds per live byte at the end.
#include <vector>

#include "common.h"

namespace {

struct Block {
  void* p;
  size_t n;
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const size_t heap_bytes = wl::pick<size_t>(a, 4u << 20, 128u << 20, 1024u << 20);
  wl::Rng r(a.seed);
  std::vector<Block> blocks;
  blocks.reserve(heap_bytes / 100);

  double t0 = wl::now();
  // Phase 1: a heap of small blocks.
  size_t bytes = 0;
  while (bytes < heap_bytes) {
    size_t n = r.range(16, 256);
    void* p = wl::xmalloc(n);
    wl::fill(p, n);
    blocks.push_back({p, n});
    bytes += n;
  }
  wl::Rss after_alloc = wl::read_rss();

  // Phase 2: free 90%, keeping a random tenth scattered over the heap.
  size_t kept = 0, live = 0, freed = 0;
  for (Block& b : blocks) {
    if (r.below(10) == 0) {
      blocks[kept++] = b;
      live += b.n;
    } else {
      wl::check(b.p, b.n);
      free(b.p);
      freed += b.n;
    }
  }
  blocks.resize(kept);
  wl::Rss after_free = wl::read_rss();

  // Phase 3: allocate half the freed bytes again in other sizes.
  size_t again = 0;
  while (again < freed / 2) {
    size_t n = r.range(300, 4000);
    void* p = wl::xmalloc(n);
    wl::fill(p, n);
    blocks.push_back({p, n});
    again += n;
  }
  live += again;
  wl::Rss final_rss = wl::read_rss();
  double t1 = wl::now();

  for (Block& b : blocks) {
    wl::check(b.p, b.n);
    free(b.p);
  }
  wl::Rss end = wl::read_rss();

  wl::Result("frag", a)
      .num("region_seconds", t1 - t0)
      .integer("live_bytes_final", static_cast<long long>(live))
      .integer("rss_after_alloc_kib", after_alloc.rss_kib)
      .integer("rss_after_free_kib", after_free.rss_kib)
      .integer("rss_final_kib", final_rss.rss_kib)
      .integer("rss_peak_kib", final_rss.hwm_kib)
      .integer("rss_after_free_all_kib", end.rss_kib)
      .num("rss_per_live_byte", static_cast<double>(final_rss.rss_kib) * 1024.0 / static_cast<double>(live))
      .print();
  return 0;
}
