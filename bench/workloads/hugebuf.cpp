// hugebuf: one buffer grown by realloc to 1 GiB (short 256 MiB), then used:
// random 8-byte read-modify-writes over it (--case random) or sequential
// sums of all of it (--case scan). Huge pages decide both: a 4 KiB page
// costs a fault per 4 KiB while the buffer grows and a TLB entry per 4 KiB
// while it is used; a 2 MiB page does one of each per 2 MiB.
//
// Growth: from 1 MiB by half each step (x1.5, as many vectors grow; at least
// 2 MiB), rounded to 1 MiB; after each realloc every new word is written (word i holds i * K, so
// the contents are known everywhere), and a sample of the old words is
// checked. Reported besides the phase's time (region_seconds):
//   grow_seconds     the whole growth (reallocs, first touch, checks)
//   realloc_seconds  inside realloc only
//   stall_seconds    the slowest step's realloc plus the first touch of the
//                    first 2 MiB of its new tail: the first-touch stall a
//                    latency-sensitive program sees
//   thp_percent      AnonHugePages / Rss of the VMA(s) holding the buffer at
//                    the end of growth (and thp_end_percent after the phase)
// The phase's result is checked: the sum of every word must equal what the
// writes imply, so lost or mixed-up pages fail the run.
#include <sys/resource.h>

#include "common.h"

namespace {

long minflt() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

constexpr size_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint64_t K = 0x9e3779b97f4a7c15ull;  // word i holds i * K (+ the RMW deltas)

// Sum over i in [0, w) of i * K, mod 2^64.
uint64_t base_sum(uint64_t w) {
  unsigned __int128 n = static_cast<unsigned __int128>(w) * (w - 1) / 2;
  return static_cast<uint64_t>(n) * K;
}

uint64_t sum_words(const uint64_t* b, size_t w) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= w; i += 4) {
    s0 += b[i];
    s1 += b[i + 1];
    s2 += b[i + 2];
    s3 += b[i + 3];
  }
  for (; i < w; i++) s0 += b[i];
  return s0 + s1 + s2 + s3;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv, "--case random|scan");
  const bool random = a.which.empty() || a.which == "random";
  if (!random && a.which != "scan") wl::usage(argv[0], "--case random|scan");
  const size_t total = wl::pick<size_t>(a, 16 * MiB, 256 * MiB, 1024 * MiB);
  wl::Rng r(a.seed);

  // ---- growth
  size_t n = 1 * MiB;
  uint64_t* b = static_cast<uint64_t*>(wl::xmalloc(n));
  for (size_t i = 0; i < n / 8; i++) b[i] = i * K;
  double realloc_s = 0, stall = 0;
  long long steps = 0, moves = 0;
  const double g0 = wl::now();
  while (n < total) {
    size_t next = n + (n / 2 > 2 * MiB ? n / 2 : 2 * MiB);
    next = (next + MiB - 1) / MiB * MiB;
    if (next > total) next = total;
    const double t0 = wl::now();
    uint64_t* q = static_cast<uint64_t*>(realloc(b, next));
    const double t1 = wl::now();
    if (!q) wl::oom("realloc", next);
    if (q != b) moves++;
    b = q;
    // First touch of the first 2 MiB of the new tail: timed with the realloc.
    const size_t w0 = n / 8, w1 = next / 8;
    const size_t first = w0 + (2 * MiB / 8 < w1 - w0 ? 2 * MiB / 8 : w1 - w0);
    for (size_t i = w0; i < first; i++) b[i] = i * K;
    const double t2 = wl::now();
    for (size_t i = first; i < w1; i++) b[i] = i * K;
    realloc_s += t1 - t0;
    if (t2 - t0 > stall) stall = t2 - t0;
    // The old contents survived the realloc: 64 sampled words and the last.
    for (int k = 0; k < 64; k++) {
      size_t i = r.below(w0);
      if (b[i] != i * K) wl::die("contents lost by realloc", b, next, i * 8);
    }
    if (b[w0 - 1] != (w0 - 1) * K) wl::die("contents lost by realloc", b, next, (w0 - 1) * 8);
    n = next;
    steps++;
  }
  const double g1 = wl::now();
  const wl::Coverage cov = wl::huge_coverage(b, n);
  const size_t w = n / 8;

  // ---- the phase
  uint64_t want = base_sum(w);
  const long f0 = minflt();
  double p0 = 0, p1 = 0;
  long long ops = 0;
  if (random) {
    const size_t m = wl::pick<size_t>(a, 1u << 20, 8u << 20, 32u << 20);
    uint64_t added = 0;
    p0 = wl::now();
    for (size_t k = 0; k < m; k++) {
      uint64_t x = r.next();
      size_t i = static_cast<size_t>((static_cast<unsigned __int128>(x) * w) >> 64);
      uint64_t d = (x >> 7) | 1;
      b[i] += d;
      added += d;
    }
    p1 = wl::now();
    ops = static_cast<long long>(m);
    want += added;
    if (sum_words(b, w) != want) wl::die("sum after the random writes", b, n, 0);
  } else {
    const int passes = wl::pick<int>(a, 2, 4, 4);
    p0 = wl::now();
    for (int k = 0; k < passes; k++) {
      uint64_t s = sum_words(b, w);
      if (s != want) wl::die("sum of a sequential pass", b, n, 0);
      b[(static_cast<size_t>(k) * 7919) % w] += 1;  // keep the passes from folding together
      want += 1;
    }
    p1 = wl::now();
    ops = passes;
  }
  const long f1 = minflt();
  const wl::Coverage end = wl::huge_coverage(b, n);
  free(b);

  wl::Result("hugebuf", a)
      .num("region_seconds", p1 - p0)
      .num("grow_seconds", g1 - g0)
      .num("realloc_seconds", realloc_s)
      .num("stall_seconds", stall)
      .integer("bytes", static_cast<long long>(n))
      .integer("steps", steps)
      .integer("moves", moves)
      .integer("ops", ops)
      .integer("phase_minflt", f1 - f0)
      .num("thp_percent", cov.percent())
      .integer("thp_rss_kib", cov.rss_kib)
      .integer("thp_huge_kib", cov.huge_kib)
      .integer("thp_vmas", cov.vmas)
      .num("thp_end_percent", end.percent())
      .print();
  return 0;
}
