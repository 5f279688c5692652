// hugechurn: malloc, touch, free of huge blocks (8 MiB to 512 MiB at full
// scale, log-uniform sizes), with two blocks live at a time. Every page of a
// new block is written (its index in the first word); the older block is
// sample-checked before it is freed. Allocators that keep freed huge blocks
// mapped save the page faults; ones that return them save RSS.
// thp_percent: the share of the blocks' resident memory on huge pages
// (AnonHugePages / Rss of the VMAs holding each block right after it was
// touched, summed over the blocks; read from /proc/self/smaps outside the
// timed region); stall_seconds: the slowest malloc plus first touch of the
// block's first 2 MiB.
#include "common.h"

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const double lo = static_cast<double>(wl::pick<size_t>(a, 1u << 20, 8u << 20, 8u << 20));
  const double hi = static_cast<double>(wl::pick<size_t>(a, 4u << 20, 64u << 20, 512u << 20));
  const size_t iters = wl::pick<size_t>(a, 8, 24, 120);
  wl::Rng r(a.seed);
  void* prev = nullptr;
  size_t prev_n = 0;
  size_t total = 0;
  long long cov_rss = 0, cov_huge = 0;
  double probe = 0;
  double stall = 0;  // the slowest malloc plus first touch of its first 2 MiB  // time spent reading smaps, left out of the region

  double t0 = wl::now();
  for (size_t i = 0; i < iters; i++) {
    size_t n = static_cast<size_t>(lo * __builtin_exp(r.unit() * __builtin_log(hi / lo)));
    n &= ~size_t{4095};
    double s0 = wl::now();
    void* p = wl::xmalloc(n);
    const size_t head = n < (2u << 20) ? n : (2u << 20);
    wl::touch_pages(p, 0, head, wl::kCookie + i);  // the first 2 MiB: the stall
    double s1 = wl::now();
    if (s1 - s0 > stall) stall = s1 - s0;
    wl::touch_pages(p, head, n, wl::kCookie + i);
    double c0 = wl::now();
    wl::Coverage c = wl::huge_coverage(p, n);
    if (c.rss_kib > 0) {
      cov_rss += c.rss_kib;
      cov_huge += c.huge_kib;
    }
    probe += wl::now() - c0;
    if (prev) {
      wl::check_pages(prev, prev_n, 64, wl::kCookie + i - 1);
      free(prev);
    }
    prev = p;
    prev_n = n;
    total += n;
  }
  wl::check_pages(prev, prev_n, 64, wl::kCookie + iters - 1);
  free(prev);
  double t1 = wl::now();

  wl::Result("hugechurn", a)
      .num("region_seconds", t1 - t0 - probe)
      .num("stall_seconds", stall)
      .num("thp_percent", cov_rss > 0 ? 100.0 * static_cast<double>(cov_huge) / static_cast<double>(cov_rss) : 0.0)
      .integer("blocks", static_cast<long long>(iters))
      .integer("bytes_touched", static_cast<long long>(total))
      .print();
  return 0;
}
