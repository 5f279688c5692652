// realloc_growth: how fast buffers grow through realloc. Every case touches
// only the new tail after each growth (the first word of every new page
// carries the page's index) and checks a sample of pages of the whole buffer,
// so contents that a move lost or scrambled are caught. Time spent inside
// realloc is measured separately from the case's total.
//
// Cases (--case NAME):
//   double       one buffer doubled from 1 MiB to 1 GiB
//   step64k      one buffer grown by 64 KiB steps to 256 MiB
//   rr64         64 buffers grown round-robin by 256 KiB steps to 16 MiB each
//   rr64_2t      the rr64 workload run by 2 threads at once, each with its own
//                64 buffers
//   vector       vector/string-style growth (x2 and x1.5 capacity) of buffers
//                whose final size runs from 4 KiB to 64 MiB
//   single_move  realloc of a 1 GiB block by 2 MiB right after a second
//                1 GiB block was allocated (so growing in place is unlikely)
//   mremap_ref   no allocator: one mremap(MAYMOVE|FIXED|DONTUNMAP) of 1 GiB
//                between 2 MiB aligned regions, and a memcpy of the same
//                bytes into fresh memory, for reference
// Sizes above are the full scale; short and tiny scale them down.
#include <errno.h>
#include <sys/mman.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

struct Stats {
  double realloc_seconds = 0;
  long long reallocs = 0;
  long long moves = 0;  // realloc returned a different address
};

// realloc with its time accounted, and a check that the result is usable.
void* timed_realloc(void* p, size_t n, Stats& st) {
  double t0 = wl::now();
  void* q = realloc(p, n);
  double t1 = wl::now();
  if (!q) wl::oom("realloc", n);
  st.realloc_seconds += t1 - t0;
  st.reallocs++;
  if (q != p) st.moves++;
  return q;
}

// Grow buf from `from` to `to` bytes: realloc, touch the new tail, check a
// sample of the whole buffer.
void* grow(void* buf, size_t from, size_t to, Stats& st, uint64_t cookie, size_t samples) {
  buf = timed_realloc(buf, to, st);
  wl::touch_pages(buf, from, to, cookie);
  wl::check_pages(buf, to, samples, cookie);
  return buf;
}

void* new_buffer(size_t n, uint64_t cookie) {
  void* p = wl::xmalloc(n);
  wl::touch_pages(p, 0, n, cookie);
  return p;
}

// ------------------------------------------------------------------ cases

void case_double(const wl::Args& a, Stats& st) {
  size_t start = wl::pick<size_t>(a, 64 * KiB, 1 * MiB, 1 * MiB);
  size_t end = wl::pick<size_t>(a, 8 * MiB, 256 * MiB, 1024 * MiB);
  void* p = new_buffer(start, wl::kCookie);
  for (size_t n = start; n < end; n *= 2) p = grow(p, n, 2 * n, st, wl::kCookie, 256);
  free(p);
}

void case_step64k(const wl::Args& a, Stats& st) {
  size_t step = 64 * KiB;
  size_t end = wl::pick<size_t>(a, 4 * MiB, 64 * MiB, 256 * MiB);
  void* p = new_buffer(step, wl::kCookie);
  for (size_t n = step; n < end; n += step) p = grow(p, n, n + step, st, wl::kCookie, 16);
  free(p);
}

void rr64(size_t end, Stats& st, uint64_t cookie) {
  const size_t bufs = 64, step = 256 * KiB;
  std::vector<void*> b(bufs);
  for (size_t i = 0; i < bufs; i++) b[i] = new_buffer(step, cookie + i);
  for (size_t n = step; n < end; n += step)
    for (size_t i = 0; i < bufs; i++) b[i] = grow(b[i], n, n + step, st, cookie + i, 8);
  for (size_t i = 0; i < bufs; i++) {
    wl::check_pages(b[i], end, 64, cookie + i);
    free(b[i]);
  }
}

size_t rr64_end(const wl::Args& a) { return wl::pick<size_t>(a, 512 * KiB, 4 * MiB, 16 * MiB); }

void case_rr64(const wl::Args& a, Stats& st) { rr64(rr64_end(a), st, wl::kCookie); }

double case_rr64_2t(const wl::Args& a, Stats& st, double& max_thread_realloc) {
  Stats per[2];
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> th;
  for (int t = 0; t < 2; t++)
    th.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      rr64(rr64_end(a), per[t], wl::kCookie + 1000 * static_cast<uint64_t>(t));
    });
  while (ready.load() < 2) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& x : th) x.join();
  double t1 = wl::now();
  max_thread_realloc = 0;
  for (auto& s : per) {
    st.realloc_seconds += s.realloc_seconds;
    st.reallocs += s.reallocs;
    st.moves += s.moves;
    if (s.realloc_seconds > max_thread_realloc) max_thread_realloc = s.realloc_seconds;
  }
  return t1 - t0;
}

