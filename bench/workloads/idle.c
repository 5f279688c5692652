// Idle return and worst-case call latency (issue 10), for any allocator
// (run under LD_PRELOAD; links nothing but libc).
//
//   idle [MiB] [trim]  allocates MiB (default 1024) in blocks of 64 KiB to
//                      8 MiB, touches them, frees them all, then makes no
//                      allocator call (or one malloc_trim(0) with "trim")
//                      and polls RSS for 1.5 s: prints the RSS before, the
//                      RSS at 1.5 s, and when it first came within 64 MiB
//                      of the RSS before the allocation.
//   latency [N [MS]]   allocates N (default 3,000,000) blocks of 16..256
//                      bytes, frees them, waits MS (default 30) ms (longer
//                      than REMALLOC_PURGE_DELAY, so that the freed pages
//                      fall due during the timed calls), then times 2000
//                      malloc(300000)/free pairs one call at a time: prints
//                      the longest and the median call.
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t rss(void) {
  char buf[128];
  FILE* f = fopen("/proc/self/statm", "r");  // before the allocation phase
  if (!f) return 0;
  size_t total = 0, res = 0;
  if (fscanf(f, "%zu %zu", &total, &res) != 2) res = 0;
  fclose(f);
  (void)buf;
  return res * (size_t)sysconf(_SC_PAGESIZE);
}

// RSS without stdio (no allocator call while idle).
static int g_statm = -1;
static size_t rss_raw(void) {
  char buf[128];
  if (pread(g_statm, buf, sizeof buf - 1, 0) <= 0) return 0;
  buf[sizeof buf - 1] = 0;
  char* p = buf;
  while (*p && *p != ' ') p++;
  return (size_t)strtoul(p, NULL, 10) * 4096;
}

static unsigned long long g_rng = 88172645463325252ull;
static unsigned long long rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

static int idle(size_t mib, int trim) {
  g_statm = open("/proc/self/statm", 0);
  size_t base = rss_raw();
  size_t total = mib << 20, got = 0, n = 0;
  void** blocks = (void**)calloc(65536, sizeof(void*));
  while (got < total && n < 65536) {
    size_t sz = (size_t)64 << 10 << (rnd() % 8);  // 64 KiB .. 8 MiB
    char* p = (char*)malloc(sz);
    for (size_t i = 0; i < sz; i += 4096) p[i] = 1;
    blocks[n++] = p;
    got += sz;
  }
  size_t full = rss_raw();
  for (size_t i = 0; i < n; i++) free(blocks[i]);
  free(blocks);
  double t0 = now_s();
  size_t after_free = rss_raw();
  if (trim) malloc_trim(0);
  double back = -1;
  size_t r = 0;
  while (now_s() - t0 < 1.5) {
    r = rss_raw();
    if (back < 0 && r <= base + ((size_t)64 << 20)) back = now_s() - t0;
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  printf("idle: base %zu MiB, full %zu MiB, after free %zu MiB, at 1.5 s %zu MiB, within 64 MiB of base after %s%.3f s\n",
         base >> 20, full >> 20, after_free >> 20, r >> 20, back < 0 ? ">" : "", back < 0 ? 1.5 : back);
  return 0;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static int latency(size_t n, size_t wait_ms) {
  void** v = (void**)malloc(n * sizeof(void*));
  for (size_t i = 0; i < n; i++) {
    v[i] = malloc(16 + rnd() % 241);
    memset(v[i], 1, 16);
  }
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
  struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  enum { kPairs = 2000 };
  static double t[kPairs];
  for (int i = 0; i < kPairs; i++) {
    double a = now_s();
    void* p = malloc(300000);
    double b = now_s();
    ((volatile char*)p)[0] = 1;
    double c = now_s();
    free(p);
    double d = now_s();
    t[i] = (b - a) > (d - c) ? (b - a) : (d - c);
  }
  qsort(t, kPairs, sizeof t[0], cmp);
  printf("latency: %zu small blocks freed; longest call %.3f ms, median %.4f ms, p99 %.4f ms\n", n,
         t[kPairs - 1] * 1e3, t[kPairs / 2] * 1e3, t[kPairs * 99 / 100] * 1e3);
  (void)rss;
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "idle") == 0)
    return idle(argc >= 3 ? (size_t)atol(argv[2]) : 1024, argc >= 4 && strcmp(argv[3], "trim") == 0);
  if (argc >= 2 && strcmp(argv[1], "latency") == 0)
    return latency(argc >= 3 ? (size_t)atol(argv[2]) : 3000000, argc >= 4 ? (size_t)atol(argv[3]) : 30);
  fprintf(stderr, "usage: idle idle [MiB] [trim] | idle latency [N]\n");
  return 2;
}