void case_vector(const wl::Args& a, Stats& st) {
  size_t largest = wl::pick<size_t>(a, 1 * MiB, 16 * MiB, 64 * MiB);
  // Each final size gets about the same number of bytes in total, so small
  // sizes run many vectors and large ones few.
  size_t budget = wl::pick<size_t>(a, 4 * MiB, 48 * MiB, 512 * MiB);
  const size_t K = 8;  // vectors grown side by side, as in real programs
  uint64_t cookie = wl::kCookie;
  for (size_t target = 4 * KiB; target <= largest; target *= 4) {
    for (int f2 = 0; f2 < 2; f2++) {  // x2 (vector) then x1.5 (string-like)
      size_t rounds = budget / (target * K);
      if (rounds == 0) rounds = 1;
      for (size_t r = 0; r < rounds; r++) {
        void* v[K];
        size_t cap[K];
        for (size_t k = 0; k < K; k++) {
          cap[k] = 64;
          v[k] = wl::xmalloc(cap[k]);
          uint64_t w = cookie + k;  // word 0 is page 0's index word
          memcpy(v[k], &w, 8);
        }
        bool growing = true;
        while (growing) {
          growing = false;
          for (size_t k = 0; k < K; k++) {
            if (cap[k] >= target) continue;
            size_t n = f2 == 0 ? cap[k] * 2 : cap[k] + cap[k] / 2;
            if (n > target) n = target;
            v[k] = grow(v[k], cap[k], n, st, cookie + k, 4);
            uint64_t w;
            memcpy(&w, v[k], 8);
            if (w != cookie + k) wl::die("vector head word", v[k], n, 0);
            cap[k] = n;
            growing = growing || n < target;
          }
        }
        for (size_t k = 0; k < K; k++) {
          wl::check_pages(v[k], cap[k], 16, cookie + k);
          free(v[k]);
        }
        cookie += K;
      }
    }
  }
}

void case_single_move(const wl::Args& a, Stats& st, double& touch_seconds) {
  size_t n = wl::pick<size_t>(a, 16 * MiB, 128 * MiB, 1024 * MiB);
  double t0 = wl::now();
  void* p = new_buffer(n, wl::kCookie);
  void* second = new_buffer(n, wl::kCookie + 1);
  touch_seconds = wl::now() - t0;
  p = grow(p, n, n + 2 * MiB, st, wl::kCookie, 1024);
  wl::check_pages(second, n, 64, wl::kCookie + 1);
  free(second);
  free(p);
}

// Maps n bytes (plus slack) anonymously and returns the 2 MiB aligned start.
char* map_aligned(size_t n) {
  size_t slack = 2 * MiB;
  void* m = mmap(nullptr, n + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) wl::oom("mmap", n + slack);
  uintptr_t x = (reinterpret_cast<uintptr_t>(m) + slack - 1) & ~(slack - 1);
  return reinterpret_cast<char*>(x);
}

// Returns 0, or the errno of an mremap that the kernel refused.
int case_mremap_ref(const wl::Args& a, double& mremap_s, double& copy_s, size_t& bytes, size_t& copy_bytes) {
  size_t n = wl::pick<size_t>(a, 16 * MiB, 1024 * MiB, 1024 * MiB);
  bytes = n;
  char* src = map_aligned(n);
  char* dst = map_aligned(n);
  wl::touch_pages(src, 0, n);
  double t0 = wl::now();
  void* r = mremap(src, n, n, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
  double t1 = wl::now();
  if (r == MAP_FAILED) return errno;
  if (r != dst) wl::die("mremap returned another address", r, n, 0);
  mremap_s = t1 - t0;
  wl::check_pages(dst, n, 1024);
  // The source stays mapped and reads as zero-fill-on-demand.
  for (size_t off = 0; off < n; off += n / 16)
    if (src[off] != 0) wl::die("mremap source not empty", src, n, off);
  // Reference: copying the bytes into fresh memory (faults included); at the
  // short scale only the first 256 MiB, to keep the run short.
  copy_bytes = wl::pick<size_t>(a, n, 256 * MiB, n);
  char* fresh = map_aligned(copy_bytes);
  t0 = wl::now();
  memcpy(fresh, dst, copy_bytes);
  copy_s = wl::now() - t0;
  wl::check_pages(fresh, copy_bytes, 1024);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv, "--case double|step64k|rr64|rr64_2t|vector|single_move|mremap_ref");
  if (a.which.empty()) wl::usage(argv[0], "--case double|step64k|rr64|rr64_2t|vector|single_move|mremap_ref");
  Stats st;
  wl::Result res("realloc", a);
  double t0 = wl::now();
  double region = -1;
  if (a.which == "double") {
    case_double(a, st);
  } else if (a.which == "step64k") {
    case_step64k(a, st);
  } else if (a.which == "rr64") {
    case_rr64(a, st);
  } else if (a.which == "rr64_2t") {
    double max_thread = 0;
    region = case_rr64_2t(a, st, max_thread);
    res.num("max_thread_realloc_seconds", max_thread);
  } else if (a.which == "vector") {
    case_vector(a, st);
  } else if (a.which == "single_move") {
    double touch = 0;
    case_single_move(a, st, touch);
    res.num("touch_seconds", touch).integer("bytes", static_cast<long long>(wl::pick<size_t>(a, 16 * MiB, 128 * MiB, 1024 * MiB)));
  } else if (a.which == "mremap_ref") {
    double m = 0, c = 0;
    size_t bytes = 0, copy_bytes = 0;
    int err = case_mremap_ref(a, m, c, bytes, copy_bytes);
    if (err) {
      res.integer("supported", 0).integer("errno", err).num("region_seconds", 0).print();
      return 0;
    }
    res.integer("supported", 1).integer("bytes", static_cast<long long>(bytes)).num("mremap_seconds", m)
        .integer("copy_bytes", static_cast<long long>(copy_bytes)).num("copy_seconds", c).num("region_seconds", m).print();
    return 0;
  } else {
    wl::usage(argv[0], "--case double|step64k|rr64|rr64_2t|vector|single_move|mremap_ref");
  }
  double t1 = wl::now();
  res.num("region_seconds", region >= 0 ? region : t1 - t0)
      .num("realloc_seconds", st.realloc_seconds)
      .integer("reallocs", st.reallocs)
      .integer("moves", st.moves)
      .print();
  return 0;
}
